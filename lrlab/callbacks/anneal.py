"""The workbook's automatic annealer as a training callback, for any model and optimizer.

Defaults (chosen by measurement on the lesson CNN, see docs/results/auto-anneal.md): the noise measure,
checked every 50 batches after a one-epoch linear warm-up (warmup=None), ratio rule with rebase,
threshold 1.5, factor 3.
`AutoAnnealCB.workbook()` is the sheet's rule as it stands (on a real network it never fires).

Every check (each epoch, or every k batches) computes a gradient-size `measure` and applies a rule:
- rule "ratio" (the adam_ann sheet): divide the lr by `factor` when measure / best-so-far > `threshold`
  (with rebase=True the best restarts from the measure after each decision, so a measure that keeps
  rising fires once per doubling instead of at every check);
- rule "halving" (the lecturer's spoken version): divide it when the measure has fallen to 1/`threshold`
  of its value at the last decision (or the first check).
Measures: "sq" (mean root of Adam's second moment, or of an EMA of squared gradients the callback keeps for
other optimizers: the workbook's), "noise" (E|g|^2 / |E g|^2 from the same moments: the inverse of the
gradient signal-to-noise ratio), "stationarity" (SASA-style test of Yaida's condition E[-2 theta.dtheta] =
E|dtheta|^2 over the interval's steps; fires when it holds), "valid_loss" (fires when the validation loss
did not improve, as ReduceLROnPlateau with patience 0).
"""

from __future__ import annotations

import math

import torch

from lrlab.anneal import anneal_step
from lrlab.callbacks.core import last_metric
from lrlab.learner import Callback, Learner

MEASURES = ("sq", "noise", "stationarity", "valid_loss")
RULES = ("ratio", "halving")


class AutoAnnealCB(Callback):
    """Anneal the lr by a statistic of training, with no schedule set ahead; every decision is recorded.

    Args:
        measure: "sq", "noise", "stationarity" or "valid_loss" (see the module's notes).
        rule: "ratio" (divide when measure / best > threshold) or "halving" (when it fell to 1/threshold).
        threshold, factor: the rule's trigger and the lr divisor, both > 1.
        every: check every `every` batches, or None for each epoch.
        warmup: batches of linear warm-up before the first check (None: one epoch; 0: none).
        best: a starting best for the ratio rule; beta: EMA factor of the moments it keeps;
        tolerance: the stationarity test's margin; rebase: restart the best after each decision.

    Raises:
        ValueError: an unknown measure or rule, threshold or factor <= 1, or a bad `every`."""

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
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        if not threshold > 1 or not factor > 1:
            raise ValueError(f"threshold and factor must be > 1, got {threshold!r}, {factor!r}")
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be None (each epoch) or a number of batches >= 1, got {every!r}")
        self.measure, self.rule, self.threshold, self.factor = measure, rule, threshold, factor
        self.every, self.warmup, self.initial_best, self.beta, self.tolerance = every, warmup, best, beta, tolerance
        self.rebase = rebase
        self.decisions: list[dict] = []

    # -- life cycle -------------------------------------------------------------------------------
    def before_fit(self, learn: Learner) -> None:
        self.warmup_steps = len(learn.dls.train) if self.warmup is None else self.warmup
        self.best = math.inf if self.initial_best is None else self.initial_best
        self.reference: float | None = None
        self.decisions, self.step, self.base_lrs = [], 0, [g["lr"] for g in learn.opt.param_groups]
        self.adam: bool | None = None
        self.own_sq: list[torch.Tensor] | None = None
        self.own_avg: list[torch.Tensor] | None = None
        self.z: list[float] = []
        self.d2: list[float] = []

    STATE = (
        "best",
        "reference",
        "decisions",
        "step",
        "base_lrs",
        "adam",
        "own_sq",
        "own_avg",
        "z",
        "d2",
        "warmup_steps",
    )

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])

    def before_batch(self, learn: Learner) -> None:
        if learn.training and self.step < self.warmup_steps:  # linear warm-up before the first check
            for group, base in zip(learn.opt.param_groups, self.base_lrs):
                group["lr"] = base * (self.step + 1) / self.warmup_steps

    def after_backward(self, learn: Learner) -> None:
        if self.measure == "stationarity":
            self.before_step = [p.detach().clone() for p in self._params(learn)]
        elif self.measure in ("sq", "noise") and not self._uses_adam_state(learn):
            self._track_own_moments(learn)

    def after_step(self, learn: Learner) -> None:
        if self.measure == "stationarity":
            dot = d2 = 0.0
            for old, p in zip(self.before_step, self._params(learn)):
                delta = p.detach() - old
                dot += float((old * delta).sum())
                d2 += float((delta * delta).sum())
            self.z.append(-2 * dot - d2)
            self.d2.append(d2)

    def after_batch(self, learn: Learner) -> None:
        if not learn.training:
            return
        self.step += 1
        if self.every is not None and self.step > self.warmup_steps and self.step % self.every == 0:
            self.check(learn)

    def after_epoch(self, learn: Learner) -> None:
        if self.every is not None or self.step <= self.warmup_steps:
            return
        if self.measure == "valid_loss":
            if not learn.training or not learn.do_valid:
                self.check(learn)
        elif learn.training:
            self.check(learn)

    # -- the measures -------------------------------------------------------------------------------
    @staticmethod
    def _params(learn: Learner) -> list[torch.Tensor]:
        return [p for g in learn.opt.param_groups for p in g["params"] if p.grad is not None]

    @staticmethod
    def _adam_state(learn: Learner) -> bool:
        return any("exp_avg_sq" in s for s in learn.opt.state.values())

    def _uses_adam_state(self, learn: Learner) -> bool:
        """Decided once the optimizer has state (after its first step), not re-scanned every batch."""
        if self.adam is None and learn.opt.state:
            self.adam = self._adam_state(learn)
        return bool(self.adam)

    def _track_own_moments(self, learn: Learner) -> None:
        grads = [p.grad.detach() for p in self._params(learn)]
        if self.own_sq is None:
            self.own_sq = [torch.zeros_like(g) for g in grads]
            self.own_avg = [torch.zeros_like(g) for g in grads]
        for sq, avg, g in zip(self.own_sq, self.own_avg, grads):
            sq.mul_(self.beta).addcmul_(g, g, value=1 - self.beta)
            avg.lerp_(g, 1 - self.beta)

    def _moments(self, learn: Learner) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self._uses_adam_state(learn):
            states = [s for s in learn.opt.state.values() if "exp_avg_sq" in s]
            return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        return self.own_avg or [], self.own_sq or []

    def current_measure(self, learn: Learner) -> float:
        """The chosen statistic now (see the module's docstring)."""
        if self.measure == "valid_loss":
            value = last_metric(learn, "valid_loss")
            if value is None:
                raise ValueError("measure 'valid_loss' needs a MetricsCB and a validation pass")
            return value
        avgs, sqs = self._moments(learn)
        if not sqs:
            return math.nan
        if self.measure == "sq":
            total = sum(float(s.sqrt().sum()) for s in sqs)
            return total / sum(s.numel() for s in sqs)
        signal = sum(float((m * m).sum()) for m in avgs)
        return sum(float(s.sum()) for s in sqs) / max(signal, 1e-30)

    # -- the decision -------------------------------------------------------------------------------
    def check(self, learn: Learner) -> None:
        """Apply the rule once and record it."""
        lr = learn.opt.param_groups[0]["lr"]
        if self.measure == "stationarity":
            fired, value, ratio = self._stationary()
        else:
            value = self.current_measure(learn)
            if not math.isfinite(value):
                return
            fired, ratio = self._decide(value, lr)
        new_lr = lr / self.factor if fired else lr
        if fired:
            for group in learn.opt.param_groups:
                group["lr"] /= self.factor
        self.decisions.append(
            {"step": self.step, "epoch": learn.epoch, "measure": value, "ratio": ratio, "old_lr": lr, "new_lr": new_lr}
        )

    def _decide(self, value: float, lr: float) -> tuple[bool, float]:
        if self.measure == "valid_loss":  # plateau: no improvement on the best
            ratio = value / self.best if math.isfinite(self.best) else 0.0
            fired = math.isfinite(self.best) and value >= self.best * (1 - 1e-3)
            self.best = min(self.best, value)
            return fired, ratio
        if self.rule == "ratio":
            decision = anneal_step(value, self.best, lr, self.threshold, self.factor)
            self.best = value if (decision.fired and self.rebase) else decision.best
            return decision.fired, decision.ratio
        if self.reference is None:  # halving: compare with the value at the last decision
            self.reference = value
            return False, 1.0
        ratio = self.reference / value
        if ratio >= self.threshold:
            self.reference = value
            return True, ratio
        return False, ratio

    def _stationary(self) -> tuple[bool, float, float]:
        """SASA-style: does the interval's mean of z = -2 theta.dtheta - |dtheta|^2 sit within tolerance of 0?"""
        z, d2 = self.z, self.d2
        self.z, self.d2 = [], []
        n = len(z)
        if n < 2:
            return False, math.nan, math.nan
        mean = sum(z) / n
        se = math.sqrt(sum((v - mean) ** 2 for v in z) / (n - 1) / n)
        scale = sum(d2) / n
        ratio = (abs(mean) + 2 * se) / scale if scale > 0 else math.inf
        return ratio < self.tolerance, mean / scale if scale > 0 else math.nan, ratio
