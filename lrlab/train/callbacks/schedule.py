"""Drive any torch.optim.lr_scheduler from the training loop, per batch or per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable

from torch.optim import lr_scheduler

from lrlab.schedules.torch_schedules import SchedFunc, build_sched, sched_func
from lrlab.train.callbacks.core import last_metric
from lrlab.train.learner import Callback, CancelFitException, Learner


class BatchSchedCB(Callback):
    """Step a scheduler after every training batch (never during validation). The schedule spans the whole
    fit, or its first `n_steps` batches (for a fit cut short mid-epoch, see StepLimitCB, or DeadlineSchedCB to
    end by a time; past them the last lr holds: OneCycleLR extrapolated past its end would climb again).

    Args:
        make_sched: a factory of the optimizer, e.g. partial(OneCycleLR, max_lr=0.06); its length
            (total_steps, T_max) is filled in when not given.
        n_steps: the schedule's length in batches (None: the whole fit).
        metric: what a metric-driven schedule (one with report(), PhasedLR) is told after each validation.

    Raises:
        ValueError: n_steps that is not a positive integer; at before_fit, a schedule shorter than the fit;
            after a validation, a metric-driven schedule and no such metric recorded."""

    run_in_lr_find = False  # it follows or steers the real run

    def __init__(self, make_sched: SchedFunc, n_steps: int | None = None, metric: str = "valid_loss") -> None:
        if n_steps is not None and (not isinstance(n_steps, int) or n_steps < 1):
            raise ValueError(f"n_steps must be a positive integer or None, got {n_steps!r}")
        self.make_sched, self.n_steps, self.metric = make_sched, n_steps, metric

    def before_fit(self, learn: Learner) -> None:
        n = len(learn.dls.train) * learn.n_epochs if learn.do_train else 0
        self.total = self.n_steps or n
        self.sched = build_sched(self.make_sched, learn.opt, self.total)

    def after_batch(self, learn: Learner) -> None:
        # no step after the schedule's last batch: the optimizer keeps the schedule's final lr, not the next one
        if learn.training and self.sched.last_epoch < self.total - 1:
            self.sched.step()

    def after_epoch(self, learn: Learner) -> None:
        if learn.training or not hasattr(self.sched, "report"):
            return
        value = last_metric(learn, self.metric)
        if value is None:
            raise ValueError(f"{type(self.sched).__name__} needs the metric {self.metric!r}: add a MetricsCB")
        self.sched.report(value)

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)


class DeadlineSchedCB(BatchSchedCB):
    """A per-batch schedule over `n_steps` batches that always finishes, and by `seconds` at the latest: when
    the clock runs ahead of the batch count, the schedule skips ahead to keep pace, so a slower-than-planned
    run still anneals fully by its deadline instead of being cut off at a high learning rate. Ends the fit.

    Args:
        make_sched, n_steps: as BatchSchedCB (n_steps required); seconds: the deadline of the training;
        clock: the time source (tests inject one).

    Raises:
        ValueError: n_steps that is not a positive integer, or seconds <= 0."""

    order = 90

    def __init__(
        self, make_sched: SchedFunc, n_steps: int, seconds: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        super().__init__(make_sched, n_steps)
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seconds, self.clock = seconds, clock

    def before_fit(self, learn: Learner) -> None:
        super().before_fit(learn)
        self.start, self.trained, self.skipped = self.clock(), 0, 0

    def after_batch(self, learn: Learner) -> None:
        if not learn.training:
            return
        self.trained += 1
        here = self.sched.last_epoch  # the schedule position this batch was trained at
        by_clock = int(self.n_steps * (self.clock() - self.start) / self.seconds)
        target = max(here + 1, by_clock)
        if target >= self.n_steps:
            self.skipped += self.n_steps - 1 - here
            raise CancelFitException()
        self.skipped += target - here - 1
        for _ in range(target - here):
            self.sched.step()


class EpochSchedCB(Callback):
    """Step a scheduler after every epoch; ReduceLROnPlateau gets a metric (the valid loss by default).

    Args:
        make_sched: a factory of the optimizer (T_max is filled in with the number of epochs).
        metric: what ReduceLROnPlateau follows (a key of MetricsCB's rows).

    Raises:
        ValueError: at the end of an epoch, ReduceLROnPlateau with no such metric recorded."""

    run_in_lr_find = False  # it follows or steers the real run

    def __init__(self, make_sched: SchedFunc, metric: str = "valid_loss") -> None:
        self.make_sched, self.metric = make_sched, metric

    def before_fit(self, learn: Learner) -> None:
        self.sched = build_sched(self.make_sched, learn.opt, learn.n_epochs)
        self.plateau = isinstance(self.sched, lr_scheduler.ReduceLROnPlateau)

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)

    def after_epoch(self, learn: Learner) -> None:
        if not self.plateau:
            if learn.training:
                self.sched.step()
            return
        if learn.training and learn.do_valid:
            return
        value = last_metric(learn, self.metric)
        if value is None:
            raise ValueError(
                f"ReduceLROnPlateau needs the metric {self.metric!r}: add a MetricsCB (it records "
                f"train_loss, train_acc, valid_loss, valid_acc)"
            )
        self.sched.step(value)


def fit_one_cycle(learn: Learner, n_epochs: int, lr_max: float, **kwargs) -> Learner:
    """Train with OneCycleLR stepped per batch (warm-up to lr_max, anneal, momentum cycled opposite)."""
    make_sched, _ = sched_func("onecycle", lr_max, **kwargs)
    return learn.fit(n_epochs, lr=lr_max, cbs=[BatchSchedCB(make_sched)])
