"""Learning-rate schedules: which ones torch offers, what one will do before training, and how to build one."""

from __future__ import annotations

import copy
import functools
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim import lr_scheduler

from lrlab.optim.core import as_number, group_momentum
from lrlab.schedules.phased import PhasedLR, WarmupStableDecay

SchedFunc = Callable[..., object]


def _target(make_sched: SchedFunc) -> tuple[Callable, dict]:
    """The class a (possibly partial) scheduler factory builds, and the keywords already bound."""
    bound: dict = {}
    while isinstance(make_sched, functools.partial):
        bound = {**make_sched.keywords, **bound}
        make_sched = make_sched.func
    return make_sched, bound


def build_sched(make_sched: SchedFunc, opt: torch.optim.Optimizer, n_steps: int) -> object:
    """Build the scheduler, filling in its length (OneCycleLR total_steps, cosine T_max) when not given."""
    target, bound = _target(make_sched)
    try:
        names = inspect.signature(target).parameters
    except (TypeError, ValueError):
        names = {}
    extra = {}
    if "total_steps" in names and "total_steps" not in bound and "epochs" not in bound:
        extra["total_steps"] = n_steps
    if "T_max" in names and "T_max" not in bound:
        extra["T_max"] = n_steps
    has_momentum = "momentum" in opt.defaults or "betas" in opt.defaults
    if "cycle_momentum" in names and "cycle_momentum" not in bound and not has_momentum:
        extra["cycle_momentum"] = False  # e.g. plain SGD, RMSProp: nothing to cycle
    sched = make_sched(opt, **extra)
    total = getattr(sched, "total_steps", None)
    if isinstance(sched, lr_scheduler.OneCycleLR) and total is not None and total < n_steps:
        raise ValueError(
            f"the schedule lasts {total} steps but this fit needs {n_steps}: OneCycleLR cannot go past its end; "
            f"give total_steps >= {n_steps} or leave it out to have it filled in"
        )
    return sched


def available_schedulers() -> list[str]:
    """The scheduler classes torch.optim.lr_scheduler offers (the lesson's capitalised-name filter, done right)."""
    base = (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)
    names = [
        name
        for name, obj in vars(lr_scheduler).items()
        if inspect.isclass(obj)
        and issubclass(obj, base)
        and obj is not lr_scheduler.LRScheduler
        and not name.startswith("_")
        and obj.__module__ == lr_scheduler.__name__
    ]
    return sorted(set(names))


# Preset names for the CLI and fit_one_cycle: factory builder and whether it steps per batch.
PRESETS = ("onecycle", "cosine", "constant", "plateau", "wsd", "phased")


def sched_func(name: str, lr: float, /, **kwargs) -> tuple[SchedFunc | None, str]:
    """A scheduler factory for a preset or any lr_scheduler class name, and its natural step ('batch'/'epoch').

    Raises:
        ValueError: an unknown name, an argument the scheduler does not take, a required one left out, or a
            scheduler that needs Python objects (LambdaLR, SequentialLR, ...)."""
    if name == "constant":
        if kwargs:
            raise ValueError(f"constant holds the lr and takes no arguments, got {', '.join(sorted(kwargs))}")
        return None, "batch"
    presets = {"onecycle": (lr_scheduler.OneCycleLR, "batch"), "cosine": (lr_scheduler.CosineAnnealingLR, "batch"),
               "plateau": (lr_scheduler.ReduceLROnPlateau, "epoch"), "wsd": (WarmupStableDecay, "batch"),
               "phased": (PhasedLR, "batch")}  # fmt: skip
    if name in presets:  # phased: warm-up, plateau on the validation loss, decay (BatchSchedCB reports the metric)
        cls, step = presets[name]
        kwargs = {"max_lr": lr, **kwargs} if name == "onecycle" else kwargs  # a max_lr given wins over the lr
        check_arguments(cls, kwargs)
        return functools.partial(cls, **kwargs), step
    valid = available_schedulers()
    if name not in valid:
        raise ValueError(
            f"unknown scheduler {name!r}; choose a preset ({', '.join(PRESETS)}) or one of: {', '.join(valid)}"
        )
    if name in NEEDS_OBJECTS:
        raise ValueError(
            f"{name} needs {NEEDS_OBJECTS[name]}, which K=V text cannot give; use it from Python: "
            f"BatchSchedCB(partial(lr_scheduler.{name}, ...))"
        )
    cls = getattr(lr_scheduler, name)
    if cls is lr_scheduler.OneCycleLR:
        kwargs.setdefault("max_lr", lr)
    check_arguments(cls, kwargs)
    step = "epoch" if cls is lr_scheduler.ReduceLROnPlateau else "batch"
    return functools.partial(cls, **kwargs), step


# torch schedulers built from Python objects, which K=V options cannot spell
NEEDS_OBJECTS = {"LambdaLR": "lr_lambda (a function)", "MultiplicativeLR": "lr_lambda (a function)",
                 "SequentialLR": "schedulers (a list of built schedulers)",
                 "ChainedScheduler": "schedulers (a list of built schedulers)"}  # fmt: skip
FILLED_IN = ("optimizer", "T_max", "total_steps")  # the optimizer, and a length build_sched fills in


def check_arguments(cls: type, kwargs: dict) -> None:
    """Refuse names a scheduler does not take, and leave none of its required ones out.

    Raises:
        ValueError: naming the unknown or missing arguments and the ones it takes."""
    params = inspect.signature(cls).parameters
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = [p for p in params if p not in ("self", "optimizer") and params[p].kind in keyword]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ValueError(f"{cls.__name__} takes no {', '.join(map(repr, unknown))}; its arguments: {', '.join(takes)}")
    missing = [p for p in takes if params[p].default is inspect.Parameter.empty and p not in kwargs
               and p not in FILLED_IN]  # fmt: skip
    if missing:
        raise ValueError(f"{cls.__name__} needs {', '.join(missing)}: give {missing[0]}=VALUE")


def checked_lrs(make_sched: SchedFunc | object, steps: int, lr: float = 0.06, **kwargs: object) -> dict:
    """sched_lrs, with a scheduler that fails on its arguments (a step_size of 0, a T_max of text) turned into
    one ValueError that says what failed, instead of the arithmetic's own exception from deep inside torch.

    Raises:
        ValueError: the schedule cannot be built or stepped with these arguments."""
    try:
        return sched_lrs(make_sched, steps, lr=lr, **kwargs)
    except ValueError:
        raise
    except (TypeError, ArithmeticError, KeyError, IndexError, RuntimeError) as e:
        target, bound = _target(make_sched if not isinstance(make_sched, (list, tuple)) else make_sched[0])
        args = ", ".join(f"{k}={v!r}" for k, v in bound.items())
        raise ValueError(f"{getattr(target, '__name__', target)}({args}) fails: {type(e).__name__}: {e}") from e


def simulated_copy(sched: object) -> object:
    """A copy of a built scheduler and its optimizer to step ahead: the parameters are replaced by empty
    stand-ins, so the real ones, the optimizer and the scheduler are left exactly as they were."""
    memo: dict = {}
    for group in sched.optimizer.param_groups:
        for p in group["params"]:
            memo[id(p)] = torch.empty(0, requires_grad=p.requires_grad)
    return copy.deepcopy(sched, memo)


def sched_lrs(
    make_sched: SchedFunc | object,
    steps: int,
    opt: torch.optim.Optimizer | None = None,
    lr: float = 0.06,
    reports: dict[int, float] | None = None,
) -> dict[str, list[float]]:
    """Simulate a schedule: the lr (and beta1/momentum, beta2, weight decay, where they move) at each step.

    `make_sched` is a factory of the optimizer (built here on a throw-away optimizer, or on `opt`), a list of
    factories stepped together (an lr schedule and a HyperScheduler), or a scheduler already built: then it
    is simulated on a copy from where it stands, and left untouched.
    `reports` gives a metric-driven schedule (PhasedLR) its metrics: {steps done: metric}, reported after
    that many steps, as a training loop reports each validation.

    Raises:
        ValueError: steps < 1, more steps than a OneCycleLR has, or ReduceLROnPlateau (it follows a metric)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(make_sched, lr_scheduler.LRScheduler):
        scheds = [simulated_copy(make_sched)]
        opt = scheds[0].optimizer
    else:
        if opt is None:
            from lrlab.optim.classic import Adam

            opt = Adam([torch.zeros(1, requires_grad=True)], lr=lr)
        makers = make_sched if isinstance(make_sched, (list, tuple)) else [make_sched]
        scheds = [build_sched(make, opt, steps) for make in makers]  # e.g. an lr schedule and a HyperScheduler
    for sched in scheds:
        total = getattr(sched, "total_steps", None)
        if isinstance(sched, lr_scheduler.OneCycleLR) and total is not None and sched.last_epoch + steps > total:
            raise ValueError(f"OneCycleLR refuses to go past its {total} steps; ask for at most {total} steps")
        if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau follows a metric, not the step count: it cannot be simulated ahead")
    group = opt.param_groups[0]
    rec: dict[str, list[float]] = {"lr": [], "mom": [], "beta2": [], "weight_decay": []}
    reports = reports or {}
    with warnings.catch_warnings():  # the copy's optimizer.step is not torch's wrapped one: its warning is moot
        warnings.simplefilter("ignore", UserWarning)
        for done in range(1, steps + 1):
            rec["lr"].append(as_number(group["lr"]))
            rec["mom"].append(group_momentum(group))
            rec["beta2"].append(as_number(group["betas"][1]) if "betas" in group else 0.0)
            rec["weight_decay"].append(as_number(group.get("weight_decay", 0.0)))
            opt.step()
            for sched in scheds:
                sched.step()
                if done in reports and hasattr(sched, "report"):
                    sched.report(reports[done])
    for key in ("mom", "beta2", "weight_decay"):
        if len(set(rec[key])) <= 1:
            del rec[key]
    return rec


def plot_sched(
    make_sched: SchedFunc,
    steps: int,
    path: str | Path = "schedule.png",
    opt: torch.optim.Optimizer | None = None,
    lr: float = 0.06,
):
    """Draw what a schedule will do (lr, and momentum where it moves), saved as PNG."""
    from lrlab.plots import plot_series

    return plot_series(sched_lrs(make_sched, steps, opt, lr), path, xlabel="step")
