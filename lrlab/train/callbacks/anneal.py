"""AutoAnnealCB: the automatic annealer (lrlab.tuning.auto_anneal.AutoAnneal) as a Learner callback.

Defaults (chosen by measurement on the lesson CNN, see docs/results/auto-anneal.md): the noise measure,
checked every 50 batches after a one-epoch linear warm-up (warmup=None), ratio rule with rebase,
threshold 1.5, factor 3. `AutoAnnealCB.workbook()` is the sheet's rule as it stands (on a real network it
never fires). The measures and rules are described in lrlab.annealer.
"""

from __future__ import annotations

import torch

from lrlab.models import recompute_bn_keeping_order
from lrlab.train.callbacks.core import MetricsCB, last_metric
from lrlab.train.callbacks.evaluate import validate
from lrlab.train.learner import Callback, Learner
from lrlab.tuning.auto_anneal import MEASURES, RULES, AutoAnneal, check_settings
from lrlab.tuning.auto_lr import AutoLR
from lrlab.tuning.keep_best import KeepBest

__all__ = ["MEASURES", "RULES", "AutoAnnealCB", "AutoLRCB"]


class AutoAnnealCB(Callback):
    """Anneal the lr by a statistic of training, with no schedule set ahead; every decision is recorded.

    A thin adapter: before_fit builds an `AutoAnneal` on the Learner's optimizer, each training batch steps
    it, each epoch's end (after validation, for measure "valid_loss") calls its `epoch_end`.

    Args:
        measure, rule, threshold, factor, every, best, beta, tolerance, rebase: as `AutoAnneal`'s.
        warmup: batches of linear warm-up before the first check (None: one epoch; 0: none).

    Raises:
        ValueError: the settings `AutoAnneal` refuses (checked here, before any fit)."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 10  # after MetricsCB, so the valid loss is known at after_epoch

    @classmethod
    def workbook(cls, best: float | None = None) -> AutoAnnealCB:
        """The adam_ann sheet's rule exactly: second-moment measure, each epoch, best = running minimum."""
        return cls(measure="sq", rule="ratio", threshold=2.0, factor=4.0, every=None, warmup=0, best=best, rebase=False)

    def __init__(
        self,
        measure: str = "noise",
        rule: str = "ratio",
        threshold: float = 1.5,
        factor: float = 3.0,
        every: int | None = 50,
        warmup: int | None = None,
        best: float | None = None,
        beta: float = 0.99,
        tolerance: float = 0.5,
        rebase: bool = True,
    ) -> None:
        check_settings(measure, rule, threshold, factor, every, warmup)
        self.settings = dict(measure=measure, rule=rule, threshold=threshold, factor=factor, every=every, best=best,
                             beta=beta, tolerance=tolerance, rebase=rebase)  # fmt: skip
        self.warmup = warmup
        self.annealer: AutoAnneal | None = None

    def __getattr__(self, name: str):
        if name in ("measure", "rule", "threshold", "factor", "every"):
            return self.__dict__["settings"][name]
        raise AttributeError(name)

    @property
    def decisions(self) -> list[dict]:
        """Every check: step, epoch, measure, ratio, old_lr, new_lr, loss (a moving average)."""
        return self.annealer.decisions if self.annealer is not None else []

    def before_fit(self, learn: Learner) -> None:
        warmup = len(learn.dls.train) if self.warmup is None else self.warmup
        self.annealer = AutoAnneal(learn.opt, warmup=warmup, **self.settings)

    def state_dict(self) -> dict:
        return self.annealer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.annealer.load_state_dict(state)

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.annealer.step(getattr(learn, "loss", None))

    def after_epoch(self, learn: Learner) -> None:
        if self.settings["measure"] != "valid_loss":
            if learn.training:
                self.annealer.epoch_end()
        elif not learn.training or not learn.do_valid:
            valid_loss = last_metric(learn, "valid_loss")
            if valid_loss is None and self.every is None and self.annealer.step_count > self.annealer.warmup:
                raise ValueError("measure 'valid_loss' needs a MetricsCB and a validation pass")
            self.annealer.epoch_end(valid_loss)

    def cleanup_fit(self, learn: Learner) -> None:
        if self.annealer is not None:
            self.annealer.remove()  # kept, detached: its decisions stay readable


class AutoLRCB(Callback):
    """AutoLR (lrlab.tuning.auto_lr) as a Learner callback: no lr to choose, restores the last good state on a
    spike. The Learner's lr is not used: the search starts from AutoLR's own `start_lr` (1e-4).

    With validation (the Learner's valid loader, scored by MetricsCB), it keeps the weights of the best
    validation score, the untrained model's included: when the fit's last validation is clearly worse (on a
    few hundred rows, a high lr fits the noise), the model the fit hands over is the best one, and
    `events` says so ("restored best validation"); `restored` is then that event. The score is the
    accuracy when MetricsCB records one, else the validation loss.

    Args:
        budget: give AutoLR the fit's length (hold the found lr, then a linear decay over its last half);
            False: the noise annealer instead (it anneals too early: see docs/results/auto-anneal.md).
        average: with a budget, the window of the weights' moving average (AutoLR's `average`): validation
            and the model after the fit use the average, training the trained weights; the final weights are
            the same either way (the window closes as the decay ends). None: no average.
        bn_batches: with an average, the training batches that re-estimate BatchNorm statistics for the
            averaged weights before each validation.
        keep_best: keep and hand over the best-validated weights (see above); False: the last ones always.
        tolerance: how much worse the last validation must be to restore the best (KeepBest's tolerance).
        **settings: AutoLR's (start_lr, grow, rise, margin, max_search, spike, noise_z, floor, max_restores,
            factor, snapshot_every, every, threshold, decay).

    Raises:
        ValueError: a setting out of range, or a second AutoLRCB on the same Learner (when the fit starts)."""

    run_in_lr_find = False  # it follows or steers the real run

    order = 10

    def __init__(
        self,
        budget: bool = True,
        average: float | None = 0.2,
        bn_batches: int = 50,
        keep_best: bool = True,
        tolerance: float = 0.01,
        **settings,
    ) -> None:
        self.budget, self.average, self.bn_batches, self.settings = budget, average, bn_batches, settings
        self.keep_best, self.tolerance = keep_best, tolerance
        self.autolr: AutoLR | None = None
        self.keeper: KeepBest | None = None
        self.restored: dict | None = None

    @property
    def decisions(self) -> list[dict]:
        """The annealer's checks after the search."""
        return self.autolr.decisions if self.autolr is not None else []

    @property
    def events(self) -> list[dict]:
        """The search's result and every restore of the last good state."""
        return self.autolr.events if self.autolr is not None else []

    def build(self, opt: torch.optim.Optimizer, n_steps: int) -> AutoLR:
        """The AutoLR this callback drives over a fit of n_steps optimizer steps.

        Raises:
            ValueError: a setting out of range; TypeError: a setting AutoLR does not have."""
        total = n_steps if self.budget else None
        average = self.average if total is not None else None  # the average needs the run's length
        return AutoLR(opt, total_steps=total, average=average, **self.settings)

    def before_fit(self, learn: Learner) -> None:
        others = [cb for cb in learn.cbs if isinstance(cb, AutoLRCB) and cb is not self]
        if others:
            raise ValueError("two AutoLRCBs on one Learner would both set the lr; attach one")
        self.autolr = self.build(learn.opt, len(learn.dls.train) * learn.n_epochs)
        self.keeper, self.restored = None, None
        if self.keep_best and learn.do_valid and getattr(learn.dls, "valid", None) is not None:
            metrics = learn.cb(MetricsCB)
            self.monitor = "valid_acc" if metrics is not None and metrics.accuracy else "valid_loss"
            self.keeper = KeepBest(learn.model, self.monitor == "valid_acc", self.tolerance)
            self._observe(learn, "start")

    def _observe(self, learn: Learner, label: object) -> None:
        """Score the model now (MetricsCB's last validation, or a pass of our own) and keep it if best."""
        metrics = learn.cb(MetricsCB)
        rows = metrics.history if metrics is not None and label != "start" else []
        score = rows[-1].get(self.monitor) if rows else None
        if score is None:
            loss, acc = validate(learn.model, learn.dls.valid, learn.loss_func, self.monitor == "valid_acc",
                                 getattr(learn, "n_inp", 1))  # fmt: skip
            score = acc if self.monitor == "valid_acc" else loss
        self.keeper.observe(score, label)

    def summary(self) -> dict:
        """What AutoLR did, for a run folder: where it started, the lr its search found, every event."""
        found = next((e for e in self.events if e["event"] in ("search done", "too short to search")), None)
        history = self.autolr.history["lr"] if self.autolr is not None else []
        return {
            "start_lr": history[0] if history else None,
            "found_lr": found["lr"] if found else None,
            "search_steps": found["step"] if found else None,
            "searched": found is not None and found["event"] == "search done",
            "restores": self.autolr.restores if self.autolr is not None else 0,
            "restored_best_validation": self.restored,
            "settings": {"budget": self.budget, "average": self.average, "keep_best": self.keep_best, **self.settings},
            "events": self.events,
            "decisions": self.decisions,
        }

    def _use_average(self, learn: Learner) -> None:
        if self.autolr.use_average():
            recompute_bn_keeping_order(learn.model, learn.dls.train, self.bn_batches)

    def before_epoch(self, learn: Learner) -> None:
        if learn.training:
            self.autolr.use_live()
        else:
            self._use_average(learn)

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.autolr.step(learn.loss)

    def after_epoch(self, learn: Learner) -> None:
        if learn.training:
            self.autolr.epoch_end()
        elif self.keeper is not None:
            self._observe(learn, learn.epoch)

    def after_fit(self, learn: Learner) -> None:
        self._use_average(learn)  # the model a fit hands over is the one its validation scored
        if self.keeper is not None and self.keeper.history and self.keeper.history[-1][0] != "start":
            self.restored = self.keeper.restore(self.keeper.history[-1][1])
            if self.restored is not None:
                self.autolr.events.append({"step": self.autolr.step_count, **self.restored})

    def state_dict(self) -> dict:
        state = {"autolr": self.autolr.state_dict()}
        if self.keeper is not None:
            state["keeper"] = self.keeper.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if "autolr" not in state:  # written before the best weights were kept: AutoLR's own state
            self.autolr.load_state_dict(state)
            return
        self.autolr.load_state_dict(state["autolr"])
        if self.keeper is not None and "keeper" in state:
            self.keeper.load_state_dict(state["keeper"])

    def cleanup_fit(self, learn: Learner) -> None:
        if self.autolr is not None:
            self.autolr.remove()
