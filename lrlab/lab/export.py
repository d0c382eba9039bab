"""Write the lab as an .xlsx whose formulas recompute: the workbook's cell formulas, epochs unrolled as blocks.

Each optimizer sheet holds Reset's warm-up passes and then N+1 displayed epochs, each a block of one
state row (the carried-in b, a and optimizer state, as the macros paste them), the data rows with the
original formulas, and a footer (rmse; on adam_ann the annealer's measure, best and ratio, and the next
block's lr as an IF formula). Editing the lr or a beta in the header recomputes every epoch. Every formula
cell's value is also computed by the engine, so a spreadsheet program's results can be checked against it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from openpyxl import Workbook
from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font

from lrlab.files import atomic_write
from lrlab.lab.engine import DEFAULTS, SHEETS, WARMUPS, WORKBOOK_SHEETS, Sheet

# Data-row formulas per sheet: column -> (engine row key, formula). {r}: this row, {p}: the previous row
# (the block's state row for the first data row), {lr}: the lr cell this block uses.
COMMON = {"A": ("x", "=data!A{d}"), "B": ("y", "=data!B{d}")}
FORMULAS: dict[str, dict[str, tuple[str, str]]] = {
    "basic": {
        "E": ("pred", "=C{r}+D{r}*A{r}"),
        "F": ("err2", "=(B{r}-E{r})^2"),
        "G": ("err_b_bumped", "=(((C{r}+0.01)+A{r}*D{r})-B{r})^2"),
        "H": ("fd_db", "=(G{r}-F{r})/0.01"),
        "I": ("err_a_bumped", "=(((D{r}+0.01)*A{r}+C{r})-B{r})^2"),
        "J": ("fd_da", "=(I{r}-F{r})/0.01"),
        "K": ("db", "=2*(E{r}-B{r})"),
        "L": ("da", "=K{r}*A{r}"),
        "M": ("new_a", "=D{r}-L{r}*{lr}"),
        "N": ("new_b", "=C{r}-K{r}*{lr}"),
    },
    "momentum": {
        "E": ("pred", "=D{r}*A{r}+C{r}"),
        "F": ("db", "=2*(D{r}*A{r}+C{r}-B{r})"),
        "G": ("da", "=F{r}*A{r}"),
        "J": ("mom_b", "=J{p}*$J$1+$K$1*F{r}"),
        "K": ("mom_a", "=K{p}*$J$1+$K$1*G{r}"),
        "H": ("new_b", "=C{r}-J{r}*{lr}"),
        "I": ("new_a", "=D{r}-K{r}*{lr}"),
        "L": ("err2", "=(B{r}-E{r})^2"),
    },
    "rmsprop": {
        "E": ("pred", "=D{r}*A{r}+C{r}"),
        "F": ("db", "=2*(D{r}*A{r}+C{r}-B{r})"),
        "G": ("da", "=F{r}*A{r}"),
        "J": ("sq_b", "=J{p}*$J$1+$K$1*F{r}^2"),
        "K": ("sq_a", "=K{p}*$J$1+$K$1*G{r}^2"),
        "H": ("new_b", "=C{r}-F{r}*{lr}/SQRT(J{p})"),
        "I": ("new_a", "=D{r}-G{r}*{lr}/SQRT(K{p})"),
        "L": ("err2", "=(B{r}-E{r})^2"),
    },
    "adam": {
        "E": ("pred", "=D{r}*A{r}+C{r}"),
        "F": ("db", "=2*(D{r}*A{r}+C{r}-B{r})"),
        "G": ("da", "=F{r}*A{r}"),
        "J": ("mom_b", "=J{p}*$J$1+$K$1*F{r}"),
        "K": ("mom_a", "=K{p}*$J$1+$K$1*G{r}"),
        "L": ("sq_b", "=L{p}*$L$1+$M$1*F{r}^2"),
        "M": ("sq_a", "=M{p}*$L$1+$M$1*G{r}^2"),
        "H": ("new_b", "=C{r}-J{r}*{lr}/SQRT(L{r})"),
        "I": ("new_a", "=D{r}-K{r}*{lr}/SQRT(M{r})"),
        "N": ("err2", "=(B{r}-E{r})^2"),
    },
}
FORMULAS["adam_ann"] = FORMULAS["adam"]
HEADERS = {
    "basic": ["x", "y", "intercept", "slope", "y_pred", "err^2", "errb1", "est de/db", "erra1", "est de/da",
              "de/db", "de/da", "new a", "new b"],
    "momentum": ["x", "y", "intercept", "slope", "y_pred", "de/db", "de/da", "new b", "new a", "mom b", "mom a",
                 "err^2"],
    "rmsprop": ["x", "y", "intercept", "slope", "y_pred", "de/db", "de/da", "new b", "new a", "sq b", "sq a",
                "err^2"],
    "adam": ["x", "y", "intercept", "slope", "y_pred", "de/db", "de/da", "new b", "new a", "mom b", "mom a",
             "sq b", "sq a", "err^2"],
}  # fmt: skip
HEADERS["adam_ann"] = HEADERS["adam"]
# Where each sheet keeps its optimizer state (momentum b/a, squares b/a) on the state and data rows.
STATE_COLS = {
    "basic": (None, None, None, None),
    "momentum": ("J", "K", None, None),
    "rmsprop": (None, None, "J", "K"),
    "adam": ("J", "K", "L", "M"),
    "adam_ann": ("J", "K", "L", "M"),
}
INIT = (0.0, 0.0, 10000.0, 10000.0)  # what Reset writes into momtarget / gradtarget
OVERVIEW = [
    "lrlab's optimizer lab, exported: the lesson's graddesc workbook with live formulas.",
    "Goal: fit y = a*x + b (true a = 2, b = 30) by online SGD (batch size 1) from a = b = 1.",
    "data: the 29 (x, y) rows every sheet reads.",
    "basic: plain SGD, with forward-difference derivatives (step 0.01) beside the analytic ones.",
    "momentum: a damped moving average of gradients (beta * m + (1 - beta) * g) replaces the gradient.",
    "rmsprop: the gradient divided by the root of a moving average of its square (the previous row's).",
    "adam: rmsprop + momentum (no eps, no bias correction, as in the original).",
    "adam_ann: adam whose lr is divided by 4 when the gradient measure rises above twice its best.",
    "nadam ... schedulefree_adamw: optimizers since Adam (lrlab's textbook layout, its own header row 3).",
    "Each sheet: header (a, b, lr, betas), Reset's warm-up passes, then one block per epoch. Each block's",
    "state row holds what the Run macro pastes: the last row's *inputs* as the new a, b (after 28 updates)",
    "and the optimizer state after all 29 rows. The table at the right lists b, a, lr and rmse per epoch",
    "(rmse = SQRT(SUM(err^2)) as on the original basic sheet); the chart plots it.",
    "Edit the lr (D2; F1 on basic) or a beta (J1, L1) and every epoch recomputes.",
]


MAX_EPOCHS = 100  # 100 epochs: about 200,000 formulas, which spreadsheet programs still open quickly


def export_workbook(
    path: str | Path,
    epochs: int = 10,
    names: Sequence[str] = SHEETS,
    data: Iterable | str | Path | None = None,
    lrs: dict[str, float] | None = None,
    hypers: dict[str, dict[str, float]] | None = None,
) -> dict[tuple[str, str], float]:
    """Write the .xlsx; return the engine's value for every formula cell, keyed by (sheet, cell).

    `lrs` sets a sheet's lr after Reset (as typed into its lr cell); the warm-up keeps the Reset lr. `hypers`
    gives a sheet's {"lr", "beta1", "beta2"} as typed: the betas before Reset (its warm-up reads the beta cells,
    as the workbook's does), the lr after. The file is written atomically: an interrupted or failed export
    leaves the previous file as it was.

    Raises:
        ValueError: epochs outside 1..MAX_EPOCHS, an unknown sheet, or bad data."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(
            f"epochs must be an integer from 1 to {MAX_EPOCHS} (each epoch adds about 2,000 live formulas), "
            f"got {epochs!r}"
        )
    unknown = [n for n in names if n not in SHEETS]
    if unknown:
        raise ValueError(f"unknown sheet {unknown[0]!r}; choose from {', '.join(SHEETS)}")
    lrs, hypers = lrs or {}, hypers or {}
    sheets = {name: _typed_sheet(name, data, {"lr": lrs.get(name), **hypers.get(name, {})}) for name in names}
    rows = next(iter(sheets.values())).data
    wb = Workbook()
    overview = wb.active
    overview.title = "Overview"
    for i, line in enumerate(OVERVIEW, start=1):
        overview.cell(i, 1, line)
    data_ws = wb.create_sheet("data")
    data_ws.append(["x", "y"])
    for x, y in rows:
        data_ws.append([x, y])
    expected: dict[tuple[str, str], float] = {}
    from lrlab.lab.export_textbook import TextbookSheetWriter

    for name, sheet in sheets.items():
        writer = SheetWriter if name in WORKBOOK_SHEETS else TextbookSheetWriter
        writer(wb.create_sheet(name), sheet, epochs, expected).write()
    buffer = io.BytesIO()  # openpyxl leaves its zip open if a write fails: let it fail in memory, not on disk
    wb.save(buffer)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return expected


def _typed_sheet(name: str, data, typed: dict) -> Sheet:
    """A sheet as if its lr and betas were typed in: betas before Reset (the warm-up reads them), the lr after
    (RMSprop's Reset keeps the typed lr, so its warm-up runs at it)."""
    lr = typed.get("lr")
    sheet = Sheet(name, data=data, lr=lr)
    betas = {k: v for k, v in typed.items() if k in ("beta1", "beta2") and v is not None}
    for key, value in betas.items():
        setattr(sheet, key, value)
    if betas:
        sheet.reset()
        if lr is not None:
            sheet.lr = lr
    return sheet


class SheetWriter:
    """Lays out one optimizer sheet and records the engine's value for each formula it writes."""

    def __init__(self, ws, sheet: Sheet, epochs: int, expected: dict) -> None:
        self.ws, self.sheet, self.epochs, self.expected = ws, sheet, epochs, expected
        self.name = sheet.name
        self.n = len(sheet.data)
        self.next_row = 4
        self.lr_cell = "$F$1" if self.name == "basic" else "$D$2"

    def put(self, cell: str, formula_or_value, value: float | None = None) -> None:
        """Write a cell; a formula's engine value goes into `expected`."""
        self.ws[cell] = formula_or_value
        if isinstance(formula_or_value, str) and formula_or_value.startswith("="):
            self.expected[(self.ws.title, cell)] = value

    def header(self) -> None:
        ws, hp = self.ws, DEFAULTS[self.name]
        ws["B1"], ws["C1"], ws["B2"], ws["C2"] = "const (b)", 1.0, "slope (a)", 1.0
        if self.name == "basic":
            ws["E1"], ws["F1"] = "lr", self.sheet.lr
            return
        ws["D1"], ws["D2"] = "lr", self.sheet.lr
        ws["E1"], ws["E2"] = "Reset lr", hp["lr"]
        if self.name == "rmsprop":  # its Reset leaves the lr alone: the warm-up runs at the lr in D2
            self.put("E2", "=D2", self.sheet.lr)
        if self.name == "rmsprop":
            ws["J1"], ws["J2"] = self.sheet.beta2, "beta (squares)"
            self.put("K1", "=1-J1", 1 - self.sheet.beta2)
        else:
            ws["J1"], ws["J2"] = self.sheet.beta1, "beta1 (momentum)"
            self.put("K1", "=1-J1", 1 - self.sheet.beta1)
        if self.name in ("adam", "adam_ann"):
            ws["L1"], ws["L2"] = self.sheet.beta2, "beta2 (squares)"
            self.put("M1", "=1-L1", 1 - self.sheet.beta2)

    def block(
        self,
        label: str,
        weights: tuple[str, str],
        state_refs: list,
        display: list[dict],
        lr_ref: str,
        header_values: tuple,
        lr_formula: tuple | None = None,
    ) -> dict:
        """State row + data rows + footer; returns the block's row numbers."""
        rs = self.next_row
        first, last, rf = rs + 1, rs + self.n, rs + self.n + 1
        self.next_row = rf + 2
        self.ws[f"A{rs}"] = label
        self.ws[f"A{rs}"].font = Font(bold=True)
        b, a, s = header_values
        self.put(f"C{rs}", weights[0], b)
        self.put(f"D{rs}", weights[1], a)
        if lr_formula is not None:
            self.put(f"E{rs}", *lr_formula)
        for col, ref, init, value in zip(STATE_COLS[self.name], state_refs, INIT, s):
            if col is not None:
                self.put(f"{col}{rs}", ref if ref is not None else init, value)
        formulas = FORMULAS[self.name]
        for i, row in enumerate(display):
            r = first + i
            cells = {**COMMON, "C": ("b", f"=C{rs}" if i == 0 else None), "D": ("a", f"=D{rs}" if i == 0 else None)}
            if i > 0:
                new_b, new_a = ("N", "M") if self.name == "basic" else ("H", "I")
                cells["C"], cells["D"] = ("b", f"={new_b}{r - 1}"), ("a", f"={new_a}{r - 1}")
            cells.update(formulas)
            for col, (key, template) in cells.items():
                formula = template.format(r=r, p=r - 1, lr=lr_ref, d=i + 2)
                self.put(f"{col}{r}", formula, row[key])
        err_col = next(col for col, (key, _) in formulas.items() if key == "err2")
        self.ws[f"A{rf}"] = "rmse"
        sse = sum(row["err2"] for row in display)
        self.put(f"{err_col}{rf}", f"=SQRT(SUM({err_col}{first}:{err_col}{last}))", sse**0.5)
        return {"state": rs, "first": first, "last": last, "footer": rf, "err_col": err_col}

    def state_formulas(self, sources: tuple, blocks: list[dict]) -> list:
        """Formulas for the four state parts from a warm-up recipe (None = Reset's constant)."""
        refs = []
        for part, col in enumerate(STATE_COLS[self.name]):
            src = sources[0] if part < 2 else sources[1]
            refs.append(None if col is None or src == "init" else f"={col}{blocks[src[1]]['last']}")
        return refs

    def write(self) -> None:
        ws, sheet, name = self.ws, self.sheet, self.name
        self.header()
        for col, title in enumerate(HEADERS[name], start=1):
            ws.cell(3, col, title).font = Font(bold=True)
        recipe = WARMUPS[name]
        warm = []
        for i, sources in enumerate(recipe["passes"]):
            state = sheet.warmup_states[i]
            display = sheet.display(1.0, 1.0, state, 0, DEFAULTS[name]["lr"] if name != "rmsprop" else sheet.lr)
            warm.append(
                self.block(
                    f"Reset warm-up {i + 1}",
                    ("=$C$1", "=$C$2"),
                    self.state_formulas(sources, warm),
                    display,
                    "$E$2",
                    (1.0, 1.0, state),
                )
            )
        ann = name == "adam_ann"
        lr0 = ("=$D$2", sheet.lr) if ann else None
        lr_ref = (lambda blk_row: f"$E${blk_row}") if ann else (lambda blk_row: self.lr_cell)
        rs0 = self.next_row
        blocks = [
            self.block(
                "epoch 0 (after Reset)",
                ("=$C$1", "=$C$2"),
                self.state_formulas(recipe["final"], warm),
                sheet.rows,
                lr_ref(rs0),
                (sheet.b, sheet.a, sheet._s),
                lr0,
            )
        ]
        if ann:  # best (prev_grad2) from the state the second warm-up read
            w1 = warm[1]["state"]
            self.put(f"J{blocks[0]['footer']}", "best")
            self.put(f"K{blocks[0]['footer']}", f"=SQRT(L{w1})+SQRT(M{w1})", sheet.best_measure)
        for k in range(1, self.epochs + 1):
            prev = blocks[-1]
            sheet.run(1)
            record = sheet.history[-1]
            rs = self.next_row
            rf = rs + self.n + 1
            lr_formula = None
            if ann:
                lr_formula = (f"=IF(M{rf}>2,E{prev['state']}/4,E{prev['state']})", record["next_lr"])
            state_refs = [None if c is None else f"={c}{prev['last']}" for c in STATE_COLS[name]]
            blk = self.block(
                f"epoch {k}",
                (f"=C{prev['last']}", f"=D{prev['last']}"),
                state_refs,
                sheet.rows,
                lr_ref(rs),
                (sheet.b, sheet.a, sheet._s),
                lr_formula,
            )
            if ann:
                ws[f"H{rf}"], ws[f"J{rf}"], ws[f"L{rf}"] = "avg_grad2", "best", "gradrat"
                measure = math.sqrt(sheet._s[2]) + math.sqrt(sheet._s[3])
                self.put(f"I{rf}", f"=SQRT(L{rs})+SQRT(M{rs})", measure)
                self.put(f"K{rf}", f"=MIN(K{prev['footer']},I{rf})", sheet.best_measure)
                self.put(f"M{rf}", f"=I{rf}/K{prev['footer']}", record["gradrat"])
            blocks.append(blk)
        self.summary(blocks)

    def summary(self, blocks: list[dict]) -> None:
        """Per-epoch table (P..U) and the native RMSE-by-epoch line chart."""
        ws, ann = self.ws, self.name == "adam_ann"
        for col, title in zip(
            "PQRSTU", ["epoch", "b", "a", "lr", "rmse", "gradrat"] if ann else ["epoch", "b", "a", "lr", "rmse"]
        ):
            ws[f"{col}1"] = title
            ws[f"{col}1"].font = Font(bold=True)
        for k, record in enumerate(self.sheet.history, start=1):
            r, blk, prev = k + 1, blocks[k], blocks[k - 1]
            ws[f"P{r}"] = k
            self.put(f"Q{r}", f"=C{blk['state']}", record["b"])
            self.put(f"R{r}", f"=D{blk['state']}", record["a"])
            self.put(f"S{r}", f"=E{prev['state']}" if ann else f"={self.lr_cell}", record["lr"])
            self.put(f"T{r}", f"={blk['err_col']}{blk['footer']}", record["rmse"])
            if ann:
                self.put(f"U{r}", f"=M{blk['footer']}", record["gradrat"])
        chart = LineChart()
        chart.title = f"{self.name}: error by epoch"
        chart.y_axis.title = "rmse"
        chart.x_axis.title = "epoch"
        n = len(self.sheet.history)
        chart.add_data(Reference(ws, min_col=20, min_row=1, max_row=n + 1), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=16, min_row=2, max_row=n + 1))
        ws.add_chart(chart, "W2")


RECALC_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">
<value>0</value></prop></item>
</oor:items>
"""


def find_soffice() -> str | None:
    """LibreOffice's command, if installed (Debian: libreoffice-calc-nogui)."""
    import shutil

    return shutil.which("soffice") or shutil.which("libreoffice")


def recalculate(path: str | Path, out_dir: str | Path, timeout: float = 300) -> Path:
    """Open the workbook in headless LibreOffice, recompute every formula, and save a copy with the values."""
    import subprocess
    import tempfile

    soffice = find_soffice()
    if soffice is None:
        raise RuntimeError("LibreOffice (soffice) not found: install Debian's libreoffice-calc-nogui")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lrlab-lo-") as profile:
        user = Path(profile) / "user"
        user.mkdir()
        (user / "registrymodifications.xcu").write_text(RECALC_PROFILE)  # always recalculate on load
        cmd = [soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
               "--convert-to", "xlsx:Calc MS Excel 2007 XML", "--outdir", str(out_dir), str(path)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    result = out_dir / Path(path).name
    if done.returncode != 0 or not result.exists():
        raise RuntimeError(f"LibreOffice failed to recalculate {path}: {done.stdout}{done.stderr}")
    return result


def read_values(path: str | Path) -> dict[tuple[str, str], object]:
    """Every cell's stored value (as computed by the program that saved the file)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, data_only=True)
    return {(ws.title, cell.coordinate): cell.value for ws in wb.worksheets for row in ws.iter_rows() for cell in row}
