"""Muon (Jordan et al. 2024): momentum SGD whose update matrix is orthogonalized before it is applied, so every
direction of a weight matrix moves by about the same amount, however ill-conditioned the gradient.

The orthogonalization is five steps of a quintic Newton-Schulz iteration in bfloat16 (it pushes every singular
value towards 1 without computing an SVD). Muon is for the matrices of hidden layers; as usual, everything else
(biases, normalization weights, scalars) is trained by AdamW inside the same optimizer: a parameter with fewer
than two dimensions goes to an AdamW group with its own lr. Convolution filters are orthogonalized as the
matrix (out_channels, in_channels * kh * kw), as in Keller Jordan's speedruns; torch.optim.Muon refuses them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lrlab.optim.classic import adam_rule
from lrlab.optim.core import RuleOptimizer, _check, apply_rule

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic's (a, b, c): steepest slope at zero that still settles


def newton_schulz(g: torch.Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with g's singular vectors: X <- aX + (bA + cA^2)X with A = XX^T,
    from X = g / |g| (so every singular value starts at most 1). Done in bfloat16 on the wide orientation;
    written with addmm, in the order torch.optim.Muon uses, so the bfloat16 roundings are the same."""
    a, b, c = coefficients
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A^2
        x = torch.addmm(x, poly, x, beta=a)  # a*X + poly @ X
    return x.T if tall else x


def orthogonalize_row(row: list[float], steps: int = 5, coefficients=NS_COEFFICIENTS, eps: float = 1e-7) -> list[float]:
    """newton_schulz for a single row (a layer with one output), on Python floats in float64: the row keeps its
    direction and the iteration acts on its length alone (A = XX^T is the squared length), so orthogonalizing
    a row is normalizing it to length ~0.7 after five steps of these coefficients. The lab's muon sheet."""
    a, b, c = coefficients
    norm = math.sqrt(sum(v * v for v in row))
    length = 1.0 if norm >= eps else norm / eps
    for _ in range(steps):
        length = a * length + b * length**3 + c * length**5
    return [v / max(norm, eps) * length for v in row]


def lr_scale(shape: tuple[int, int], adjust: str) -> float:
    """How much the lr is scaled for a matrix of this shape: "original" sqrt(max(1, rows/cols)) (Keller
    Jordan), "match_rms_adamw" 0.2*sqrt(max(rows, cols)) (Moonshot: reuse AdamW's lr and weight decay)."""
    rows, cols = shape
    return math.sqrt(max(1.0, rows / cols)) if adjust == "original" else 0.2 * math.sqrt(max(rows, cols))


def muon_rule(p, g, buf, *, lr, momentum=0.95, nesterov=True, weight_decay=0.1, ns_steps=5, eps=1e-7,
              adjust="original"):  # fmt: skip
    """One Muon step on a weight of two or more dimensions (seen as rows x everything else). Returns (p, buf)."""
    buf = buf.lerp(g, 1 - momentum)
    update = g.lerp(buf, momentum) if nesterov else buf
    matrix = update.reshape(update.shape[0], -1)
    ortho = newton_schulz(matrix, ns_steps, NS_COEFFICIENTS, eps).reshape(p.shape)
    p = p * (1 - lr * weight_decay)
    return torch.add(p, ortho.to(p.dtype), alpha=-lr * lr_scale(tuple(matrix.shape), adjust)), buf


class Muon(RuleOptimizer):
    """Muon for parameters with two or more dimensions, AdamW for the others, in one optimizer.

    Each group the caller gives is split in two: its matrices (a group with "use_muon": True) and the rest
    ("use_muon": False, lr adam_lr, betas adam_betas, eps adam_eps, weight decay adam_weight_decay). A group
    that already says "use_muon" is kept whole. Schedulers scale each group from its own base lr, so the two
    keep their ratio (OneCycleLR needs a max_lr per group: [muon_lr, adam_lr]).

    Args:
        params: tensors or param groups; lr, momentum, nesterov, weight_decay, ns_steps, eps: Muon's (torch's
            defaults); adjust_lr: "original" or "match_rms_adamw"; adam_lr, adam_betas, adam_eps,
            adam_weight_decay: the AdamW fallback's; impl, maximize: as lrlab.optim.SGD.

    Raises:
        ValueError: hyperparameters out of range, an unknown adjust_lr, compile=True, or no parameters."""

    rule = staticmethod(muon_rule)
    one_path = True

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.1, ns_steps: int = 5, eps: float = 1e-7, adjust_lr: str = "original",
                 adam_lr: float = 3e-4, adam_betas: tuple[float, float] = (0.9, 0.95), adam_eps: float = 1e-8,
                 adam_weight_decay: float = 0.0, impl: str = "foreach", compile: bool = False,
                 maximize: bool = False) -> None:  # fmt: skip
        if compile:
            raise ValueError("Muon has no compiled path yet: leave compile=False")
        if adjust_lr not in ("original", "match_rms_adamw"):
            raise ValueError(f"adjust_lr must be 'original' or 'match_rms_adamw', got {adjust_lr!r}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or not 1 <= ns_steps < 100:
            raise ValueError(f"ns_steps must be an integer from 1 to 99, got {ns_steps!r}")
        _check("momentum", momentum, 0.0, 1.0)
        self._adam = dict(lr=adam_lr, betas=tuple(adam_betas), eps=adam_eps, weight_decay=adam_weight_decay)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                        eps=eps, adjust_lr=adjust_lr)  # fmt: skip
        super().__init__(self._split(params), defaults, impl, False, maximize)

    def _split(self, params: Iterable) -> list[dict]:
        """The caller's groups as Muon groups (matrices) and AdamW groups (the rest)."""
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        out = []
        for group in groups:
            tensors = list(group["params"]) if not isinstance(group["params"], torch.Tensor) else [group["params"]]
            if "use_muon" in group:
                out.append({**(self._adam if not group["use_muon"] else {}), **group, "params": tensors})
                continue
            matrices = [p for p in tensors if p.ndim >= 2]
            others = [p for p in tensors if p.ndim < 2]
            if matrices:
                out.append({**group, "params": matrices, "use_muon": True})
            if others:
                out.append({**self._adam, **{k: v for k, v in group.items() if k != "lr"}, "params": others,
                            "use_muon": False})  # fmt: skip
        return out

    def add_param_group(self, param_group: dict) -> None:
        """Split like the constructor's groups: matrices to Muon, the rest to AdamW (unless use_muon is given)."""
        for group in self._split([param_group]):
            super().add_param_group(group)

    def group_state_names(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["use_muon"] else ("exp_avg", "exp_avg_sq")

    def foreach_update(self, group, params, grads, states, steps) -> None:
        if group["use_muon"]:
            if any(p.ndim < 2 for p in params):
                raise ValueError("a use_muon group holds a parameter with fewer than 2 dimensions")
            hypers = {k: group[k] for k in ("lr", "momentum", "nesterov", "weight_decay", "ns_steps", "eps")}
            apply_rule(muon_rule, params, grads, states, {**hypers, "adjust": group["adjust_lr"]})
            return
        beta1, beta2 = group["betas"]
        hypers = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])
        apply_rule(adam_rule, params, grads, [*states, steps], hypers)

    def rule_args(self, states, steps) -> list[list]:
        return states
