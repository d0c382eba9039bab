"""Optimizers since Adam, written as lrlab's others are: a pure rule on (parameter, gradient, state) in plain
arithmetic (so it runs on Python floats and on tensors), adapted to torch.optim.Optimizer by RuleOptimizer.
Weight decay is decoupled, as everywhere in lrlab.

- NAdam (Dozat 2016, torch's variant with momentum decay): Adam with Nesterov momentum, the step looking
  ahead by the next step's momentum.
- RAdam (Liu et al. 2020): Adam whose adaptive step is switched on only once the variance of its second
  moment estimate is tractable (rho_t > 5), and then rectified; before that, plain momentum SGD.
- Lion (Chen et al. 2023): the sign of an interpolation between momentum and gradient, so every coordinate
  moves by exactly lr; the momentum is updated after, with a second, slower beta.
- AdEMAMix (Pagliardini et al. 2024): Adam's numerator plus alpha times a second, much slower EMA of the
  gradients (beta3 = 0.9999 remembers ~10,000 steps), so old gradients keep helping; alpha and beta3 are
  warmed up over the first steps because a slow EMA starts out as noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lrlab.optim.core import RuleOptimizer, _check, apply_rule


def _sign(x):
    """sign(x) for a tensor or a Python float."""
    return torch.sign(x) if isinstance(x, torch.Tensor) else float((x > 0) - (x < 0))


def nadam_rule(p, g, m, s, mu_product, step, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
               momentum_decay=4e-3):  # fmt: skip
    """NAdam with torch's momentum schedule mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)).
    Returns (p, m, s, mu_product)."""
    mu = beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product = mu_product * mu
    m = beta1 * m + (1 - beta1) * g
    s = beta2 * s + (1 - beta2) * (g * g)
    denom = (s / (1 - beta2**step)) ** 0.5 + eps
    p = p * (1 - lr * weight_decay)
    p = p - lr * (1 - mu) / (1 - mu_product) * g / denom - lr * mu_next / (1 - mu_product * mu_next) * m / denom
    return p, m, s, mu_product


def radam_rule(p, g, m, s, step, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """Rectified Adam. Returns (p, m, s)."""
    m = beta1 * m + (1 - beta1) * g
    s = beta2 * s + (1 - beta2) * (g * g)
    bc1, bc2 = 1 - beta1**step, 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * step * beta2**step / bc2
    p = p * (1 - lr * weight_decay)
    if rho > 5:
        rect = ((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) ** 0.5
        return p - lr * rect * (m / bc1) * bc2**0.5 / (s**0.5 + eps), m, s
    return p - lr * m / bc1, m, s


def lion_rule(p, g, m, *, lr, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Lion: p -= lr * sign(beta1 m + (1 - beta1) g); then m = beta2 m + (1 - beta2) g. Returns (p, m)."""
    update = _sign(beta1 * m + (1 - beta1) * g)
    return p * (1 - lr * weight_decay) - lr * update, beta2 * m + (1 - beta2) * g


def ademamix_warmup(step: int, alpha: float, beta1: float, beta3: float, warmup: int) -> tuple[float, float]:
    """The paper's schedulers: alpha rises linearly, beta3 so that its half-life rises linearly, from beta1.
    Returns (alpha_t, beta3_t); (alpha, beta3) when warmup is 0 or over."""
    if not warmup or step >= warmup:
        return alpha, beta3
    frac = step / warmup
    log_start, log_end = math.log(beta1), math.log(beta3)
    beta3_t = math.exp(log_start * log_end / ((1 - frac) * log_end + frac * log_start))
    return alpha * frac, min(beta3_t, beta3)


def ademamix_rule(p, g, m1, m2, s, step, *, lr, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0, eps=1e-8,
                  weight_decay=0.0):  # fmt: skip
    """AdEMAMix with the (already warmed-up) alpha and beta3 of this step. Returns (p, m1, m2, s)."""
    m1 = beta1 * m1 + (1 - beta1) * g
    m2 = beta3 * m2 + (1 - beta3) * g
    s = beta2 * s + (1 - beta2) * (g * g)
    denom = (s / (1 - beta2**step)) ** 0.5 + eps
    p = p * (1 - lr * weight_decay) - lr * (m1 / (1 - beta1**step) + alpha * m2) / denom
    return p, m1, m2, s


class _RuleOnly(RuleOptimizer):
    """The rule tensor by tensor on every path ("foreach" included): correct first; fused kernels later."""

    def __init__(self, params: Iterable, defaults: dict, impl: str, compile: bool, maximize: bool) -> None:
        if compile:
            raise ValueError(f"{type(self).__name__} has no compiled path yet: leave compile=False")
        super().__init__(params, defaults, impl, compile, maximize)

    def foreach_update(self, group, params, grads, states, steps) -> None:
        apply_rule(type(self).rule, params, grads, self.rule_args(states, steps), self.hypers(group, steps))

    def hypers(self, group, steps) -> dict:
        beta1, beta2 = group["betas"]
        return {**super().hypers(group, steps), "beta1": beta1, "beta2": beta2}


class NAdam(_RuleOnly):
    """NAdam (Adam with Nesterov momentum), torch's momentum-decay schedule; decoupled weight decay.

    Args:
        params, lr, weight_decay, impl, compile, maximize: as lrlab.optim.SGD; betas, eps: as Adam;
        momentum_decay: the schedule's decay (torch's default 4e-3).

    Raises:
        ValueError: hyperparameters out of range or no parameters."""

    rule = staticmethod(nadam_rule)
    state_names = ("exp_avg", "exp_avg_sq", "mu_product")

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3, impl: str = "foreach",
                 compile: bool = False, maximize: bool = False) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay)
        super().__init__(params, defaults, impl, compile, maximize)

    def initial_state(self, name: str, p: torch.Tensor, group: dict) -> torch.Tensor:
        if name == "mu_product":
            return torch.ones((), dtype=p.dtype, device=p.device)
        return super().initial_state(name, p, group)

    def hypers(self, group, steps) -> dict:
        return {**super().hypers(group, steps), "eps": group["eps"], "momentum_decay": group["momentum_decay"]}

    def rule_args(self, states, steps) -> list[list]:
        return [*states, steps]


class RAdam(_RuleOnly):
    """Rectified Adam; decoupled weight decay.

    Args:
        params, lr, weight_decay, impl, compile, maximize: as lrlab.optim.SGD; betas, eps: as Adam.

    Raises:
        ValueError: hyperparameters out of range or no parameters."""

    rule = staticmethod(radam_rule)
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, impl: str = "foreach", compile: bool = False,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay), impl, compile,
                         maximize)  # fmt: skip

    def hypers(self, group, steps) -> dict:
        return {**super().hypers(group, steps), "eps": group["eps"]}

    def rule_args(self, states, steps) -> list[list]:
        return [*states, steps]


class Lion(_RuleOnly):
    """Lion (evolved sign momentum); decoupled weight decay. Its lr is typically 3-10x smaller than Adam's
    (every coordinate moves by lr each step) and its weight decay 3-10x larger.

    Args:
        params, lr, weight_decay, impl, compile, maximize: as lrlab.optim.SGD; betas: the interpolation
            (beta1) and the momentum's EMA factor (beta2).

    Raises:
        ValueError: hyperparameters out of range or no parameters."""

    rule = staticmethod(lion_rule)
    state_names = ("exp_avg",)

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, impl: str = "foreach", compile: bool = False,
                 maximize: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay), impl, compile, maximize)


class AdEMAMix(_RuleOnly):
    """AdEMAMix: Adam plus alpha times a slow EMA of gradients; decoupled weight decay.

    Args:
        params, lr, weight_decay, impl, compile, maximize: as lrlab.optim.SGD; betas, eps: as Adam; beta3: the
            slow EMA's factor; alpha: its weight; warmup: steps over which alpha and beta3 are warmed up (the
            paper sets it to the run's length; 0: none).

    Raises:
        ValueError: hyperparameters out of range or no parameters."""

    rule = staticmethod(ademamix_rule)
    one_path = True
    state_names = ("exp_avg_fast", "exp_avg_slow", "exp_avg_sq")

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 beta3: float = 0.9999, alpha: float = 5.0, eps: float = 1e-8, weight_decay: float = 0.0,
                 warmup: int = 0, impl: str = "foreach", compile: bool = False,
                 maximize: bool = False) -> None:  # fmt: skip
        _check("beta3", beta3, 0.0, 1.0)
        _check("alpha", alpha, 0.0, math.inf)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
        defaults = dict(lr=lr, betas=tuple(betas), beta3=beta3, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        warmup=warmup)  # fmt: skip
        super().__init__(params, defaults, impl, compile, maximize)

    def foreach_update(self, group, params, grads, states, steps) -> None:
        beta1, beta2 = group["betas"]
        for i, step in enumerate(steps):  # each tensor's own step count: its own point in the warm-up
            alpha_t, beta3_t = ademamix_warmup(step, group["alpha"], beta1, group["beta3"], group["warmup"])
            hypers = dict(lr=group["lr"], beta1=beta1, beta2=beta2, beta3=beta3_t, alpha=alpha_t, eps=group["eps"],
                          weight_decay=group["weight_decay"])  # fmt: skip
            apply_rule(ademamix_rule, [params[i]], [grads[i]], [[s[i]] for s in states] + [[step]], hypers)
