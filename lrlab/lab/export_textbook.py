"""The sheets since Adam in the exported workbook: textbook mode, live formulas, one block per epoch.

There is no original workbook to copy, so the layout is lrlab's own, the same for every such sheet:

    A x  B y  C b  D a  E pred  F de/db  G de/da  H new b  I new a  J mom b  K mom a  L sq b  M sq a  N err^2
    O t (the step)  P, Q the extra state (AdEMAMix's slow EMA, Schedule-Free's z)  R NAdam's momentum product
    S, T per-row helpers (NAdam's mu_t and mu_t+1, RAdam's rho_t and rectification, Muon's update, the
    Schedule-Free normalized gradients)

Header: C1, C2 the start (b, a); D2 the lr; J1 beta1; L1 beta2; N1 eps; P1, R1 the sheet's constants. Each
block's state row carries all 29 updates' results (textbook mode), so editing a header cell recomputes every
epoch. The engine's value of every cell it also computes (pred, gradients, state, new b and a, rmse) is
recorded for checking; helper cells (O, R, S, T) and state the sheet does not have are not.
"""

from __future__ import annotations

from openpyxl.chart import LineChart, Reference
from openpyxl.styles import Font

from lrlab.lab.engine import Sheet
from lrlab.lab.newer import ADEMAMIX_ALPHA, ADEMAMIX_BETA3, EXTRA_STATE
from lrlab.optim.muon import orthogonalize_row

HELPER_COLUMNS = ("O", "R", "S", "T")
ADAM_DENOM = "(SQRT({sq}/(1-$L$1^O{r}))+$N$1)"
COMMON = {
    "A": ("x", "=data!A{d}"), "B": ("y", "=data!B{d}"), "E": ("pred", "=C{r}+D{r}*A{r}"),
    "F": ("db", "=2*(E{r}-B{r})"), "G": ("da", "=F{r}*A{r}"), "N": ("err2", "=(B{r}-E{r})^2"),
    "O": (None, "=O{p}+1"),
}  # fmt: skip
ADAM_MOMENTS = {
    "J": ("mom_b", "=$J$1*J{p}+(1-$J$1)*F{r}"), "K": ("mom_a", "=$J$1*K{p}+(1-$J$1)*G{r}"),
    "L": ("sq_b", "=$L$1*L{p}+(1-$L$1)*F{r}^2"), "M": ("sq_a", "=$L$1*M{p}+(1-$L$1)*G{r}^2"),
}  # fmt: skip


def _nadam() -> dict:
    mu = "$J$1*(1-0.5*0.96^(({t})*0.004))"
    step_b = "H", "C", "F", "J", "L"
    out = {**ADAM_MOMENTS, "S": (None, "=" + mu.format(t="O{r}")), "T": (None, "=" + mu.format(t="O{r}+1")),
           "R": (None, "=R{p}*S{r}")}  # fmt: skip
    for col, p, g, m, sq in (step_b, ("I", "D", "G", "K", "M")):
        denom = ADAM_DENOM.format(sq=f"{sq}{{r}}", r="{r}")
        out[col] = (f"new_{'b' if col == 'H' else 'a'}",
                    f"={p}{{r}}-$D$2*(1-S{{r}})/(1-R{{r}})*{g}{{r}}/{denom}"
                    f"-$D$2*T{{r}}/(1-R{{r}}*T{{r}})*{m}{{r}}/{denom}")  # fmt: skip
    return out


def _radam() -> dict:
    rho_inf = "(2/(1-$L$1)-1)"
    rho = f"={rho_inf}-2*O{{r}}*$L$1^O{{r}}/(1-$L$1^O{{r}})"
    rect = f"=IF(S{{r}}>5,SQRT((S{{r}}-4)*(S{{r}}-2)*{rho_inf}/(({rho_inf}-4)*({rho_inf}-2)*S{{r}})),0)"
    out = {**ADAM_MOMENTS, "S": (None, rho), "T": (None, rect)}
    for col, p, m, sq in (("H", "C", "J", "L"), ("I", "D", "K", "M")):
        adaptive = f"{p}{{r}}-$D$2*T{{r}}*({m}{{r}}/(1-$J$1^O{{r}}))*SQRT(1-$L$1^O{{r}})/(SQRT({sq}{{r}})+$N$1)"
        momentum_sgd = f"{p}{{r}}-$D$2*{m}{{r}}/(1-$J$1^O{{r}})"
        out[col] = (f"new_{'b' if col == 'H' else 'a'}", f"=IF(S{{r}}>5,{adaptive},{momentum_sgd})")
    return out


def _lion() -> dict:
    return {
        "J": ("mom_b", "=$L$1*J{p}+(1-$L$1)*F{r}"), "K": ("mom_a", "=$L$1*K{p}+(1-$L$1)*G{r}"),
        "H": ("new_b", "=C{r}-$D$2*SIGN($J$1*J{p}+(1-$J$1)*F{r})"),
        "I": ("new_a", "=D{r}-$D$2*SIGN($J$1*K{p}+(1-$J$1)*G{r})"),
    }  # fmt: skip


def _ademamix() -> dict:
    out = {**ADAM_MOMENTS, "P": ("slow_b", "=$P$1*P{p}+(1-$P$1)*F{r}"), "Q": ("slow_a", "=$P$1*Q{p}+(1-$P$1)*G{r}")}
    for col, p, m, sq, slow in (("H", "C", "J", "L", "P"), ("I", "D", "K", "M", "Q")):
        denom = ADAM_DENOM.format(sq=f"{sq}{{r}}", r="{r}")
        out[col] = (f"new_{'b' if col == 'H' else 'a'}",
                    f"={p}{{r}}-$D$2*({m}{{r}}/(1-$J$1^O{{r}})+$R$1*{slow}{{r}})/{denom}")  # fmt: skip
    return out


def _muon() -> dict:
    return {
        "J": ("mom_b", "=J{p}+(1-$J$1)*(F{r}-J{p})"), "K": ("mom_a", "=K{p}+(1-$J$1)*(G{r}-K{p})"),
        "S": (None, "=F{r}+$J$1*(J{r}-F{r})"), "T": (None, "=G{r}+$J$1*(K{r}-G{r})"),
        "H": ("new_b", "=C{r}-$D$2*$P$1*S{r}/SQRT(S{r}^2+T{r}^2)"),
        "I": ("new_a", "=D{r}-$D$2*$P$1*T{r}/SQRT(S{r}^2+T{r}^2)"),
    }  # fmt: skip


def _schedule_free() -> dict:
    out = {"L": ADAM_MOMENTS["L"], "M": ADAM_MOMENTS["M"]}
    for col, p, g, sq, z, helper in (("H", "C", "F", "L", "P", "S"), ("I", "D", "G", "M", "Q", "T")):
        out[helper] = (None, f"={g}{{r}}/{ADAM_DENOM.format(sq=f'{sq}{{r}}', r='{r}')}")
        out[col] = (f"new_{'b' if col == 'H' else 'a'}",
                    f"={p}{{r}}+(1/O{{r}})*({z}{{p}}-{p}{{r}})+$D$2*($J$1*(1-1/O{{r}})-1)*{helper}{{r}}")  # fmt: skip
        out[z] = (f"z_{'b' if col == 'H' else 'a'}", f"={z}{{p}}-$D$2*{helper}{{r}}")
    return out


FORMULAS = {"nadam": _nadam(), "radam": _radam(), "lion": _lion(), "ademamix": _ademamix(), "muon": _muon(),
            "schedulefree_adamw": _schedule_free()}  # fmt: skip
STATE_COLS = ("J", "K", "L", "M", "P", "Q", "R")  # carried from the last data row to the next state row
HEADERS = ["x", "y", "b", "a", "y_pred", "de/db", "de/da", "new b", "new a", "mom b", "mom a", "sq b", "sq a",
           "err^2", "t", "extra b", "extra a", "mu product", "helper b", "helper a"]  # fmt: skip


def constants(name: str) -> dict[str, tuple[str, float]]:
    """The header constants of a sheet beyond lr and betas: cell -> (label, value)."""
    out = {"N1": ("eps", 1e-8)}
    if name == "ademamix":
        out.update(P1=("beta3", ADEMAMIX_BETA3), R1=("alpha", ADEMAMIX_ALPHA))
    if name == "muon":
        out["P1"] = ("Newton-Schulz length after 5 steps", orthogonalize_row([1.0, 0.0])[0])
    return out


class TextbookSheetWriter:
    """Lays out one sheet since Adam and records the engine's value for each formula it can check."""

    def __init__(self, ws, sheet: Sheet, epochs: int, expected: dict) -> None:
        self.ws, self.sheet, self.epochs, self.expected = ws, sheet, epochs, expected
        self.name, self.n = sheet.name, len(sheet.data)
        self.formulas = FORMULAS[sheet.name]
        self.extra = dict(zip(("P", "Q"), EXTRA_STATE.get(sheet.name, ())))

    def put(self, cell: str, formula_or_value, value: float | None = None) -> None:
        self.ws[cell] = formula_or_value
        if value is not None and isinstance(formula_or_value, str) and formula_or_value.startswith("="):
            self.expected[(self.ws.title, cell)] = value

    def header(self) -> None:
        ws, sheet = self.ws, self.sheet
        ws["B1"], ws["C1"], ws["B2"], ws["C2"] = "const (b)", 1.0, "slope (a)", 1.0
        ws["D1"], ws["D2"] = "lr", sheet.lr
        ws["J2"], ws["J1"] = "beta1", sheet.beta1
        ws["L2"], ws["L1"] = "beta2", sheet.beta2
        for cell, (label, value) in constants(self.name).items():
            ws[cell] = value
            ws[cell[0] + "2"] = label
        for col, title in enumerate(HEADERS, start=1):
            ws.cell(3, col, title).font = Font(bold=True)

    def block(self, label: str, rs: int, carry: dict[str, str], rows: list[dict], step0: int,
              carried: dict[str, float] | None = None) -> dict:  # fmt: skip
        """A state row (carried values, with the engine's where it has them) + the data rows + a footer."""
        first, last, footer = rs + 1, rs + self.n, rs + self.n + 1
        self.ws[f"A{rs}"] = label
        self.ws[f"A{rs}"].font = Font(bold=True)
        for col, ref in carry.items():
            self.put(f"{col}{rs}", ref, (carried or {}).get(col))
        for i, row in enumerate(rows):
            r = first + i
            cells = {**COMMON, "C": ("b", f"=C{rs}" if i == 0 else f"=H{r - 1}"),
                     "D": ("a", f"=D{rs}" if i == 0 else f"=I{r - 1}"), **self.formulas}  # fmt: skip
            for col, (key, template) in cells.items():
                value = step0 + i + 1 if col == "O" else row.get(key) if key else None
                self.put(f"{col}{r}", template.format(r=r, p=r - 1, d=i + 2), value)
        self.ws[f"A{footer}"] = "rmse"
        rmse = (sum(row["err2"] for row in rows) / self.n) ** 0.5
        self.put(f"N{footer}", f"=SQRT(SUM(N{first}:N{last})/{self.n})", rmse)
        return {"state": rs, "last": last, "footer": footer}

    def write(self) -> None:
        sheet = self.sheet
        self.header()
        state_cols = [c for c in STATE_COLS if c in self.formulas]  # the state this sheet keeps
        init = {"C": "=$C$1", "D": "=$C$2", "O": 0, **{c: 0.0 for c in state_cols}}
        if self.name == "nadam":
            init["R"] = 1.0
        if self.name == "schedulefree_adamw":
            init.update(P="=$C$1", Q="=$C$2")
        blocks = [self.block("epoch 0 (after Reset)", 4, init, sheet.rows, 0, {"C": 1.0, "D": 1.0, "P": 1.0, "Q": 1.0})]
        keys = {"C": "new_b", "D": "new_a", "J": "mom_b", "K": "mom_a", "L": "sq_b", "M": "sq_a", **self.extra}
        for k in range(1, self.epochs + 1):
            prev, last_row = blocks[-1], sheet.rows[-1]
            sheet.run(1)
            carry = {"C": f"=H{prev['last']}", "D": f"=I{prev['last']}", "O": f"=O{prev['last']}"}
            carry.update({c: f"={c}{prev['last']}" for c in state_cols})
            carried = {col: last_row.get(key) for col, key in keys.items()}
            blocks.append(self.block(f"epoch {k}", prev["footer"] + 2, carry, sheet.rows, k * self.n, carried))
        self.summary(blocks)

    def summary(self, blocks: list[dict]) -> None:
        ws = self.ws
        for col, title in zip("VWXYZ", ["epoch", "b", "a", "lr", "rmse"]):
            ws[f"{col}1"] = title
            ws[f"{col}1"].font = Font(bold=True)
        for k, record in enumerate(self.sheet.history, start=1):
            r, blk = k + 1, blocks[k]
            ws[f"V{r}"] = k
            self.put(f"W{r}", f"=C{blk['state']}", record["b"])
            self.put(f"X{r}", f"=D{blk['state']}", record["a"])
            self.put(f"Y{r}", "=$D$2", record["lr"])
            self.put(f"Z{r}", f"=N{blk['footer']}", record["rmse"])
        chart = LineChart()
        chart.title, chart.y_axis.title, chart.x_axis.title = f"{self.name}: error by epoch", "rmse", "epoch"
        n = len(self.sheet.history)
        chart.add_data(Reference(ws, min_col=26, min_row=1, max_row=n + 1), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=22, min_row=2, max_row=n + 1))
        ws.add_chart(chart, "AB2")
