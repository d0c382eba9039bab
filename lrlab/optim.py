"""Optimizers from scratch: pure update rules, adapted to torch.optim.Optimizer so any scheduler drives them.

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

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

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


# -- validation ------------------------------------------------------------------------------------

MAX_LR = 1e10  # far above any useful lr, and low enough that lr / bias-correction stays a finite float32


def as_number(value: Any) -> Any:
    """A one-element tensor hyperparameter (torch allows a tensor lr and betas) as a Python number."""
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def plain_hypers(group: dict) -> dict:
    """A param group with tensor hyperparameters read as Python numbers: what the update paths compute with."""
    out = {k: as_number(v) for k, v in group.items() if k != "params"}
    if "betas" in out:
        out["betas"] = tuple(as_number(b) for b in out["betas"])
    return out


def _check(name: str, value: Any, low: float, high: float | None = None, high_open: bool = True) -> None:
    value = as_number(value)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        allowed = f">= {low}" if high is None else f"in [{low}, {high})" if high_open else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")


def check_hypers(hp: dict) -> None:
    """Reject hyperparameters outside their ranges with a message naming the value."""
    _check("lr", hp["lr"], 0.0, MAX_LR, high_open=False)
    if "momentum" in hp:
        _check("momentum", hp["momentum"], 0.0, 1.0)
    if "alpha" in hp and "beta3" not in hp:  # RMSProp's smoothing; AdEMAMix's alpha is a weight >= 0
        _check("alpha", hp["alpha"], 0.0, 1.0)
    if "betas" in hp:
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _check("betas[0]", betas[0], 0.0, 1.0)
        _check("betas[1]", betas[1], 0.0, 1.0)
    if "eps" in hp:
        _check("eps", hp["eps"], 0.0, math.inf)
    _check("weight_decay", hp["weight_decay"], 0.0, math.inf)


# -- the adapter -----------------------------------------------------------------------------------


def apply_rule(rule: Callable, params: list, grads: list, states: list[list], hypers: dict) -> None:
    """Run a rule tensor by tensor and write the results back in place (the reference and compiled path)."""
    for i, p in enumerate(params):
        new = rule(p, grads[i], *(s[i] for s in states), **hypers)
        p.copy_(new[0])
        for s, value in zip(states, new[1:]):
            s[i].copy_(value)


def apply_rule_packed(rule: Callable, params: list, grads: list, states: list[list], names, packed, flags) -> None:
    """apply_rule with the scalar hyperparameters unpacked from one tensor (the compiled path's entry)."""
    hypers = {name: packed[i] for i, name in enumerate(names)}
    apply_rule(rule, params, grads, states, {**hypers, **flags})


# The course's (miniai's) keyword names, and what lrlab calls them (torch's names).
COURSE_KEYWORDS = {
    "wd": "weight_decay",
    "mom": "momentum (Momentum) or betas=(mom, sqr_mom) (Adam)",
    "sqr_mom": "alpha (RMSProp) or betas=(mom, sqr_mom) (Adam)",
    "beta1": "betas=(beta1, beta2)",
    "beta2": "betas=(beta1, beta2)",
}


class RuleOptimizer(torch.optim.Optimizer):
    """Adapts a pure rule to torch's Optimizer: groups, per-parameter state, closures, state_dict.

    Raises:
        ValueError: a hyperparameter out of its range, or an empty parameter list.
        TypeError: a keyword it does not take; the course's names (wd, mom, sqr_mom) get lrlab's name."""

    rule: Callable = staticmethod(sgd_rule)
    state_names: tuple[str, ...] = ()
    # True where foreach_update already applies the rule tensor by tensor with what it needs beyond hypers()
    # (a per-tensor warm-up, a group's averaging weight, a second rule): "reference" then runs it too.
    one_path: bool = False

    def __new__(cls, *args: Any, **kwargs: Any):
        course = [k for k in kwargs if k in COURSE_KEYWORDS]
        if course:
            k = course[0]
            raise TypeError(
                f"{cls.__name__}() takes no keyword {k!r} (the course's name): lrlab calls it {COURSE_KEYWORDS[k]}"
            )
        return super().__new__(cls)

    def __init__(
        self, params: Iterable, defaults: dict, impl: str = "foreach", compile: bool = False, maximize: bool = False
    ) -> None:
        if not isinstance(maximize, bool):
            raise ValueError(f"maximize must be True or False, got {maximize!r}")
        defaults = {**defaults, "maximize": maximize}
        check_hypers(defaults)
        if impl not in ("foreach", "reference"):
            raise ValueError(f"impl must be 'foreach' or 'reference', got {impl!r}")
        params = list(params)
        if not params:
            raise ValueError("the optimizer got an empty parameter list: pass model.parameters()")
        super().__init__(params, defaults)
        self.impl = "compiled" if compile else impl
        self._compiled = None

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        check_hypers(self.param_groups[-1])

    def _gather(self, group: dict) -> tuple[list, list, list[list], list]:
        """The group's parameters that have gradients, their grads, their state lists, their step counts."""
        names = self.group_state_names(group)
        params, grads, states, steps = [], [], [[] for _ in names], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            st = self.state[p]
            if not st:
                st["step"] = 0
                for name in names:
                    st[name] = self.initial_state(name, p, group)
            st["step"] += 1
            params.append(p)
            grads.append(p.grad)
            steps.append(st["step"])
            for lst, name in zip(states, names):
                lst.append(st[name])
        return params, grads, states, steps

    def group_state_names(self, group: dict) -> tuple[str, ...]:
        """The state each parameter of this group keeps (one list for the optimizer, unless it mixes rules)."""
        return self.state_names

    def initial_state(self, name: str, p: torch.Tensor, group: dict) -> torch.Tensor:
        """A parameter's state before its first step: zeros (subclasses may start elsewhere)."""
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def hypers(self, group: dict, step: int) -> dict:
        """The rule's keyword arguments for one group (subclasses map torch's names to the rule's)."""
        return {"lr": group["lr"], "weight_decay": group["weight_decay"]}

    def rule_args(self, states: list[list], steps: list) -> list[list]:
        """Extra per-tensor positional inputs after the state (Adam's step)."""
        return states

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for full_group in self.param_groups:
            params, grads, states, steps = self._gather(full_group)
            if not params:
                continue
            group = plain_hypers(full_group)
            if group.get("maximize"):  # ascend: the rule descends the negated gradient, as torch's maximize does
                grads = torch._foreach_neg(grads)
            if self.impl == "foreach" or self.one_path:
                self.foreach_update(group, params, grads, states, steps)
            elif self.impl == "compiled":
                self.compiled_update(group, params, grads, states, steps)
            else:
                apply_rule(type(self).rule, params, grads, self.rule_args(states, steps), self.hypers(group, steps))
        return loss

    def compiled_update(self, group: dict, params: list, grads: list, states: list[list], steps: list) -> None:
        """The rule under torch.compile. Scalars travel packed in one tensor, so a scheduler changing the lr
        (or the step count growing) never triggers a recompile, and building them costs one small tensor."""
        if self._compiled is None:
            self._compiled = torch.compile(apply_rule_packed, fullgraph=True)
        hp = self.hypers(group, steps)
        args = self.rule_args(states, steps)
        if len(args) > len(states) and all(s == steps[0] for s in steps):
            hp["step"], args = steps[0], states  # the usual case: one step count for the whole group
        elif len(args) > len(states):
            args = [*states, [torch.tensor(float(s)) for s in steps]]
        flags = {k: v for k, v in hp.items() if isinstance(v, bool)}
        names = tuple(k for k in hp if k not in flags)
        packed = torch.tensor([float(hp[k]) for k in names], dtype=torch.float32)
        self._compiled(type(self).rule, params, grads, args, names, packed, flags)

    def foreach_update(self, group: dict, params: list, grads: list, states: list[list], steps: list) -> None:
        raise NotImplementedError


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
        params, lr, weight_decay, impl, compile: as SGD; betas: the EMA factors of the gradient and its
        square, each in [0, 1); eps: added to the root; bias_correction: divide the EMAs by 1 - beta^t.

    Raises:
        ValueError: hyperparameters out of range or no parameters; TypeError: the course's keyword names."""

    rule = staticmethod(adam_rule)
    state_names = ("exp_avg", "exp_avg_sq")

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


OPTIMIZERS: dict[str, type[RuleOptimizer]] = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSProp, "adam": Adam}


def get_opt_func(name: str, **kwargs: Any) -> Callable[..., torch.optim.Optimizer]:
    """An opt_func (params, lr -> optimizer) for a registered name; extra keywords fixed.

    Raises:
        ValueError: an unknown name (the message lists the registered ones)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return functools.partial(OPTIMIZERS[name], **kwargs)


LESSON_EPS = 1e-5  # the lesson's eps for adaptive optimizers
# The lesson's recipe, defined once: its eps for adaptive optimizers; Adam also gets AdamW's weight decay.
LESSON_RECIPES: dict[str, dict[str, float]] = {
    "adam": {"eps": LESSON_EPS, "weight_decay": 1e-2},
    "rmsprop": {"eps": LESSON_EPS},
}
# The course's (miniai's) own rules, exactly: RMSProp's average starts at grad^2; Adam puts eps inside the
# root, with beta2 0.99; both eps 1e-5. lrlab's defaults follow torch instead (compare them side by side).
COURSE_RULES: dict[str, dict] = {
    "rmsprop": {"alpha": 0.99, "eps": LESSON_EPS, "init_grad_sq": True},
    "adam": {"betas": (0.9, 0.99), "eps": LESSON_EPS, "eps_root": True},
}


def lesson_recipe(name: str) -> dict[str, float]:
    """The lesson's keywords for a registered optimizer (a fresh dict; empty where the defaults are the lesson's)."""
    return dict(LESSON_RECIPES.get(name, {}))


def lesson_opt_func(name: str = "adam", **overrides: Any) -> Callable[..., torch.optim.Optimizer]:
    """get_opt_func with the lesson's recipe, any keyword overridden."""
    return get_opt_func(name, **{**lesson_recipe(name), **overrides})


def group_momentum(group: dict) -> float:
    """A param group's momentum: beta1 for Adam-like optimizers, else `momentum` (0 when there is none)."""
    return as_number(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))


def check_lr(lr: float) -> float:
    """A learning rate must be a finite number > 0; returns it as a float.

    Raises:
        ValueError: anything else (booleans, strings, NaN, inf, zero, negatives)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return float(lr)


# The optimizers since Adam live in their own file (it imports this one); registering them here means every
# `from lrlab.optim import OPTIMIZERS` (the CLI's --opt, `lrlab optimizers`) lists them.
from lrlab.optim_since_adam import SINCE_ADAM  # noqa: E402

OPTIMIZERS.update(SINCE_ADAM)
