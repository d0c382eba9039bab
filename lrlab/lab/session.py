"""What the browser lab holds between clicks: one live Sheet per (sheet, mode), the data they share, and a row
cursor for Step. Every action either succeeds or raises LabError and changes nothing the page shows; view()
is everything the page draws, as JSON-ready values (a non-finite number becomes the text "inf" or "NaN").

Step walks the displayed epoch one row at a time: the highlighted row's cells are the engine's for that row,
and stepping past the last row is exactly one Run of one epoch.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from lrlab.lab.data import WORKBOOK_ROWS, parse_csv, random_rows
from lrlab.lab.engine import DEFAULTS, SHEETS, TEXTBOOK_ONLY, WORKBOOK_SHEETS, LabError, Sheet, check_beta, check_lr
from lrlab.lab.notes import NOTES
from lrlab.lab.race import least_squares, race

MAX_RUN_EPOCHS = 10_000
MAX_UPLOAD_ROWS = 10_000
# What one click may compute, in row updates (epochs x rows, x sheets for a race): at most about 1.5 s here
# (RAdam, the slowest sheet: 10,000 epochs of the 29 rows), so no request holds the lab for minutes.
MAX_WORK = 300_000
MAX_HISTORY = 20_000  # epochs a sheet keeps between Resets (all of them downloadable as CSV)
HISTORY_WINDOW = 1_000  # epochs of history (and path) the page gets with every view
SURFACE_POINTS = 61

# Each displayed cell and its formula, as the sheet computes it ("'" marks the previous row's value).
COMMON_FORMULAS = {
    "x": "data", "y": "data", "b": "previous row's new b", "a": "previous row's new a", "pred": "b + a·x",
    "err2": "(y − pred)²", "db": "2·(pred − y)", "da": "db·x",
    "fd_db": "(((b + 0.01) + a·x − y)² − err²) / 0.01", "fd_da": "(((a + 0.01)·x + b − y)² − err²) / 0.01",
}  # fmt: skip
EMA_FORMULAS = {
    "mom_b": "β1·mom_b' + (1 − β1)·db", "mom_a": "β1·mom_a' + (1 − β1)·da",
    "sq_b": "β2·sq_b' + (1 − β2)·db²", "sq_a": "β2·sq_a' + (1 − β2)·da²",
    "slow_b": "0.9999·slow_b' + 0.0001·db", "slow_a": "0.9999·slow_a' + 0.0001·da",
    "z_b": "z_b' − lr·db / (√v̂ + ε)", "z_a": "z_a' − lr·da / (√v̂ + ε)",
}  # fmt: skip
UPDATE_FORMULAS = {
    ("basic", False): "b − lr·db",
    ("momentum", False): "b − lr·mom_b",
    ("rmsprop", False): "b − lr·db / √sq_b' (the previous row's average; no ε)",
    ("rmsprop", True): "b − lr·db / (√sq_b + ε)",
    ("adam", False): "b − lr·mom_b / √sq_b (no ε, no bias correction)",
    ("adam", True): "b − lr·m̂ / (√v̂ + ε), m̂ = mom_b / (1 − β1ᵗ), v̂ = sq_b / (1 − β2ᵗ)",
    ("nadam", True): "b − lr·[(1 − μₜ)/(1 − Πμ)·db + μₜ₊₁/(1 − Πμ·μₜ₊₁)·mom_b] / (√v̂ + ε)",
    ("radam", True): "if ρₜ > 5: b − lr·rₜ·m̂ / (√v̂ + ε), else b − lr·m̂ (momentum SGD)",
    ("lion", True): "b − lr·sign(β1·mom_b' + (1 − β1)·db)",
    ("ademamix", True): "b − lr·(m̂ + 5·slow_b) / (√v̂ + ε)",
    ("muon", True): "b − lr·0.7·u_b/|u|, u = db + β1·(mom_b − db) (the row (b, a) orthogonalized: normalized)",
    ("schedulefree_adamw", True): "lerp(b, z_b, 1/t) + lr·(β1(1 − 1/t) − 1)·db / (√v̂ + ε)",
}


def formulas(name: str, textbook: bool) -> dict[str, str]:
    """The formula of every cell a row of this sheet shows."""
    base = "adam" if name == "adam_ann" else name
    update = UPDATE_FORMULAS.get((base, textbook), UPDATE_FORMULAS.get((base, False), ""))
    for_a = update
    for b_name, a_name in (("mom_b", "mom_a"), ("sq_b", "sq_a"), ("slow_b", "slow_a"), ("z_b", "z_a"), ("u_b", "u_a"),
                           ("db", "da"), ("b − lr", "a − lr"), ("lerp(b,", "lerp(a,")):  # fmt: skip
        for_a = for_a.replace(b_name, a_name)
    out = {**COMMON_FORMULAS, **EMA_FORMULAS, "new_b": update, "new_a": for_a}
    if name == "lion":
        out["mom_b"], out["mom_a"] = "β2·mom_b' + (1 − β2)·db", "β2·mom_a' + (1 − β2)·da"
    return out


def jsonable(value):
    """Numbers as JSON can carry them: inf and NaN become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def check_work(what: str, epochs: int, rows: int, sheets: int = 1) -> None:
    """Refuse a click that computes more than MAX_WORK row updates, naming the most epochs it may ask for.

    Raises:
        LabError: epochs x rows x sheets is over MAX_WORK."""
    work = epochs * rows * sheets
    if work > MAX_WORK:
        most = max(1, MAX_WORK // (rows * sheets))
        per = f" x {sheets} sheets" if sheets > 1 else ""
        raise LabError(
            f"{what}: {epochs:,} epochs x {rows:,} rows{per} is {work:,} row updates; one click computes at most "
            f"{MAX_WORK:,} (at most {most:,} epochs on these rows)"
        )


class LabSession:
    """The browser lab's state. Args: sheet and textbook to start on; data rows (default: the workbook's 29).

    Raises:
        LabError: an unknown sheet, bad data, or bad settings (from the engine)."""

    def __init__(self, sheet: str = "basic", textbook: bool = False, data=None) -> None:
        self.data = [(float(x), float(y)) for x, y in (data if data is not None else WORKBOOK_ROWS)]
        self.data_source = "workbook" if data is None else "given"
        self.data_version = 0
        self.sheets: dict[tuple[str, bool], Sheet] = {}
        self.cursors: dict[tuple[str, bool], int] = {}
        self.race_result: dict | None = None
        self.races = 0
        self.select(sheet, textbook)

    # -- the current sheet --------------------------------------------------------------------------
    @property
    def sheet(self) -> Sheet:
        return self.sheets[self.key]

    @property
    def cursor(self) -> int:
        return self.cursors[self.key]

    def select(self, name: str, textbook: bool | None = None) -> None:
        """Show another sheet (each keeps its state while others are shown, as a workbook's sheets do)."""
        if name not in SHEETS:
            raise LabError(f"unknown sheet {name!r}; choose one of {', '.join(SHEETS)}")
        textbook = name in TEXTBOOK_ONLY if textbook is None else textbook
        if name in TEXTBOOK_ONLY and not textbook:
            raise LabError(f"{name} has no workbook sheet (the lesson's workbook stops at Adam): use textbook mode")
        key = (name, bool(textbook))
        if key not in self.sheets:
            self.sheets[key] = Sheet(name, data=self.data, textbook=bool(textbook))
            self.cursors[key] = 0
        self.key = key

    def reset(self) -> None:
        self.sheet.reset()
        self.cursors[self.key] = 0

    def run(self, epochs: int = 5) -> None:
        """The Run button. An overflow keeps the last finite state, moves the cursor home, and raises."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_RUN_EPOCHS:
            raise LabError(f"epochs must be an integer from 1 to {MAX_RUN_EPOCHS}, got {epochs!r}")
        check_work("Run", epochs, len(self.data))
        if self.sheet.epoch + epochs > MAX_HISTORY:
            raise LabError(
                f"the sheet keeps at most {MAX_HISTORY:,} epochs and has run {self.sheet.epoch:,}: "
                f"Reset to start again (download the history first)"
            )
        self.cursors[self.key] = 0
        self.sheet.run(epochs)

    def step(self) -> None:
        """Highlight the next row; past the last row, Run one epoch and start again at row 1."""
        if self.cursor + 1 < len(self.data):
            self.cursors[self.key] += 1
        else:
            self.run(1)

    def set_hypers(self, lr: float | None = None, beta1: float | None = None, beta2: float | None = None) -> None:
        """Type into the lr and beta cells: all values are checked before any is applied."""
        given = {"beta1": beta1, "beta2": beta2}
        for name, value in given.items():
            if value is not None and name not in DEFAULTS[self.sheet.name]:
                raise LabError(f"the {self.sheet.name} sheet has no {name}")
        lr = check_lr(lr) if lr is not None else None
        checked = {name: check_beta(name, value) for name, value in given.items() if value is not None}
        if lr is not None:
            self.sheet.lr = lr
        for name, value in checked.items():
            setattr(self.sheet, name, value)

    # -- data -----------------------------------------------------------------------------------------
    def set_data(self, rows: list[tuple[float, float]], source: str) -> None:
        """New rows for every sheet; each starts again from Reset (checked on one sheet before any change)."""
        if len(rows) > MAX_UPLOAD_ROWS:
            raise LabError(f"{source}: {len(rows):,} rows; the lab takes at most {MAX_UPLOAD_ROWS:,}")
        least_squares(rows)  # the same x on every row: no best line to race towards
        Sheet(self.sheet.name, data=rows, textbook=self.sheet.textbook)
        self.data, self.data_source = rows, source
        self.data_version += 1
        self.sheets, self.cursors, self.race_result = {}, {}, None
        self.select(*self.key)

    def use_workbook_rows(self) -> None:
        self.set_data([(float(x), float(y)) for x, y in WORKBOOK_ROWS], "workbook")

    def draw(self, seed: int | None = None, n: int = 29) -> None:
        """A fresh draw of the data sheet: x in 1..100, y = 2x + 30."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise LabError(f"the seed must be an integer, got {seed!r}")
        try:
            rows = random_rows(n, seed=seed)
        except ValueError as e:
            raise LabError(str(e)) from None
        self.set_data(rows, f"random draw (seed {seed})")

    def upload(self, text: str, filename: str = "upload.csv") -> None:
        """Rows from an uploaded CSV of x,y; a bad file raises the lab's error and keeps the current data."""
        try:
            rows = parse_csv(text.splitlines(), filename)
        except ValueError as e:
            raise LabError(str(e)) from None
        self.set_data(rows, filename)

    # -- race and export ------------------------------------------------------------------------------
    def race(self, epochs: int = 50) -> None:
        """Every sheet from Reset on the current data, in the current mode (those since Adam: textbook)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise LabError(f"the race's epochs must be an integer >= 1, got {epochs!r}")
        check_work("the race", epochs, len(self.data), sheets=len(SHEETS))
        results = race(epochs=epochs, data=self.data, textbook=self.key[1])
        self.races += 1  # the page redraws the race only when this changes
        self.race_result = {"id": self.races, "epochs": epochs, "results": results}

    def export(self) -> bytes:
        """The live-formula workbook (.xlsx) of every sheet on the current data, with the current sheet's lr
        and betas typed in and as many epochs as it has run (1 to 100)."""
        from lrlab.lab.export import MAX_EPOCHS, export_workbook

        sheet = self.sheet
        hypers = {sheet.name: {k: getattr(sheet, k) for k in DEFAULTS[sheet.name]}}
        epochs = min(max(sheet.epoch, 1), MAX_EPOCHS)
        with tempfile.TemporaryDirectory(prefix="lrlab-export-") as folder:
            path = Path(folder) / "lab.xlsx"
            export_workbook(path, epochs=epochs, data=self.data, hypers=hypers)
            return path.read_bytes()

    # -- what the page draws --------------------------------------------------------------------------
    def view(self) -> dict:
        """The current sheet, its history, the displayed rows with the cursor, the path, and the race."""
        sheet, (name, textbook) = self.sheet, self.key
        try:
            rows = sheet.rows
            rmse = sheet.rmse
        except (OverflowError, ZeroDivisionError, LabError):  # a header at the edge of overflow: nothing to show
            rows, rmse = [], math.nan
        history = sheet.history[-HISTORY_WINDOW:]  # the rest is at /api/history.csv
        path = [(1.0, 1.0)] if len(history) == len(sheet.history) else []
        path += [(h["b"], h["a"]) for h in history] + [(r["new_b"], r["new_a"]) for r in rows[: self.cursor]]
        target_a, target_b = least_squares(self.data)
        view = {
            "sheets": [{"name": n, "workbook": n in WORKBOOK_SHEETS} for n in SHEETS],
            "sheet": name, "textbook": textbook, "note": NOTES[name],
            "hypers": {k: getattr(sheet, k) for k in DEFAULTS[name]},
            "epoch": sheet.epoch, "a": sheet.a, "b": sheet.b, "rmse": rmse,
            "error_label": "rmse" if textbook else "sqrt(sum err^2)",
            "state": {k: list(v) if isinstance(v, tuple) else v for k, v in sheet.state.items()},
            "history": history, "history_epochs": len(sheet.history), "cursor": self.cursor, "rows": rows,
            "formulas": formulas(name, textbook), "path": path, "target": [target_a, target_b],
            "data": {"source": self.data_source, "rows": len(self.data), "version": self.data_version},
            "race": self.race_result,
        }  # fmt: skip
        return jsonable(view)

    def surface(self) -> dict:
        """log10 of the summed squared error over a (b, a) grid that holds the start (1, 1) and the best line."""
        import numpy as np

        target_a, target_b = least_squares(self.data)
        b_lo, b_hi = sorted((1.0, target_b))
        a_lo, a_hi = sorted((1.0, target_a))
        b_pad, a_pad = 0.3 * (b_hi - b_lo) + 1.0, 0.6 * max(a_hi - a_lo, 0.5)
        bs = np.linspace(b_lo - b_pad, b_hi + b_pad, SURFACE_POINTS)
        as_ = np.linspace(a_lo - a_pad, a_hi + a_pad, SURFACE_POINTS)
        grid_b, grid_a = np.meshgrid(bs, as_)
        with np.errstate(over="ignore", invalid="ignore"):  # data that overflows: inf cells, sent as "inf"
            sse = sum((y - (grid_a * x + grid_b)) ** 2 for x, y in self.data)
            z = np.log10(sse + 1e-12)
        return jsonable({"b": bs.tolist(), "a": as_.tolist(), "z": z.tolist(), "version": self.data_version})
