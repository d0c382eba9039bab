"""The lesson's spreadsheet as a program: one Sheet per optimizer, with the workbook's Reset and Run.

Workbook mode reproduces graddesc.xlsm exactly, quirks included (docs/graddesc-spec.md describes it cell by cell):
- Run carries the weights *after 28 updates* (the last row's inputs) but the optimizer state after 29;
- the pasted "rmse" is sqrt(SUM(err^2)), not a mean, of the epoch the sheet displays after the carry;
- RMSprop divides by the root of the *previous* row's squared average; neither it nor Adam has an eps
  or bias correction;
- Reset warms the state up: momentum 1 epoch, RMSprop 2 epochs from 10000, Adam 2 rounds from (0, 10000).
`textbook=True` is what a reader expects instead: all 29 updates carried, true root-mean-square error,
RMSprop and Adam with eps (1e-8) and Adam with bias correction, state starting at zero, no warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from lrlab.lab import newer
from lrlab.lab.data import WORKBOOK_ROWS, load_csv, random_rows
from lrlab.optim.classic import adam_rule, momentum_rule, rmsprop_rule, sgd_rule
from lrlab.optim.core import check_lr as optim_check_lr
from lrlab.tuning.anneal_rule import anneal_step

WORKBOOK_SHEETS = ("basic", "momentum", "rmsprop", "adam", "adam_ann")  # the lesson's graddesc workbook
TEXTBOOK_ONLY = tuple(newer.ROWS)  # optimizers since Adam: no workbook, so textbook mode only
SHEETS = WORKBOOK_SHEETS + TEXTBOOK_ONLY
# The workbook's hyperparameters after Reset: lr, beta1 (momentum EMA), beta2 (squared-gradient EMA).
DEFAULTS = {
    "basic": {"lr": 1e-4},
    "momentum": {"lr": 1e-4, "beta1": 0.9},
    "rmsprop": {"lr": 0.02, "beta2": 0.9},
    "adam": {"lr": 1.0, "beta1": 0.9, "beta2": 0.9},
    "adam_ann": {"lr": 1.0, "beta1": 0.9, "beta2": 0.95},
    **newer.DEFAULTS,
}
# Reset's warm-up as the macros do it: each pass's input state, per part (momentum, squares), comes from
# "init" (0 for momentum, 10000 for squares), or ("out", j): the state after pass j's last row.
# Automatic-mode macros (adam) recalculate after each single copy; manual-mode ones (adam_ann) copy both
# parts from one calculation. "final" is the header state Reset leaves; weights stay at 1 throughout.
WARMUPS: dict[str, dict] = {
    "basic": {"passes": [], "final": ("init", "init")},
    "momentum": {"passes": [("init", "init")], "final": (("out", 0), "init")},
    "rmsprop": {"passes": [("init", "init"), ("init", ("out", 0))], "final": ("init", ("out", 1))},
    "adam": {
        "passes": [("init", "init"), ("init", ("out", 0)), (("out", 1), ("out", 0)), (("out", 1), ("out", 2))],
        "final": (("out", 3), ("out", 2)),
    },
    # adam_ann's prev_grad2 comes from the state that pass 1 reads (the first warm-up's output)
    "adam_ann": {"passes": [("init", "init"), (("out", 0), ("out", 0))], "final": (("out", 1), ("out", 1))},
}
FD_STEP = 0.01  # the forward-difference bump of the basic sheet
EPS = 1e-8  # textbook mode only


class LabError(ValueError):
    """A run could not continue (bad input or overflow); the sheet keeps its last finite state."""


def check_lr(lr: float) -> float:
    """optim.check_lr, raising the lab's own error in the spreadsheet's words."""
    try:
        return optim_check_lr(lr)
    except ValueError:
        raise LabError(f"the learning rate must be a finite number > 0, got {lr!r}") from None


def check_beta(name: str, value: float) -> float:
    """A moving-average weight typed into a beta cell: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise LabError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


class Sheet:
    """One optimizer sheet: header cells (a, b, lr, state), the 29 displayed rows, Reset and Run."""

    def __init__(
        self,
        name: str,
        data: str | Path | Iterable[tuple[float, float]] | None = None,
        textbook: bool | None = None,
        lr: float | None = None,
    ) -> None:
        if name not in SHEETS:
            raise LabError(f"unknown sheet {name!r}; choose one of {', '.join(SHEETS)}")
        if textbook is None:
            textbook = name in TEXTBOOK_ONLY
        if not isinstance(textbook, bool):
            raise LabError(f"textbook must be True or False, got {textbook!r}")
        if name in TEXTBOOK_ONLY and not textbook:
            raise LabError(f"{name} has no workbook sheet (the lesson's workbook stops at Adam): use textbook mode")
        self.name, self.textbook = name, textbook
        if data is None:
            rows = [(float(x), float(y)) for x, y in WORKBOOK_ROWS]
        elif isinstance(data, (str, Path)):
            rows = load_csv(data)
        else:
            rows = [(float(x), float(y)) for x, y in data]
        if not rows:
            raise LabError("the sheet needs at least one data row")
        if len(rows) < 2 and not textbook:
            raise LabError(
                "the workbook carries each row's update to the next row and drops the last one's, so a single "
                "data row never moves a and b: give at least 2 rows, or use textbook mode"
            )
        self.data: list[tuple[float, float]] = rows
        hp = DEFAULTS[name]
        self.beta1, self.beta2 = hp.get("beta1", 0.0), hp.get("beta2", 0.0)
        self.has_mom = name in ("momentum", "adam", "adam_ann") or name in newer.HAS_MOM
        self.has_sq = name in ("rmsprop", "adam", "adam_ann") or name in newer.HAS_SQ
        rmsprop_row = self._row_rmsprop if textbook else self._row_rmsprop_sheet
        self._update = {"basic": self._row_basic, "momentum": self._row_momentum, "rmsprop": rmsprop_row}.get(
            name, self._row_adam
        )
        if name in TEXTBOOK_ONLY:
            row_rule = newer.ROWS[name]

            def since_adam_row(x, y, b, a, s, step, lr):
                return row_rule(x, y, b, a, s, step, lr, self.beta1, self.beta2)

            self._update = since_adam_row
        self._lr = check_lr(hp["lr"] if lr is None else lr)
        self.reset()
        if lr is not None:
            self.lr = lr

    @classmethod
    def random(
        cls, name: str, n: int = 29, a: float = 2.0, b: float = 30.0, seed: int | None = None, **kwargs
    ) -> Sheet:
        """A sheet on a fresh draw of the data sheet (x in 1..100, y = b + a*x)."""
        return cls(name, random_rows(n, a, b, seed), **kwargs)

    # -- header cells ---------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_lr(value)

    @property
    def beta1(self) -> float:
        return self._beta1

    @beta1.setter
    def beta1(self, value: float) -> None:
        self._beta1, self._adam_hp = check_beta("beta1", value), {"lr": None}

    @property
    def beta2(self) -> float:
        return self._beta2

    @beta2.setter
    def beta2(self, value: float) -> None:
        self._beta2, self._adam_hp = check_beta("beta2", value), {"lr": None}

    @property
    def state(self) -> dict[str, tuple[float, ...] | int]:
        """The optimizer state as the sheet holds it: {"mom": (b, a), "sq": (b, a)} where it has them."""
        out: dict[str, tuple[float, ...] | int] = {}
        if self.has_mom:
            out["mom"] = (self._s[0], self._s[1])
        if self.has_sq:
            out["sq"] = (self._s[2], self._s[3])
        for i, key in enumerate(newer.EXTRA_STATE.get(self.name, ())):
            out.setdefault(key[:-2], ())
            out[key[:-2]] += (self._s[4 + i],)
        if self.textbook and (self.name in ("adam", "adam_ann") or self.name in newer.HAS_STEP):
            out["step"] = self._step
        return out

    # -- one pass down the rows ---------------------------------------------------------------------
    def _row_basic(self, x, y, b, a, s, step, lr):
        """One row: gradients of (y - (a*x + b))^2, then the rule. Returns (err2, b', a', state', step')."""
        pred = b + a * x
        db = 2 * (pred - y)
        ((b2,), (a2,)) = sgd_rule(b, db, lr=lr), sgd_rule(a, db * x, lr=lr)
        return (y - pred) * (y - pred), b2, a2, s, step

    def _row_momentum(self, x, y, b, a, s, step, lr):
        pred = b + a * x
        db = 2 * (pred - y)
        b2, mb = momentum_rule(b, db, s[0], lr=lr, momentum=self.beta1)
        a2, ma = momentum_rule(a, db * x, s[1], lr=lr, momentum=self.beta1)
        return (y - pred) * (y - pred), b2, a2, (mb, ma, 0.0, 0.0), step

    def _row_rmsprop_sheet(self, x, y, b, a, s, step, lr):
        """The workbook's RMSprop: divide by the root of the *previous* row's squared average, no eps."""
        pred = b + a * x
        db = 2 * (pred - y)
        da = db * x
        sb, sa, beta = s[2], s[3], self.beta2
        b2, a2 = b - db * lr / math.sqrt(sb), a - da * lr / math.sqrt(sa)
        s2 = (0.0, 0.0, sb * beta + (1 - beta) * (db * db), sa * beta + (1 - beta) * (da * da))
        return (y - pred) * (y - pred), b2, a2, s2, step

    def _row_rmsprop(self, x, y, b, a, s, step, lr):
        pred = b + a * x
        db = 2 * (pred - y)
        b2, sb = rmsprop_rule(b, db, s[2], lr=lr, alpha=self.beta2, eps=EPS)
        a2, sa = rmsprop_rule(a, db * x, s[3], lr=lr, alpha=self.beta2, eps=EPS)
        return (y - pred) * (y - pred), b2, a2, (0.0, 0.0, sb, sa), step

    def _row_adam(self, x, y, b, a, s, step, lr):
        """Adam; the workbook's has no eps and no bias correction, the textbook's has both."""
        pred = b + a * x
        db = 2 * (pred - y)
        step += 1
        hp = self._adam_hp
        if hp["lr"] != lr:  # built once per lr, not per row
            eps, corrected = (EPS, True) if self.textbook else (0.0, False)
            hp = self._adam_hp = dict(lr=lr, beta1=self.beta1, beta2=self.beta2, eps=eps, bias_correction=corrected)
        b2, mb, sb = adam_rule(b, db, s[0], s[2], step, **hp)
        a2, ma, sa = adam_rule(a, db * x, s[1], s[3], step, **hp)
        return (y - pred) * (y - pred), b2, a2, (mb, ma, sb, sa), step

    def _pass(self, b: float, a: float, s: tuple, step: int, lr: float):
        """A whole epoch from a header: (sse, last inputs, last outputs, state after the last row, step)."""
        update = self._update
        sse = 0.0
        b_in = a_in = 0.0
        try:
            for x, y in self.data:
                b_in, a_in = b, a
                err2, b, a, s, step = update(x, y, b, a, s, step, lr)
                sse += err2
        except (ZeroDivisionError, OverflowError):
            return math.nan, (b_in, a_in), (math.nan, math.nan), s, step
        return sse, (b_in, a_in), (b, a), s, step

    def _carry(self, done: tuple, lr: float, epoch: int, header: tuple) -> tuple:
        """Run's copy-paste from one finished pass, checked finite (else name the epoch and row)."""
        sse, (b_in, a_in), (b_out, a_out), s2, step2 = done
        nb, na = (b_out, a_out) if self.textbook else (b_in, a_in)
        if not all(math.isfinite(v) for v in (sse, nb, na, *s2)):
            raise LabError(self._overflow_message(*header, lr, epoch))
        return nb, na, s2, step2

    def _first_bad_row(self, b, a, s, step, lr) -> int:
        """The 1-based data row at which a pass from this header stops being finite."""
        for row, (x, y) in enumerate(self.data, start=1):
            try:
                err2, b, a, s, step = self._update(x, y, b, a, s, step, lr)
            except (ZeroDivisionError, OverflowError):
                return row
            if not all(math.isfinite(v) for v in (err2, b, a, *s)):
                return row
        return len(self.data)

    def _overflow_message(self, b, a, s, step, lr, epoch) -> str:
        row = self._first_bad_row(b, a, s, step, lr)
        x, y = self.data[row - 1]
        return (
            f"{self.name}: the run overflowed to inf/NaN at epoch {epoch}, data row {row} (x={x:g}, y={y:g}) "
            f"with lr {lr:g}; the sheet keeps its last finite state (try a smaller lr)"
        )

    def _rmse(self, b, a, s, step, lr) -> float:
        sse = self._pass(b, a, s, step, lr)[0]
        return math.sqrt(sse / len(self.data)) if self.textbook else math.sqrt(sse)

    # -- the buttons ----------------------------------------------------------------------------------
    def reset(self) -> Sheet:
        """The workbook's Reset: a = b = 1, the sheet's lr, and its state warm-up; history cleared."""
        self.a = self.b = 1.0
        self._step = 0
        self.history: list[dict] = []
        self.epoch = 0
        self.best_measure = math.inf  # adam_ann's prev_grad2
        if self.name != "rmsprop":  # rmsprop's Reset leaves lr alone
            self._lr = DEFAULTS[self.name]["lr"]
        self.warmup_states = []
        if self.textbook:
            self._s = newer.INITIAL_STATE.get(self.name, (0.0, 0.0, 0.0, 0.0))
        else:
            self._s = self._warm_up((0.0, 0.0, 10000.0, 10000.0))
        return self

    def _warm_up(self, init: tuple) -> tuple:
        """Reset's state warm-up, pass by pass as the macros recalculate (see WARMUPS)."""
        recipe, lr = WARMUPS[self.name], self._lr
        outs: list[tuple] = []
        self.warmup_states: list[tuple] = []  # the state each pass read (the export writes them as blocks)

        def pick(sources: tuple) -> tuple:
            mom, sq = (init if src == "init" else outs[src[1]] for src in sources)
            return (mom[0], mom[1], sq[2], sq[3])

        for sources in recipe["passes"]:
            state = pick(sources)
            self.warmup_states.append(state)
            outs.append(self._pass(1.0, 1.0, state, 0, lr)[3])
        if self.name == "adam_ann":
            seen = self.warmup_states[1]
            self.best_measure = math.sqrt(seen[2]) + math.sqrt(seen[3])
        return pick(recipe["final"])

    def run(self, epochs: int = 5) -> Sheet:
        """The Run button (5 epochs), or any number: carry weights and state, paste the rmse, anneal."""
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise LabError(f"epochs must be an integer >= 1, got {epochs!r}")
        b, a, s, step, lr = self.b, self.a, self._s, self._step, self._lr
        done = self._pass(b, a, s, step, lr)  # the epoch the sheet displays now
        for _ in range(epochs):
            epoch = self.epoch + 1
            b, a, s, step = self._carry(done, lr, epoch, (b, a, s, step))
            record = {"epoch": epoch, "b": b, "a": a, "lr": lr}
            if self.name == "adam_ann":
                measure = math.sqrt(s[2]) + math.sqrt(s[3])  # avg_grad2 of the state just carried in
                decision = anneal_step(measure, self.best_measure, lr)
                record.update(gradrat=decision.ratio, next_lr=decision.new_lr)
                self.best_measure, lr = decision.best, decision.new_lr
            done = self._pass(b, a, s, step, lr)  # the new display: its sse is the pasted rmse, and the next carry
            record["rmse"] = math.sqrt(done[0] / len(self.data)) if self.textbook else math.sqrt(done[0])
            self.b, self.a, self._s, self._step, self._lr, self.epoch = b, a, s, step, lr, epoch
            self.history.append(record)
        return self

    # -- what the sheet displays --------------------------------------------------------------------
    @property
    def rows(self) -> list[dict]:
        """The epoch the sheet shows for the current header: one dict per data row, spreadsheet columns."""
        return self.display(self.b, self.a, self._s, self._step, self._lr)

    def display(self, b: float, a: float, s: tuple, step: int, lr: float) -> list[dict]:
        """The rows of one pass from any header (b, a, state, step, lr).

        Raises:
            LabError: a cell overflows (data too large for the sheet's arithmetic), naming the row."""
        out = []
        for number, (x, y) in enumerate(self.data, start=1):
            try:
                row, (b, a, s, step) = self._display_row(x, y, b, a, s, step, lr)
            except (ZeroDivisionError, OverflowError):
                raise LabError(
                    f"{self.name}: the displayed epoch overflows at data row {number} (x={x:g}, y={y:g}) with lr "
                    f"{lr:g}: values this large cannot be shown (scale the data down, or try a smaller lr)"
                ) from None
            out.append(row)
        return out

    def _display_row(self, x: float, y: float, b: float, a: float, s: tuple, step: int, lr: float):
        """One displayed row's cells, and the header the next row reads."""
        err2, b2, a2, s2, step = self._update(x, y, b, a, s, step, lr)
        pred = b + a * x
        row = {"x": x, "y": y, "b": b, "a": a, "pred": pred, "err2": err2, "db": 2 * (pred - y)}
        row["da"] = row["db"] * x
        if self.name == "basic":  # forward differences: the squared error with b, then a, bumped
            row["err_b_bumped"] = (((b + FD_STEP) + x * a) - y) ** 2
            row["err_a_bumped"] = (((a + FD_STEP) * x + b) - y) ** 2
            row["fd_db"] = (row["err_b_bumped"] - err2) / FD_STEP
            row["fd_da"] = (row["err_a_bumped"] - err2) / FD_STEP
        if self.has_mom:
            row["mom_b"], row["mom_a"] = s2[0], s2[1]
        if self.has_sq:
            row["sq_b"], row["sq_a"] = s2[2], s2[3]
        for i, key in enumerate(newer.EXTRA_STATE.get(self.name, ())):
            row[key] = s2[4 + i]
        row["new_b"], row["new_a"] = b2, a2
        return row, (b2, a2, s2, step)

    @property
    def rmse(self) -> float:
        """The displayed epoch's error: sqrt(SUM(err^2)) in workbook mode, a true RMSE in textbook mode."""
        return self._rmse(self.b, self.a, self._s, self._step, self._lr)

    def widget(self, epochs: int = 5):
        """Reset / Run buttons, an lr box, the RMSE chart and the rows, in a notebook (needs ipywidgets)."""
        from lrlab.lab.widget import SheetWidget

        return SheetWidget(self, epochs)

    def __repr__(self) -> str:
        mode = "textbook" if self.textbook else "workbook"
        return f"Sheet({self.name!r}, {mode}, epoch={self.epoch}, a={self.a:.6g}, b={self.b:.6g}, lr={self._lr:g})"
