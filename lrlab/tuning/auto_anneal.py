"""The automatic annealer with torch's scheduler shape: build it on any optimizer, `step()` it once per batch.

It runs in any training loop (plain PyTorch, Lightning, lrlab's Learner through `AutoAnnealCB`): it watches
the optimizer through torch's step hooks, so the loop only calls `step()` after each optimizer step (and
`epoch_end()` when it checks per epoch). Knows no Learner.

Every check (every k batches, or at each epoch's end) computes a statistic of training (`measure`) and
applies a rule:
- rule "ratio" (the workbook's adam_ann sheet): divide the lr by `factor` when measure / best-so-far >
  `threshold` (with rebase=True the best restarts from the measure after each decision, so a measure that
  keeps rising fires once per doubling instead of at every check);
- rule "halving" (the lecturer's spoken version): divide it when the measure has fallen to 1/`threshold` of
  its value at the last decision (or the first check).
Measures: "sq" (mean root of Adam's second moment, or of an EMA of squared gradients the annealer keeps for
other optimizers: the workbook's), "noise" (E|g|^2 / |E g|^2 from the same moments: the inverse of the
gradient signal-to-noise ratio), "stationarity" (SASA-style test of Yaida's condition E[-2 theta.dtheta] =
E|dtheta|^2 over the interval's steps; fires when it holds), "valid_loss" (fires when the validation loss
given to `epoch_end` did not improve, as ReduceLROnPlateau with patience 0).
"""

from __future__ import annotations

import math

import torch

from lrlab.tuning.anneal_rule import anneal_step

MEASURES = ("sq", "noise", "stationarity", "valid_loss")
RULES = ("ratio", "halving")


class AutoAnneal:
    """Anneal an optimizer's lr by a statistic of training, with no schedule set ahead; every decision recorded.

    Args:
        optimizer: any torch.optim.Optimizer (lrlab's or torch's); its current lrs are the base lrs.
        measure: "sq", "noise", "stationarity" or "valid_loss" (see the module's notes).
        rule: "ratio" (divide when measure / best > threshold) or "halving" (when it fell to 1/threshold).
        threshold, factor: the rule's trigger and the lr divisor, both > 1.
        every: check every `every` steps, or None at each `epoch_end()`.
        warmup: steps of linear warm-up from base/warmup to base before the first check (0: none).
        best: a starting best for the ratio rule; beta: EMA factor of the moments it keeps;
        tolerance: the stationarity test's margin; rebase: restart the best after each decision.

    Raises:
        ValueError: an unknown measure or rule, threshold or factor <= 1, a bad `every` or `warmup`, or
            "valid_loss" checked every k steps (it needs a validation loss, given at epoch ends)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        measure: str = "noise",
        rule: str = "ratio",
        threshold: float = 1.5,
        factor: float = 3.0,
        every: int | None = 50,
        warmup: int = 0,
        best: float | None = None,
        beta: float = 0.99,
        tolerance: float = 0.5,
        rebase: bool = True,
    ) -> None:
        check_settings(measure, rule, threshold, factor, every, warmup)
        self.optimizer = optimizer
        self.measure, self.rule, self.threshold, self.factor = measure, rule, threshold, factor
        self.every, self.warmup, self.beta, self.tolerance, self.rebase = every, warmup, beta, tolerance, rebase
        self.best = math.inf if best is None else best
        self.reference: float | None = None
        self.decisions: list[dict] = []
        self.step_count = self.epoch = 0
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.adam: bool | None = None
        self.own_sq: list[torch.Tensor] | None = None
        self.own_avg: list[torch.Tensor] | None = None
        self.z: list[float] = []
        self.d2: list[float] = []
        self.loss_ema: float | None = None
        self._hooks = [optimizer.register_step_pre_hook(self._before_step)]
        if measure == "stationarity":
            self._hooks.append(optimizer.register_step_post_hook(self._after_step))
        self._set_warmup_lr()

    STATE = ("best", "reference", "decisions", "step_count", "epoch", "base_lrs", "adam", "own_sq", "own_avg",
             "z", "d2", "loss_ema")  # fmt: skip

    def state_dict(self) -> dict:
        """Everything a resumed run needs to make the same decisions (the optimizer saves its own lrs)."""
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])

    def remove(self) -> None:
        """Detach from the optimizer (its step hooks); the lrs stay as they are."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def get_last_lr(self) -> list[float]:
        """The lrs the next step will use, one per param group (as torch's schedulers report them)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    # -- what the loop calls ----------------------------------------------------------------------
    def step(self, loss: float | torch.Tensor | None = None) -> None:
        """After each optimizer step: count it, follow the warm-up, check every `every` steps.

        loss: the batch's training loss, if the loop has it; its moving average is recorded with decisions."""
        if loss is not None:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            if math.isfinite(value):
                self.loss_ema = value if self.loss_ema is None else 0.9 * self.loss_ema + 0.1 * value
        self.step_count += 1
        self._set_warmup_lr()
        if self.every is not None and self.step_count > self.warmup and self.step_count % self.every == 0:
            self.check()

    def epoch_end(self, valid_loss: float | None = None) -> None:
        """At each epoch's end: the check when `every` is None (measure "valid_loss" needs `valid_loss`).

        Raises:
            ValueError: measure "valid_loss" without a valid_loss."""
        if self.every is None and self.step_count > self.warmup:
            if self.measure == "valid_loss" and valid_loss is None:
                raise ValueError("measure 'valid_loss' needs epoch_end(valid_loss=...) after each validation")
            self.check(valid_loss)
        self.epoch += 1

    def _set_warmup_lr(self) -> None:
        if self.step_count < self.warmup:
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * (self.step_count + 1) / self.warmup

    # -- what the optimizer's hooks see -------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def _before_step(self, optimizer, args, kwargs) -> None:
        if self.measure == "stationarity":
            self.before = [p.detach().clone() for p in self._params()]
        elif self.measure in ("sq", "noise") and not self._uses_adam_state():
            self._track_own_moments()

    def _after_step(self, optimizer, args, kwargs) -> None:
        dot = d2 = 0.0
        for old, p in zip(self.before, self._params()):
            delta = p.detach() - old
            dot += float((old * delta).sum())
            d2 += float((delta * delta).sum())
        self.z.append(-2 * dot - d2)
        self.d2.append(d2)

    def _uses_adam_state(self) -> bool:
        """Decided once the optimizer has state (after its first step), not re-scanned every batch."""
        if self.adam is None and self.optimizer.state:
            self.adam = any("exp_avg_sq" in s for s in self.optimizer.state.values())
        return bool(self.adam)

    def _track_own_moments(self) -> None:
        grads = [p.grad.detach() for p in self._params()]
        if self.own_sq is None:
            self.own_sq = [torch.zeros_like(g) for g in grads]
            self.own_avg = [torch.zeros_like(g) for g in grads]
        for sq, avg, g in zip(self.own_sq, self.own_avg, grads):
            sq.mul_(self.beta).addcmul_(g, g, value=1 - self.beta)
            avg.lerp_(g, 1 - self.beta)

    def _moments(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self._uses_adam_state():
            states = [s for s in self.optimizer.state.values() if "exp_avg_sq" in s]
            return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        return self.own_avg or [], self.own_sq or []

    def current_measure(self) -> float:
        """The gradient statistic now ("sq" or "noise"; NaN before the first step)."""
        avgs, sqs = self._moments()
        if not sqs:
            return math.nan
        if self.measure == "sq":
            return sum(float(s.sqrt().sum()) for s in sqs) / sum(s.numel() for s in sqs)
        signal = sum(float((m * m).sum()) for m in avgs)
        return sum(float(s.sum()) for s in sqs) / max(signal, 1e-30)

    # -- the decision -------------------------------------------------------------------------------
    def check(self, valid_loss: float | None = None) -> None:
        """Apply the rule once and record it (a NaN measure, before any step, decides nothing)."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.measure == "stationarity":
            fired, value, ratio = self._stationary()
        else:
            value = float(valid_loss) if self.measure == "valid_loss" else self.current_measure()
            if not math.isfinite(value):
                return
            fired, ratio = self._decide(value, lr)
        if fired:
            for group in self.optimizer.param_groups:
                group["lr"] /= self.factor
        new_lr = lr / self.factor if fired else lr
        self.decisions.append({"step": self.step_count, "epoch": self.epoch, "measure": value, "ratio": ratio,
                               "old_lr": lr, "new_lr": new_lr, "loss": self.loss_ema})  # fmt: skip

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


def check_settings(measure: str, rule: str, threshold: float, factor: float, every: int | None, warmup) -> None:
    """The annealer's settings, checked before anything is built.

    Raises:
        ValueError: naming the bad setting and what is allowed."""
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; choose one of {', '.join(MEASURES)}")
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if not threshold > 1 or not factor > 1:
        raise ValueError(f"threshold and factor must be > 1, got {threshold!r}, {factor!r}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be None (each epoch) or a number of batches >= 1, got {every!r}")
    if measure == "valid_loss" and every is not None:
        raise ValueError("measure 'valid_loss' checks at epoch ends: give every=None")
    if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0):
        raise ValueError(f"warmup must be a number of batches >= 0, got {warmup!r}")
