"""AutoLR: the annealer's second version. No lr to choose, it cannot diverge, and every decision is recorded.

Three parts, all driven by `step(loss)` after each optimizer step, in any loop (it watches the optimizer
through torch's hooks, as AutoAnneal does; knows no Learner):

1. **Search** (no lr to choose): from `start_lr` (1e-4), whatever lr the optimizer was built with, the lr
   grows by `grow` each step while training goes on (starting from the optimizer's lr made the result depend
   on it: up to 3 accuracy points between 1e-3 and 1e-2), an lr range test that does not waste its steps.
   It stops when the smoothed loss rises `rise` above its best, or is non-finite, or after `max_search`
   steps; the weights and optimizer
   state go back to a snapshot taken at least LAG steps before the smoothed loss's best (the smoothed loss
   trails the raw one, so at its best the damage has begun: on charlm, going back to the best itself cost
   3% in bits/char), and the lr is set to the lr of the best smoothed loss divided by `margin`.
2. **Anneal**: then an AutoAnneal (the noise measure, ratio rule) divides the lr when the gradient noise
   says training bounces around an optimum. Given the run's length (`total_steps`, which every training
   loop knows), it instead holds the found lr and decays it linearly to zero over the last `decay` (half)
   of the steps (warm-up-stable-decay with the warm-up replaced by the search): the noise rule anneals too
   early. `decay` was chosen on five of the suite's workloads (0.5 over 0.25 by the worst gap to tuned
   one-cycle) and checked on the other two (docs/results/auto-anneal.md).
3. **Guard** (it cannot diverge): in either phase, a non-finite loss or a spike (above `spike` x its moving
   average, above the average plus `noise_z` x the loss's noise, and above `floor` x the loss it started
   from: lrlab.tuning.loss_watch) ends the search (as a rise does), or later restores the last good snapshot
   (weights and optimizer state) and divides the lr by `factor`, at most `max_restores` times; after that
   a finite spike is recorded and let pass, and a non-finite loss raises AutoLRError (the lr is no longer
   the cause). So do a non-finite loss at the starting weights, a step past `total_steps`, and an lr that
   something else changed (a scheduler, a second AutoLR).
4. **Average** (optional, `average`): after the search it keeps a moving average of the weights whose window
   is `average` x the steps since the search, scaled by lr / peak (so it shrinks to the live weights as the
   decay ends). `use_average()` puts it into the parameters for evaluation, `use_live()` takes the trained
   ones back (Schedule-Free's train/eval switch, for any optimizer): held at a high lr, the live weights
   bounce around an optimum that their average sits closer to, so a budgeted run is good at any time, not
   only after its decay.

Events (the search's result, every guard restore) are in `events`; the annealer's checks in `decisions`.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings

import torch

from lrlab.tuning.auto_anneal import AutoAnneal
from lrlab.tuning.loss_watch import LossWatch


class AutoLRError(RuntimeError):
    """AutoLR cannot help: the loss is not finite whatever the lr, the run is longer than it was told, or
    something else sets the lr too."""


FALLBACK_LR = 1e-3  # an optimizer whose constructor names no default lr (Adam's, a safe start for most)


def default_lr(optimizer: torch.optim.Optimizer) -> float:
    """The lr an optimizer's class takes when none is given (its constructor's default), else FALLBACK_LR."""
    cls = type(optimizer)
    for klass in cls.__mro__:  # a wrapper class (Mechanic's, say) may take **kwargs: ask the classes it extends
        parameter = inspect.signature(klass.__init__).parameters.get("lr") if "__init__" in vars(klass) else None
        if parameter is not None:
            value = parameter.default
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
            return float(value) if ok else FALLBACK_LR
    return FALLBACK_LR


class AutoLR:
    """Find a starting lr, anneal it from training statistics, and restore the last good state on a spike.

    Args:
        optimizer: any torch.optim.Optimizer; its lr is replaced by start_lr.
        start_lr: where the search starts, whatever the optimizer's lr. grow: the lr's factor per search step
            (raised on a run shorter than ~345 steps so that 1e-4..10 fits in 35% of it);
            rise: the smoothed loss's rise over its best that ends the search; margin: the found lr is the
            best-loss lr / margin; max_search: the most search steps.
        spike, noise_z, floor: a loss above spike x its moving average, above the average + noise_z x its mean
            absolute deviation and above floor x the starting loss is a divergence; factor: the lr divisor
            after one; max_restores: the most restores (then finite spikes pass, non-finite losses raise);
            confirm: finite spikes in a row that make a divergence (one alone is batch noise: a batch of 16 on
            data the model nearly fits has one misread row, many times the loss's average, often; a
            divergence stays up). A non-finite loss is one at once.
        snapshot_every: steps between snapshots of the last good state.
        every, threshold: the annealer's check interval and ratio threshold (see AutoAnneal).
        total_steps: the run's length in steps; given, the lr is held after the search and decays linearly to
            0 over the last `decay` fraction of them (instead of the noise annealer).
        average: the window of the weights' moving average as a fraction of the steps since the search (times
            lr / peak; needs total_steps); None: no average.

    Raises:
        ValueError: a setting out of range, named. `step` raises AutoLRError (see above)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        start_lr: float = 1e-4,
        grow: float = 1.1,
        rise: float = 0.25,
        margin: float = 4.0,
        max_search: int = 200,
        spike: float = 4.0,
        noise_z: float = 6.0,
        floor: float = 0.1,
        max_restores: int = 4,
        confirm: int = 3,
        factor: float = 3.0,
        snapshot_every: int = 20,
        every: int = 50,
        threshold: float = 1.5,
        total_steps: int | None = None,
        decay: float = 0.5,
        average: float | None = None,
    ) -> None:
        for name, value, low in (("grow", grow, 1.0), ("margin", margin, 0.0), ("spike", spike, 1.0),
                                 ("factor", factor, 1.0), ("rise", rise, 0.0)):  # fmt: skip
            if not value > low:
                raise ValueError(f"{name} must be > {low:g}, got {value!r}")
        if isinstance(start_lr, bool) or not (isinstance(start_lr, (int, float)) and 0 < start_lr < math.inf):
            raise ValueError(f"start_lr must be a positive number, got {start_lr!r}")
        if isinstance(max_restores, bool) or not isinstance(max_restores, int) or max_restores < 0:
            raise ValueError(f"max_restores must be an integer >= 0, got {max_restores!r}")
        self.watch = LossWatch(ratio=spike, noise_z=noise_z, floor=floor)  # checks noise_z and floor
        self.start_lr, self.max_restores = float(start_lr), max_restores
        for name, value in (("max_search", max_search), ("snapshot_every", snapshot_every), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.optimizer, self.grow, self.rise, self.margin, self.max_search = optimizer, grow, rise, margin, max_search
        self.factor, self.snapshot_every = factor, snapshot_every  # spike is the LossWatch's ratio
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            raise ValueError(f"confirm must be an integer >= 1, got {confirm!r}")
        self.confirm, self.pending = confirm, 0  # pending: the finite spikes in a row so far
        self.every, self.threshold = every, threshold
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):  # fmt: skip
            raise ValueError(f"total_steps must be an integer >= 1 or None, got {total_steps!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be a fraction in (0, 1], got {decay!r}")
        if average is not None and (total_steps is None or not 0 < average <= 1):
            raise ValueError(f"average must be a fraction in (0, 1] of a known total_steps, got average={average!r}, "
                             f"total_steps={total_steps!r}")  # fmt: skip
        self.total_steps, self.decay, self.peak = total_steps, decay, None
        if total_steps is not None:  # a short run searches faster: 1e-4 to 10 within SEARCH_SHARE of its steps
            self.grow = max(grow, self.SEARCH_SPAN ** (1 / max(1.0, self.SEARCH_SHARE * total_steps)))
            self.max_search = min(max_search, max(1, total_steps // 2))  # leave half the run to hold and decay
        self.average = average
        self.average_params: list[torch.Tensor] | None = None  # the moving average, from the search's end
        self.average_count = 0  # the steps it has taken in
        self.live_params: list[torch.Tensor] | None = None  # the trained weights while the average is swapped in
        self.phase, self.step_count, self.events = "search", 0, []
        self.history: dict[str, list[float]] = {"lr": [], "loss": []}  # per step: the lr applied, the loss
        self._set_lr(self.start_lr)
        self.expected_lr: float | None = self.lr  # what AutoLR set: anything else means another hand on the lr
        self.best_loss, self.best_lr, self.best_step = math.inf, self.lr, 0
        self.recent: list[dict] = []  # the search's last snapshots, every 5 steps
        self.anneal: AutoAnneal | None = None
        self.snapshot = self._take_snapshot()
        if total_steps is not None and total_steps < self.MIN_STEPS:  # no room to search: a sound lr instead
            self._start_without_search(total_steps)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def decisions(self) -> list[dict]:
        """The annealer's checks (none during the search)."""
        return self.anneal.decisions if self.anneal is not None else []

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def restores(self) -> int:
        """How many times the guard went back to a snapshot."""
        return sum(e["event"] == "restore" for e in self.events)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _take_snapshot(self) -> dict:
        params = [p.detach().clone() for p in self._params()]
        return {"params": params, "opt": copy.deepcopy(self.optimizer.state_dict()), "step": self.step_count}

    def _restore(self, lr: float) -> None:
        with torch.no_grad():
            for p, saved in zip(self._params(), self.snapshot["params"]):
                p.copy_(saved)
        self.optimizer.load_state_dict(copy.deepcopy(self.snapshot["opt"]))
        self._set_lr(lr)
        self.watch.reset()
        if self.average_params is not None:  # it took in the steps that led to the spike: start it again
            self.average_params, self.average_count = [p.detach().clone() for p in self._params()], 0

    # -- the weights' average ------------------------------------------------------------------------
    def _update_average(self) -> None:
        """One step of the weights' moving average. Its window is `average` x the steps it has run, so it starts
        at the live weights and never lags far behind them, scaled by lr / peak: the decay anneals the live
        weights themselves, and at its end the average is the live weights."""
        if self.average_params is None:
            return
        self.average_count += 1
        rate = 1.0 / max(1.0, self.average * self.average_count * self.lr / self.peak)
        with torch.no_grad():
            for mean, p in zip(self.average_params, self._params()):
                mean.lerp_(p.detach(), rate)

    def use_average(self) -> bool:
        """Put the weights' moving average into the parameters, keeping the trained ones for `use_live()`.

        Returns:
            Whether the parameters changed (False: no average yet, or it is already in)."""
        if self.average_params is None or self.live_params is not None:
            return False
        params = self._params()
        self.live_params = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, mean in zip(params, self.average_params):
                p.copy_(mean)
        return True

    def use_live(self) -> None:
        """Put the trained weights back after `use_average()` (nothing to do otherwise)."""
        if self.live_params is None:
            return
        with torch.no_grad():
            for p, live in zip(self._params(), self.live_params):
                p.copy_(live)
        self.live_params = None

    # -- what the loop calls -------------------------------------------------------------------------
    def step(self, loss: float | torch.Tensor) -> None:
        """After each optimizer step, with that batch's training loss.

        Raises:
            ValueError: no loss (AutoLR needs it to search and to guard).
            AutoLRError: a non-finite loss at the starting weights or after max_restores restores, a step past
                total_steps, or an lr that something else changed."""
        if loss is None:
            raise ValueError("AutoLR.step needs the batch's loss: step(loss)")
        if self.live_params is not None:
            raise RuntimeError("AutoLR.step: the averaged weights are in the parameters; call use_live() before "
                               "training")  # fmt: skip
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if self.expected_lr is not None and not math.isclose(self.lr, self.expected_lr, rel_tol=1e-9):
            raise AutoLRError(f"the optimizer's lr is {self.lr:.3g}, not the {self.expected_lr:.3g} AutoLR set: "
                              "something else changes it (a scheduler, a second AutoLR)")  # fmt: skip
        if self.total_steps is not None and self.step_count >= self.total_steps:
            raise AutoLRError(f"step {self.step_count + 1} is past total_steps={self.total_steps}: the decay has "
                              "ended at lr 0; give AutoLR the run's real length")  # fmt: skip
        self.history["lr"].append(self.lr)
        self.history["loss"].append(value)
        self.step_count += 1
        try:
            self._take_in(value)
        finally:
            self.expected_lr = self.lr

    def _take_in(self, value: float) -> None:
        if self._diverged(value):
            return
        self.watch.add(value)
        if self.phase == "search":
            self._search_step()
            return
        if self.peak is not None:
            self._budget_step()
        else:
            self.anneal.step(value)
        self._update_average()
        if self.step_count % self.snapshot_every == 0:
            self.snapshot = self._take_snapshot()

    def _budget_step(self) -> None:
        """Hold the found lr, then decay it linearly to 0 over the last `decay` of total_steps."""
        start = self.total_steps - max(1, int(self.decay * self.total_steps))
        if self.step_count < start:
            return
        if self.phase != "decay":
            self.phase = "decay"
            self.events.append({"step": self.step_count, "event": "decay", "lr": self.peak,
                                "until": self.total_steps})  # fmt: skip
        left = max(0, self.total_steps - self.step_count)
        self._set_lr(self.peak * left / (self.total_steps - start))

    def epoch_end(self) -> None:
        """At each epoch's end (the annealer checks every `every` steps; this keeps its epoch count)."""
        if self.anneal is not None:
            self.anneal.epoch_end()

    def _diverged(self, value: float) -> bool:
        """Whether this loss is skipped as a divergence (or a spike awaiting confirmation), acting on it if so."""
        if not self.watch.is_spike(value):
            self.pending = 0
            return False
        self.pending += 1
        if math.isfinite(value) and self.pending < self.confirm:
            return True  # not taken into the averages, no snapshot: the next losses say whether it stays up
        self.pending = 0
        smoothed = self.watch.mean
        if not math.isfinite(value) and self.step_count == 1:
            raise AutoLRError(f"the loss is {value} at the starting weights, before any update: no lr can fix "
                              "that; check the data and the model")  # fmt: skip
        if self.restores >= self.max_restores:
            if math.isfinite(value):  # the lr is already max_restores cuts down: call it noise, and say so
                self.events.append({"step": self.step_count, "event": "spike ignored", "loss": value,
                                    "smoothed": smoothed, "lr": self.lr})  # fmt: skip
                return True
            raise AutoLRError(f"the loss is {value} at step {self.step_count} after {self.restores} restores that "
                              f"each divided the lr by {self.factor:g} (now {self.lr:.3g}): not an lr problem; "
                              "check the data and the model")  # fmt: skip
        if self.phase == "search":  # the lr grew past what training takes: the range test's natural end
            self._end_search("loss spiked" if math.isfinite(value) else "loss not finite")
            return True
        new_lr = self.lr / self.factor
        if self.peak is not None:  # a budgeted run lowers its plateau, and its decay follows
            self.peak /= self.factor
        self.events.append({"step": self.step_count, "event": "restore", "phase": self.phase, "loss": value,
                            "smoothed": smoothed, "old_lr": self.lr, "new_lr": new_lr,
                            "to_step": self.snapshot["step"]})  # fmt: skip
        self._restore(new_lr)
        return True

    SEARCH_SPAN, SEARCH_SHARE = 1e5, 0.35  # see __init__: the suite's runs (>= 470 steps) keep grow 1.1
    MIN_STEPS = 50  # fewer steps cannot settle a moving average, search and hold
    SETTLE = 10  # steps before the moving average is trusted (its first values follow single batches)
    LAG = 10  # steps the smoothed loss trails the raw one (an EMA of 0.9): where it is best, damage has begun

    def _search_step(self) -> None:
        smoothed = self.watch.mean
        if self.watch.n >= self.SETTLE and smoothed < self.best_loss:
            self.best_loss, self.best_lr, self.best_step = smoothed, self.lr, self.step_count
        if self.step_count % 5 == 0:  # the snapshot to go back to: the last one LAG steps before the best
            self.recent = [*self.recent[-3:], self._take_snapshot()]
            before_best = [snap for snap in self.recent if snap["step"] <= self.best_step - self.LAG]
            if before_best:
                self.snapshot = before_best[-1]
        worse = self.watch.n >= 2 * self.SETTLE and smoothed > (1 + self.rise) * self.best_loss
        if worse or self.step_count >= self.max_search:
            self._end_search("loss rose" if worse else "search limit")
            return
        self._set_lr(self.lr * self.grow)

    def _end_search(self, why: str) -> None:
        """Back to the snapshot before the best smoothed loss, at its lr / margin; then hold (or anneal)."""
        lr = self.best_lr / self.margin
        self._restore(lr)
        self._start_annealing(lr, why)

    def _start_annealing(self, lr: float, why: str, event: str = "search done") -> None:
        self.events.append({"step": self.step_count, "event": event, "why": why, "best_lr": self.best_lr,
                            "best_loss": self.best_loss, "best_step": self.best_step, "lr": lr,
                            "restored_to": self.snapshot["step"]})  # fmt: skip
        self.phase, self.recent = "anneal", []
        if self.total_steps is not None:
            self.phase, self.peak = "hold", lr
            if self.average is not None:
                self.average_params = [p.detach().clone() for p in self._params()]
        else:
            self.anneal = AutoAnneal(self.optimizer, every=self.every, threshold=self.threshold, factor=self.factor)
        self.snapshot = self._take_snapshot()

    def _start_without_search(self, total_steps: int) -> None:
        """Hold the optimizer's own default lr (its constructor's: Adam's 1e-3, torch SGD's 1e-3, ...), then decay:
        a search needs MIN_STEPS steps, and one squeezed into fewer found lrs that trained to chance."""
        lr = default_lr(self.optimizer)
        warnings.warn(f"AutoLR: a run of {total_steps} steps is too short to search an lr (it needs {self.MIN_STEPS}"
                      f" or more): it holds {type(self.optimizer).__name__}'s default lr {lr:g}, then decays it",
                      stacklevel=3)  # fmt: skip
        self._set_lr(lr)
        self.best_lr = lr
        self._start_annealing(lr, "too short to search", event="too short to search")
        self.expected_lr = lr

    def remove(self) -> None:
        """Detach the annealer from the optimizer."""
        if self.anneal is not None:
            self.anneal.remove()

    def plot(self, path="autolr.png"):
        """The lr and the loss against the step (and the noise annealer's statistic, without a budget), with the
        search's end, the decay's start and every restore marked; saved as PNG and returned."""
        import matplotlib.pyplot as plt

        from lrlab.plots import save

        noise = self.total_steps is None  # a budgeted run holds and decays: no annealer's statistic to draw
        n_panels = 3 if noise else 2
        fig, axes = plt.subplots(n_panels, 1, figsize=(7, 2.4 * n_panels), sharex=True)
        ax_lr, ax_loss = axes[0], axes[1]
        steps = range(1, len(self.history["lr"]) + 1)
        ax_lr.plot(steps, self.history["lr"])
        ax_lr.set(yscale="log", ylabel="lr")
        finite = [v if math.isfinite(v) else math.nan for v in self.history["loss"]]
        ax_loss.plot(steps, finite, alpha=0.5)
        ax_loss.set(yscale="log", ylabel="training loss")
        if noise:
            ax_stat = axes[2]
            ax_stat.plot([d["step"] for d in self.decisions], [d["ratio"] for d in self.decisions], marker=".")
            ax_stat.axhline(self.threshold, color="C3", linestyle=":", label=f"threshold {self.threshold:g}")
            ax_stat.set(ylabel="noise / its best")
            ax_stat.legend(fontsize=8)
        axes[-1].set(xlabel="step")
        colors = {"search done": "C2", "decay": "C1", "restore": "C3"}
        for event in (e for e in self.events if e["event"] in colors):
            for ax in axes:
                ax.axvline(event["step"], color=colors[event["event"]], linestyle="--", alpha=0.7)
        for ax in axes:
            ax.grid(alpha=0.3)
        ax_lr.set_title("AutoLR: search's end (green), decay's start (orange), restores (red)")
        save(fig, path)
        return fig

    STATE = (
        "phase",
        "step_count",
        "events",
        "history",
        "best_loss",
        "best_lr",
        "snapshot",
        "peak",
        "average_params",
        "live_params",
        "best_step",
        "recent",
        "average_count",
        "pending",
    )

    OLDER = {
        "best_step": 0,
        "recent": [],
        "average_count": 0,
        "pending": 0,
    }  # keys absent from older states (others: None)

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in self.STATE}
        state["anneal"] = self.anneal.state_dict() if self.anneal is not None else None
        state["watch"] = self.watch.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for k in self.STATE:
            setattr(self, k, state.get(k, self.OLDER.get(k)))
        # older states kept only the moving average (avg, n_avg): the noise and the start begin again
        watch = state.get("watch", {"avg": state.get("avg", 0.0), "dev": 0.0, "n": state.get("n_avg", 0),
                                    "start": None})  # fmt: skip
        self.watch.load_state_dict(watch)
        self.expected_lr = None  # the optimizer's state may load after this: the next step takes its lr
        if state["anneal"] is not None:
            if self.anneal is None:
                self.anneal = AutoAnneal(self.optimizer, every=self.every, threshold=self.threshold,
                                         factor=self.factor)  # fmt: skip
            self.anneal.load_state_dict(state["anneal"])
