"""The lesson's four optimizers from scratch: SGD, Momentum, RMSProp and Adam, each a pure rule and its adapter.

Each rule is plain arithmetic on (parameter, gradient, state) and returns the new values, so the same
function runs on Python floats (the spreadsheet lab), on tensors (the reference path) and under
torch.compile (one fused kernel per group). The classes add what torch expects: param_groups with torch's
hyperparameter names, per-parameter state in self.state[p], state_dict(), closures. Their default fast
path uses torch._foreach_* ops and is tested equal to the rules.

Momentum here is the lesson's: an exponential moving average that *damps* the gradient,
m = momentum*m + (1-momentum)*g, then p -= lr*m. torch.optim.SGD(momentum=...) instead accumulates,
buf = momentum*buf + g, so its effective step is 1/(1-momentum) = 10x larger at momentum 0.9.
Weight decay is decoupled (AdamW-style: p *= 1 - lr*weight_decay) in every rule; for plain SGD that is
the same as torch's L2 form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lrlab.optim.core import RuleOptimizer

# -- the rules: state in, state out --------------------------------------------------------------


def sgd_rule(p, g, *, lr, weight_decay=0.0):
    """Plain SGD with decoupled weight decay. Returns (p,)."""
    return (p * (1 - lr * weight_decay) - lr * g,)


def momentum_rule(p, g, m, *, lr, momentum=0.9, weight_decay=0.0):
    """The lesson's momentum: a damped EMA of gradients. Returns (p, m)."""
    m = momentum * m + (1 - momentum) * g
    return p * (1 - lr * weight_decay) - lr * m, m


def rmsprop_rule(p, g, s, *, lr, alpha=0.99, eps=1e-8, weight_decay=0.0):
    """Divide by the root of an EMA of squared gradients. Returns (p, s)."""
    s = alpha * s + (1 - alpha) * (g * g)
    return p * (1 - lr * weight_decay) - lr * g / (s**0.5 + eps), s


def adam_rule(
    p, g, m, s, step, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, bias_correction=True, eps_root=False
):
    """Momentum over RMSprop, bias-corrected for the zero start (step counts from 1). eps_root puts eps inside
    the root, as the course's Adam does: sqrt(s_hat + eps) instead of sqrt(s_hat) + eps. Returns (p, m, s)."""
    m = beta1 * m + (1 - beta1) * g
    s = beta2 * s + (1 - beta2) * (g * g)
    bc1 = 1 - beta1**step if bias_correction else 1.0
    bc2 = 1 - beta2**step if bias_correction else 1.0
    denom = (s / bc2 + eps) ** 0.5 if eps_root else s**0.5 / bc2**0.5 + eps
    p = p * (1 - lr * weight_decay) - (lr / bc1) * m / denom
    return p, m, s


def _decay(params: list, lr: float, weight_decay: float) -> None:
    if weight_decay:
        torch._foreach_mul_(params, 1 - lr * weight_decay)


class SGD(RuleOptimizer):
    """Plain SGD (the lesson's first optimizer).

    Args:
        params: parameters or param groups; lr: learning rate; weight_decay: decoupled decay;
        impl: "foreach" (fast) or "reference" (the pure rule per tensor); compile: torch.compile the rule;
        maximize: ascend the objective instead (every optimizer here takes it, as torch's do).

    Raises:
        ValueError: hyperparameters out of range or no parameters; TypeError: the course's keyword names."""

    rule = staticmethod(sgd_rule)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        impl: str = "foreach",
        compile: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay), impl, compile, maximize)

    def foreach_update(self, group, params, grads, states, steps) -> None:
        _decay(params, group["lr"], group["weight_decay"])
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class Momentum(RuleOptimizer):
    """SGD on a damped moving average of gradients (the lesson's momentum, not torch's).

    Args:
        params, lr, weight_decay, impl, compile: as SGD; momentum: the damping of the average, in [0, 1).

    Raises:
        ValueError: hyperparameters out of range or no parameters; TypeError: the course's keyword names."""

    rule = staticmethod(momentum_rule)
    state_names = ("grad_avg",)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        impl: str = "foreach",
        compile: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay), impl, compile, maximize)

    def hypers(self, group, step) -> dict:
        return {**super().hypers(group, step), "momentum": group["momentum"]}

    def foreach_update(self, group, params, grads, states, steps) -> None:
        (avgs,) = states
        lr = group["lr"]
        torch._foreach_lerp_(avgs, grads, 1 - group["momentum"])
        _decay(params, lr, group["weight_decay"])
        torch._foreach_add_(params, avgs, alpha=-lr)


class RMSProp(RuleOptimizer):
    """Gradient divided by the root of an EMA of its square (eps outside the root, as torch does).

    Args:
        params, lr, weight_decay, impl, compile: as SGD; alpha: the EMA factor of the squared gradient, in
            [0, 1); eps: added to the root.

    Raises:
        ValueError: hyperparameters out of range or no parameters; TypeError: the course's keyword names."""

    rule = staticmethod(rmsprop_rule)
    state_names = ("square_avg",)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        init_grad_sq: bool = False,
        impl: str = "foreach",
        compile: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, init_grad_sq=init_grad_sq)
        super().__init__(params, defaults, impl, compile, maximize)

    def initial_state(self, name: str, p: torch.Tensor, group: dict) -> torch.Tensor:
        if group.get("init_grad_sq"):  # the course's RMSProp: the average starts at the first gradient squared
            return (p.grad * p.grad).to(memory_format=torch.preserve_format)
        return super().initial_state(name, p, group)

    def hypers(self, group, step) -> dict:
        return {**super().hypers(group, step), "alpha": group["alpha"], "eps": group["eps"]}

    def foreach_update(self, group, params, grads, states, steps) -> None:
        (sqrs,) = states
        alpha, lr = group["alpha"], group["lr"]
        torch._foreach_mul_(sqrs, alpha)
        torch._foreach_addcmul_(sqrs, grads, grads, 1 - alpha)
        denom = torch._foreach_sqrt(sqrs)
        torch._foreach_add_(denom, group["eps"])
        _decay(params, lr, group["weight_decay"])
        torch._foreach_addcdiv_(params, grads, denom, -lr)


class Adam(RuleOptimizer):
    """Adam with bias correction; weight decay is decoupled, so with weight_decay > 0 it is AdamW.

    bias_correction=False, eps=0 is the spreadsheet's Adam (lrlab.lab's adam sheets).

    Args:
        params, lr, weight_decay, compile: as SGD; betas: the EMA factors of the gradient and its square, each
            in [0, 1); eps: added to the root; bias_correction: divide the EMAs by 1 - beta^t; eps_root: eps inside
            the root (the course's Adam); impl: "foreach" (the default, per-tensor fast path), "reference" (the
            rule), or "flat" (the group's parameters and state in one flat buffer: a few whole-buffer operations
            per step; returns a FlatAdam, the same Adam bit for bit).

    Raises:
        ValueError: hyperparameters out of range, no parameters, an unknown impl, or impl="flat" with eps_root
            or bias_correction=False; TypeError: the course's keyword names."""

    rule = staticmethod(adam_rule)
    state_names = ("exp_avg", "exp_avg_sq")

    implementations = {"flat": lambda: _flat_adam()}

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        eps_root: bool = False,
        impl: str = "foreach",
        compile: bool = False,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, bias_correction=bias_correction,
                        eps_root=eps_root)  # fmt: skip
        super().__init__(params, defaults, impl, compile, maximize)

    def hypers(self, group, steps) -> dict:
        beta1, beta2 = group["betas"]
        return {
            **super().hypers(group, steps),
            "beta1": beta1,
            "beta2": beta2,
            "eps": group["eps"],
            "bias_correction": group["bias_correction"],
            "eps_root": group.get("eps_root", False),
        }

    def rule_args(self, states, steps) -> list[list]:
        return [*states, steps]

    def foreach_update(self, group, params, grads, states, steps) -> None:
        exp_avgs, exp_avg_sqs = states
        (beta1, beta2), lr, eps = group["betas"], group["lr"], group["eps"]
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        _decay(params, lr, group["weight_decay"])
        if group.get("eps_root"):  # the course's Adam: eps inside the root
            self._eps_root_update(group, params, exp_avgs, exp_avg_sqs, steps)
            return
        denom = torch._foreach_sqrt(exp_avg_sqs)
        if not group["bias_correction"]:  # the spreadsheet's Adam
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, -lr)
        elif all(s == steps[0] for s in steps):
            bc1, bc2_root = 1 - beta1 ** steps[0], math.sqrt(1 - beta2 ** steps[0])
            torch._foreach_div_(denom, bc2_root)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, -lr / bc1)
        else:  # parameters that missed steps (no gradient) have their own bias corrections
            roots = [math.sqrt(1 - beta2**s) for s in steps]
            torch._foreach_div_(denom, roots)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1 - beta1**s) for s in steps])

    @staticmethod
    def _eps_root_update(group: dict, params: list, exp_avgs: list, exp_avg_sqs: list, steps: list) -> None:
        """p -= lr * m_hat / sqrt(s_hat + eps), per bias-correction of each tensor's own step count."""
        (beta1, beta2), lr, eps, corrected = group["betas"], group["lr"], group["eps"], group["bias_correction"]
        bc1 = [1 - beta1**s if corrected else 1.0 for s in steps]
        bc2 = [1 - beta2**s if corrected else 1.0 for s in steps]
        denom = torch._foreach_div(exp_avg_sqs, bc2)
        torch._foreach_add_(denom, eps)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / b for b in bc1])


def _flat_adam() -> type[Adam]:
    # one spelling for every Adam: the flat implementation builds on this class, so it is imported when asked for
    from lrlab.optim.flat import FlatAdam

    return FlatAdam
