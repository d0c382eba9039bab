"""The adapter every lrlab optimizer shares: a pure rule becomes a torch.optim.Optimizer.

Each rule is plain arithmetic on (parameter, gradient, state) and returns the new values, so the same
function runs on Python floats (the spreadsheet lab), on tensors (the reference path) and under
torch.compile (one fused kernel per group). RuleOptimizer adds what torch expects: param_groups with torch's
hyperparameter names, per-parameter state in self.state[p], state_dict(), closures. A subclass's default fast
path uses torch._foreach_* ops and is tested equal to its rule. This file also holds the validation every
optimizer's constructor runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

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

    rule: Callable  # the pure update rule; each subclass sets its own
    state_names: tuple[str, ...] = ()
    # True where foreach_update already applies the rule tensor by tensor with what it needs beyond hypers()
    # (a per-tensor warm-up, a group's averaging weight, a second rule): "reference" then runs it too.
    one_path: bool = False

    # impl -> a subclass that keeps its state another way (Adam's "flat"), built when that impl is asked for
    implementations: dict[str, Callable[[], type]] = {}

    def __new__(cls, *args: Any, **kwargs: Any):
        course = [k for k in kwargs if k in COURSE_KEYWORDS]
        if course:
            k = course[0]
            raise TypeError(
                f"{cls.__name__}() takes no keyword {k!r} (the course's name): lrlab calls it {COURSE_KEYWORDS[k]}"
            )
        if kwargs.get("impl") in cls.implementations:
            cls = cls.implementations[kwargs["impl"]]()
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
