"""Schedules in phases, as torch schedulers (step(), state_dict(), get_last_lr()):

- WarmupStableDecay (WSD): a linear warm-up, a long flat stretch at the peak, then a short decay to a floor.
  Unlike cosine it does not need to know when to start cooling until the decay begins, so a run can be
  extended, or branched off to decay at any checkpoint (Hu et al. 2024, Hägele et al. 2024).
- PhasedLR: warm-up, then a plateau phase that cuts the lr when a validation metric stops improving (what
  ReduceLROnPlateau does), then a final decay from wherever the plateau phase left the lr. torch's
  SequentialLR cannot hold ReduceLROnPlateau (its step takes a metric); here the step counter drives the
  phases and report(metric) drives the plateau, and state_dict() holds both, so a resume is exact.

Both compute each step's factor in closed form from the step count and their own state.
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

SHAPES = ("linear", "cosine", "sqrt")


def _decayed(progress: float, shape: str) -> float:
    """How much of the lr is left after `progress` (0..1) of the decay."""
    if shape == "linear":
        return 1 - progress
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - math.sqrt(progress)


def _check_steps(total_steps: int, warmup_steps: int, decay_steps: int, shape: str, floor: float) -> None:
    for name, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps), ("decay_steps", decay_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "total_steps" else 0):
            raise ValueError(f"{name} must be an integer >= {1 if name == 'total_steps' else 0}, got {value!r}")
    if warmup_steps + decay_steps > total_steps:
        raise ValueError(f"warm-up ({warmup_steps}) and decay ({decay_steps}) steps exceed total_steps ({total_steps})")
    if shape not in SHAPES:
        raise ValueError(f"decay_shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1:
        raise ValueError(f"the floor must be a number in [0, 1] (a fraction of the peak lr), got {floor!r}")


def _set_lrs(optimizer: torch.optim.Optimizer, lrs: list[float]) -> None:
    for group, lr in zip(optimizer.param_groups, lrs):
        if isinstance(group["lr"], torch.Tensor):  # a tensor lr stays the same tensor, as torch keeps it
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class _ResumableLR(lr_scheduler.LRScheduler):
    """Loading a state also puts its lrs into the optimizer, so a resume is exact whichever was loaded first
    (a scheduler built after the optimizer's state was loaded has already stepped it once)."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        _set_lrs(self.optimizer, self._last_lr)


def _steps(total_steps: int, fraction_or_steps: float | int) -> int:
    """A phase length given as steps (an int) or as a fraction of total_steps (a float below 1)."""
    if isinstance(fraction_or_steps, float) and 0 <= fraction_or_steps < 1:
        return int(round(total_steps * fraction_or_steps))
    return fraction_or_steps


class WarmupStableDecay(_ResumableLR):
    """Warm-up, stable, decay. Each group's lr: base * (step+1)/warmup during the warm-up, base during the
    stable phase, then down to base * floor along decay_shape over the last decay steps.

    Args:
        optimizer: any torch optimizer; total_steps: the run's length in steps (filled in by lrlab's
            schedule callbacks); warmup, decay: lengths in steps, or fractions of total_steps (floats below 1);
        decay_shape: linear, cosine or sqrt; floor: the final lr as a fraction of the peak.

    Raises:
        ValueError: lengths that do not fit in total_steps, an unknown shape, a floor outside [0, 1]."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup: float | int = 0.05,
                 decay: float | int = 0.2, decay_shape: str = "linear", floor: float = 0.0,
                 last_epoch: int = -1) -> None:  # fmt: skip
        self.total_steps = total_steps
        self.warmup_steps, self.decay_steps = _steps(total_steps, warmup), _steps(total_steps, decay)
        _check_steps(total_steps, self.warmup_steps, self.decay_steps, decay_shape, floor)
        self.decay_shape, self.floor = decay_shape, floor
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start:
            return 1.0
        if self.decay_steps == 0:  # no decay phase (a run too short for one): the floor once the run is over
            return self.floor
        progress = min(1.0, (step - decay_start + 1) / self.decay_steps)
        return self.floor + (1 - self.floor) * _decayed(progress, self.decay_shape)

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


class PhasedLR(WarmupStableDecay):
    """Warm-up, a metric-driven plateau phase, a final decay: one scheduler with torch's interface.

    step() once per batch moves through the phases; report(metric) after each validation feeds the plateau
    phase: when the metric has not improved (by more than `threshold`, relatively) for more than `patience`
    reports, the lr scale is multiplied by `factor` (not below min_scale). Reports during the warm-up set the
    best value only; during the decay they change nothing. Every cut is kept in `cuts` (step, metric, scale).

    Args:
        optimizer; total_steps; warmup, decay, decay_shape, floor: as WarmupStableDecay; factor, patience,
            threshold, mode ("min" or "max"), min_scale: as ReduceLROnPlateau's.

    Raises:
        ValueError: as WarmupStableDecay; factor outside (0, 1), a negative patience or threshold, an unknown
            mode; report() of a value that is not a finite number."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup: float | int = 0.05,
                 decay: float | int = 0.2, decay_shape: str = "linear", floor: float = 0.0, factor: float = 0.5,
                 patience: int = 1, threshold: float = 1e-4, mode: str = "min", min_scale: float = 1e-3,
                 last_epoch: int = -1) -> None:  # fmt: skip
        if not 0 < factor < 1:
            raise ValueError(f"factor must be a number in (0, 1), got {factor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if not 0 <= threshold < 1 or mode not in ("min", "max") or not 0 < min_scale <= 1:
            raise ValueError(f"need 0 <= threshold < 1, mode 'min' or 'max', 0 < min_scale <= 1; got {threshold!r}, "
                             f"{mode!r}, {min_scale!r}")  # fmt: skip
        self.cut_factor, self.patience = factor, patience
        self.threshold, self.mode, self.min_scale = threshold, mode, min_scale
        self.scale, self.best, self.bad_reports = 1.0, None, 0  # set before the first step reads them
        self.cuts: list[tuple[int, float, float]] = []
        super().__init__(optimizer, total_steps, warmup, decay, decay_shape, floor, last_epoch)

    def phase(self, step: int | None = None) -> str:
        """ "warmup", "plateau" or "decay" at a step (default: the current one)."""
        step = self.last_epoch if step is None else step
        if step < self.warmup_steps:
            return "warmup"
        return "decay" if step >= self.total_steps - self.decay_steps else "plateau"

    def factor(self, step: int) -> float:
        """WSD's factor, scaled by the plateau's cuts after the warm-up (the decay starts where they left it)."""
        return super().factor(step) * (self.scale if step >= self.warmup_steps else 1.0)

    def report(self, metric: float) -> None:
        """A validation metric (lower is better in mode "min"); may cut the lr at once in the plateau phase."""
        metric = float(metric)
        if not math.isfinite(metric):
            raise ValueError(f"PhasedLR.report needs a finite metric, got {metric!r}")
        sign = 1.0 if self.mode == "min" else -1.0
        improved = self.best is None or sign * metric < sign * self.best - self.threshold * abs(self.best)
        phase = self.phase()
        if improved:
            self.best, self.bad_reports = metric, 0
            return
        if phase != "plateau":
            return
        self.bad_reports += 1
        if self.bad_reports > self.patience and self.scale > self.min_scale:
            self.scale = max(self.scale * self.cut_factor, self.min_scale)
            self.bad_reports = 0
            self.cuts.append((self.last_epoch, metric, self.scale))
            self._last_lr = self.get_lr()
            _set_lrs(self.optimizer, self._last_lr)


class Ramp:
    """A value over the run's progress (0 at the first step, 1 at the last): from start to end, linearly or
    along a half cosine (fastai's SchedLin / SchedCos). A class, not a lambda, so it can be saved."""

    def __init__(self, start: float, end: float, shape: str = "cosine") -> None:
        if shape not in ("linear", "cosine"):
            raise ValueError(f"a ramp's shape must be linear or cosine, got {shape!r}")
        self.start, self.end, self.shape = float(start), float(end), shape

    def __call__(self, progress: float) -> float:
        weight = progress if self.shape == "linear" else 0.5 * (1 - math.cos(math.pi * progress))
        return self.start + (self.end - self.start) * weight

    def __repr__(self) -> str:
        return f"Ramp({self.start:g}, {self.end:g}, {self.shape!r})"


HYPERS = ("momentum", "beta1", "beta2", "weight_decay")


def parse_ramp(text: str) -> tuple[str, Ramp]:
    """ "NAME=START:END[:linear|cosine]" -> (NAME, Ramp), e.g. "weight_decay=0:0.1:linear".

    Raises:
        ValueError: another form, a NAME not in HYPERS, a bound that is not a number, an unknown shape."""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if name not in HYPERS or len(parts) not in (2, 3):
        raise ValueError(f"expected NAME=START:END[:linear|cosine] with NAME one of {', '.join(HYPERS)}, got {text!r}")
    try:
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"{text!r}: START and END must be numbers") from None
    return name, Ramp(start, end, parts[2] if len(parts) == 3 else "cosine")


class HyperScheduler(_ResumableLR):
    """Schedules the other hyperparameters of every param group, as torch's schedulers schedule the lr:
    momentum (SGD-style) or beta1, beta2, weight decay. Each is a function of the progress (step / (total-1)),
    e.g. Ramp(0.95, 0.85). The lr is left to the optimizer or to another scheduler stepped beside this one.

    Args:
        optimizer; total_steps: the run's length (filled in by lrlab's schedule callbacks);
        **schedules: hyperparameter name -> function of progress in [0, 1].

    Raises:
        ValueError: an unknown name, a name the optimizer's groups do not have, or no schedules."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, last_epoch: int = -1,
                 **schedules) -> None:  # fmt: skip
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
        if not schedules:
            raise ValueError(f"give at least one schedule: {', '.join(HYPERS)}")
        for name in schedules:
            if name not in HYPERS:
                raise ValueError(f"cannot schedule {name!r}; choose from {', '.join(HYPERS)} (the lr: any scheduler)")
            key = "betas" if name.startswith("beta") else name
            if key not in optimizer.param_groups[0]:
                raise ValueError(f"{type(optimizer).__name__} has no {key!r} to schedule")
        self.total_steps, self.schedules = total_steps, schedules
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._apply_hypers()
        return [group["lr"] for group in self.optimizer.param_groups]

    def _apply_hypers(self) -> None:
        progress = min(1.0, max(0, self.last_epoch) / max(1, self.total_steps - 1))
        for name, schedule in self.schedules.items():
            value = float(schedule(progress))
            for group in self.optimizer.param_groups:
                if name.startswith("beta"):
                    betas = list(group["betas"])
                    betas[0 if name == "beta1" else 1] = value
                    group["betas"] = tuple(betas)
                else:
                    group[name] = value

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "schedules"}  # code, given again

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._apply_hypers()
