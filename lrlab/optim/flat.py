"""FlatAdam: lrlab's Adam with each param group's parameters and state living in one flat buffer per dtype and
device, so a step is a handful of whole-buffer operations instead of a handful per tensor.

At construction every parameter's data becomes a view into its group's flat buffer (the model trains on the
views as before), and so does each state tensor. A step copies the gradients into a flat gradient buffer
(one call; none after zero_grad(set_to_none=False), when backward accumulates into the buffer itself) and
updates the buffer:
seven vectorized operations, or one compiled loop with compile=True.
Per-tensor semantics are kept: when some parameter of a group has no gradient, or the parameters' step
counts differ, that group's step falls back to Adam's per-tensor path (on the same views), so a parameter
without a gradient is not updated; state_dict() has the same per-parameter entries as Adam's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lrlab.optim.classic import Adam
from lrlab.optim.core import plain_hypers

_FLAT = "_flat"  # a group's key for its buffers: {(dtype, device): FlatGroup}


class FlatGroup:
    """The flat buffers of one param group's tensors of one dtype and device, and where each tensor sits."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        total = sum(self.sizes)
        first = params[0]
        self.param = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.param)
        self.exp_avg = torch.zeros_like(self.param)
        self.exp_avg_sq = torch.zeros_like(self.param)
        with torch.no_grad():
            for p, view in zip(params, self.views(self.param)):
                view.copy_(p)
                p.data = view  # the parameter now lives in the buffer
        self.grad_views = self.views(self.grad)  # made once: a step must not pay for 50 views

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [v.view_as(p) for v, p in zip(flat.split(self.sizes), self.params)]


def _flat_update(param, grad, exp_avg, exp_avg_sq, hypers) -> None:
    """Adam with decoupled weight decay on whole buffers; hypers = [lr, beta1, beta2, eps, wd, bc1, sqrt(bc2)]."""
    lr, beta1, beta2, eps, weight_decay, bc1, bc2_root = hypers
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    param.mul_(1 - lr * weight_decay)
    denom = exp_avg_sq.sqrt().div_(bc2_root).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bc1)


def _flat_update_packed(param, grad, exp_avg, exp_avg_sq, packed: torch.Tensor) -> None:
    """The same with the scalars in one tensor (compiled once, whatever the lr and step)."""
    lr, beta1, beta2, eps, weight_decay, bc1, bc2_root = packed.unbind()
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
    param.mul_(1 - lr * weight_decay)
    param.sub_(exp_avg / (exp_avg_sq.sqrt() / bc2_root + eps) * (lr / bc1))


class FlatAdam(Adam):
    """The implementation behind ``Adam(impl="flat")``: lrlab's Adam (AdamW with weight_decay > 0) stepping
    whole flat buffers. Spell it ``Adam(..., impl="flat")``; the class is public for isinstance checks.

    Args:
        as lrlab.optim.Adam; impl: "flat" only (Adam's per-tensor path is the fallback); compile: compile the
            flat update into one loop (10-30 s on the first step).

    Raises:
        ValueError: as Adam; another impl, eps_root=True or bias_correction=False (the per-tensor Adam has them)."""

    # Loops that see this (lrlab's Learner and LR finder) zero the gradients in place, so backward writes
    # straight into the flat buffer and a step copies nothing.
    grads_in_place = True

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, bias_correction: bool = True, eps_root: bool = False,
                 impl: str = "flat", compile: bool = False, maximize: bool = False) -> None:  # fmt: skip
        if impl != "flat":
            raise ValueError(f"FlatAdam's impl is 'flat', got {impl!r}: use Adam(impl={impl!r})")
        if eps_root or not bias_correction:
            raise ValueError(
                "impl='flat' is torch's Adam only: eps_root, bias_correction=False need impl='foreach' (per tensor)"
            )
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
        self.compile_flat, self._compiled_flat = compile, None
        for group in self.param_groups:
            self._flatten(group)

    def _flatten(self, group: dict) -> None:
        by_kind: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            by_kind.setdefault((p.dtype, p.device), []).append(p)
        group[_FLAT] = {kind: FlatGroup(ps) for kind, ps in by_kind.items()}
        for flat in group[_FLAT].values():
            for p, m, s in zip(flat.params, flat.views(flat.exp_avg), flat.views(flat.exp_avg_sq)):
                self.state[p].update(step=self.state[p].get("step", 0), exp_avg=m, exp_avg_sq=s)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "compile_flat"):  # torch's constructor adds the first groups before ours runs
            self._flatten(self.param_groups[-1])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """set_to_none=False zeroes the gradients inside the flat buffer and makes each p.grad its view, so the
        next backward accumulates straight into it and the step copies nothing (parameters whose grad is None
        keep None, as torch's zero_grad leaves them)."""
        if set_to_none:
            return super().zero_grad(set_to_none=True)
        for group in self.param_groups:
            for flat in group[_FLAT].values():
                flat.grad.zero_()
                for p, view in zip(flat.params, flat.grad_views):
                    if p.grad is not None and p.grad is not view:
                        p.grad = view

    def state_dict(self) -> dict:
        state = super().state_dict()
        for group in state["param_groups"]:
            group.pop(_FLAT, None)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's loading replaces the state tensors; copy them back into the flat buffers."""
        flats = [group[_FLAT] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, flat_kinds in zip(self.param_groups, flats):
            group[_FLAT] = flat_kinds
            for flat in flat_kinds.values():
                for p, m, s in zip(flat.params, flat.views(flat.exp_avg), flat.views(flat.exp_avg_sq)):
                    st = self.state[p]
                    if "exp_avg" in st:
                        m.copy_(st["exp_avg"])
                        s.copy_(st["exp_avg_sq"])
                    st.update(step=st.get("step", 0), exp_avg=m, exp_avg_sq=s)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for flat in group[_FLAT].values():
                if not self._flat_step(group, flat):
                    self._tensor_step(group, flat)
        return loss

    def _flat_step(self, group: dict, flat: FlatGroup) -> bool:
        """The whole buffer at once, if every tensor has a gradient and all are at the same step. Gradients
        already in the buffer (p.grad is its view: backward accumulates there after zero_grad(set_to_none=
        False)) are read in place; others are copied in."""
        grads = [p.grad for p in flat.params]
        steps = {self.state[p]["step"] for p in flat.params}
        in_place = all(g is v for g, v in zip(grads, flat.grad_views))
        if not in_place and any(g is None or g.is_sparse for g in grads) or len(steps) != 1:
            return False
        if not in_place:
            torch._foreach_copy_(flat.grad_views, grads)
        grad = flat.grad.neg() if group["maximize"] else flat.grad
        step = steps.pop() + 1
        for p in flat.params:
            self.state[p]["step"] = step
        (beta1, beta2), lr = (float(b) for b in group["betas"]), float(group["lr"])
        hypers = [lr, beta1, beta2, group["eps"], group["weight_decay"], 1 - beta1**step, math.sqrt(1 - beta2**step)]
        if self.compile_flat:
            if self._compiled_flat is None:
                self._compiled_flat = torch.compile(_flat_update_packed, fullgraph=True)
            packed = torch.tensor(hypers, dtype=torch.float32)
            self._compiled_flat(flat.param, grad, flat.exp_avg, flat.exp_avg_sq, packed)
        else:
            _flat_update(flat.param, grad, flat.exp_avg, flat.exp_avg_sq, hypers)
        return True

    def _tensor_step(self, group: dict, flat: FlatGroup) -> None:
        """Adam's own per-tensor path on this part's views (parameters without a gradient are skipped)."""
        sub = {**group, "params": flat.params}
        params, grads, states, steps = self._gather(sub)
        if params:
            plain = plain_hypers(sub)  # what RuleOptimizer.step hands its paths
            if plain.get("maximize"):
                grads = torch._foreach_neg(grads)
            self.foreach_update(plain, params, grads, states, steps)
