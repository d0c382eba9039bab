"""Optimizers since Adam, written as lrlab's others are: a pure rule on (parameter, gradient, state) in plain
arithmetic (so it runs on Python floats and on tensors), adapted to torch.optim.Optimizer by RuleOptimizer.
Weight decay is decoupled, as everywhere in lrlab.

- NAdam (Dozat 2016, torch's variant with momentum decay): Adam with Nesterov momentum, the step looking
  ahead by the next step's momentum.
- RAdam (Liu et al. 2020): Adam whose adaptive step is switched on only once the variance of its second
  moment estimate is tractable (rho_t > 5), and then rectified; before that, plain momentum SGD.
- Lion (Chen et al. 2023): the sign of an interpolation between momentum and gradient, so every coordinate
  moves by exactly lr; the momentum is updated after, with a second, slower beta.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrlab.optim import RuleOptimizer, apply_rule


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


SINCE_ADAM = {"nadam": NAdam, "radam": RAdam, "lion": Lion}
