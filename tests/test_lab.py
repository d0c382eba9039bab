"""The optimizer lab reproduces the lesson's workbook number for number (graddesc-spec.md)."""

from __future__ import annotations

import csv
import math

import pytest

from lrlab.lab import SHEETS, LabError, Sheet, compare, epochs_to_reach
from lrlab.lab.data import WORKBOOK_ROWS, load_csv, random_rows
from tests.conftest import SHARED, require


def test_rows_are_the_workbooks():
    ref = SHARED / "reference" / "graddesc-rows.csv"
    require(ref.exists(), f"{ref} missing")
    with open(ref) as f:
        rows = [(float(r["x"]), float(r["y"])) for r in csv.DictReader(f)]
    assert rows == [(float(x), float(y)) for x, y in WORKBOOK_ROWS]
    assert len(rows) == 29 and all(y == 2 * x + 30 for x, y in rows)


def test_first_row_figures_of_the_lesson():
    row = Sheet("basic").rows[0]
    assert (row["x"], row["y"], row["pred"], row["err2"]) == (14, 58, 15, 1849)
    assert round(row["fd_db"], 2) == -85.99 and round(row["fd_da"], 2) == -1202.04
    assert (row["db"], row["da"]) == (-86, -1204)
    assert row["new_a"] == pytest.approx(1 + 1204e-4) and row["new_b"] == pytest.approx(1 + 86e-4)


def test_first_epoch_carry_and_one_run():
    s = Sheet("basic")
    display = s.rows
    s.run(1)
    assert (round(s.b, 4), round(s.a, 4)) == (1.0666, 2.5741)
    # the quirk: the carried weights are the last row's *inputs* (after 28 updates)
    assert (s.b, s.a) == (display[-1]["b"], display[-1]["a"])
    s.reset().run()
    assert (round(s.a, 2), round(s.b, 2)) == (2.57, 1.28) and abs(s.b - 1.27) < 0.01
    assert [h["epoch"] for h in s.history] == [1, 2, 3, 4, 5]
    assert s.history[-1]["rmse"] == pytest.approx(math.sqrt(sum(r["err2"] for r in s.rows)))


def spec_epoch(name, rows, b, a, state, lr, beta1=0.9, beta2=0.9):
    """An independent transcription of the spec's row formulas (§4), one epoch."""
    mb, ma, sb, sa = state
    out = []
    for x, y in rows:
        e = b + a * x
        f = 2 * (a * x + b - y)
        g = f * x
        if name == "basic":
            nb, na = b - f * lr, a - g * lr
        elif name == "momentum":
            mb, ma = mb * beta1 + (1 - beta1) * f, ma * beta1 + (1 - beta1) * g
            nb, na = b - mb * lr, a - ma * lr
        elif name == "rmsprop":
            nb, na = b - f * lr / math.sqrt(sb), a - g * lr / math.sqrt(sa)
            sb, sa = sb * beta2 + (1 - beta2) * f**2, sa * beta2 + (1 - beta2) * g**2
        else:
            mb, ma = mb * beta1 + (1 - beta1) * f, ma * beta1 + (1 - beta1) * g
            sb, sa = sb * beta2 + (1 - beta2) * f**2, sa * beta2 + (1 - beta2) * g**2
            nb, na = b - mb * lr / math.sqrt(sb), a - ma * lr / math.sqrt(sa)
        out.append(
            {"b": b, "a": a, "pred": e, "err2": (y - e) ** 2, "new_b": nb, "new_a": na, "state": (mb, ma, sb, sa)}
        )
        b, a = nb, na
    return out


def parts(name, state):
    """The state parts a sheet has: momentum (b, a) and/or squares (b, a)."""
    return {"momentum": state[:2], "rmsprop": state[2:]}.get(name, state)


def close(u, v, rel=1e-12):
    return all(math.isclose(p, q, rel_tol=rel, abs_tol=1e-12) for p, q in zip(u, v))


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_reset_warm_up_and_runs_follow_the_macros(name):
    rows = [(float(x), float(y)) for x, y in WORKBOOK_ROWS]
    beta2 = 0.9
    lr = {"momentum": 1e-4, "rmsprop": 0.02, "adam": 1.0}[name]

    def out(state):
        return spec_epoch(name, rows, 1.0, 1.0, state, lr, beta2=beta2)[-1]["state"]

    init = (0.0, 0.0, 10000.0, 10000.0)
    if name == "momentum":  # one epoch of momentum from 0
        expected = out(init)[:2] + (10000.0, 10000.0)
    elif name == "rmsprop":  # two epochs from 10000
        expected = (0.0, 0.0) + out(out(init))[2:]
    else:  # four dependent recalculations: s, m, s, m
        m, s = init[:2], init[2:]
        for _ in range(2):
            s = out(m + s)[2:]
            m = out(m + s)[:2]
        expected = m + s
    sheet = Sheet(name)
    assert close(parts(name, sheet._s), parts(name, expected)) and (sheet.a, sheet.b) == (1.0, 1.0)
    # then each Run epoch: weights after 28 updates, state after 29
    b, a, state = 1.0, 1.0, expected
    for _ in range(3):
        epoch = spec_epoch(name, rows, b, a, state, lr, beta2=beta2)
        b, a, state = epoch[-1]["b"], epoch[-1]["a"], epoch[-1]["state"]
    sheet.run(3)
    assert close((sheet.b, sheet.a), (b, a), 1e-9) and close(parts(name, sheet._s), parts(name, state), 1e-9)


def test_adam_ann_rule_and_warm_up():
    sheet = Sheet("adam_ann")
    rows = [(float(x), float(y)) for x, y in WORKBOOK_ROWS]

    def out(state):
        return spec_epoch("adam_ann", rows, 1.0, 1.0, state, 1.0, beta2=0.95)[-1]["state"]

    s1 = out((0.0, 0.0, 10000.0, 10000.0))
    s2 = out(s1)
    assert close(sheet._s, s2)
    assert sheet.best_measure == pytest.approx(math.sqrt(s1[2]) + math.sqrt(s1[3]))
    lr = 1.0
    sheet.run(15)
    for h in sheet.history:
        assert h["lr"] == lr
        lr = lr / 4 if h["gradrat"] > 2 else lr
        assert h["next_lr"] == lr
    assert any(h["gradrat"] > 2 for h in sheet.history)


def test_compare_adam_ann_reaches_the_optimum_by_itself():
    results = {r["sheet"]: r for r in compare(cap=4000)}
    assert results["adam_ann"]["epochs"] == 20 and results["adam_ann"]["lr"] == 1 / 256  # the workbook's cached lr
    assert results["rmsprop"]["epochs"] == 98
    assert results["basic"]["epochs"] == 3131 and results["momentum"]["epochs"] == 3338
    assert results["adam"]["epochs"] is None  # lr 1 bounces forever; the lesson lowers it by hand


def test_adam_by_hand_as_in_the_lesson():
    """Adam jumps near (30, 2) in two Runs, then bounces; lowering the lr by hand settles it."""
    s = Sheet("adam")
    s.run()
    s.run()
    assert abs(s.b - 30) < 6 and abs(s.a - 2) < 0.5
    s.lr = 0.1
    s.run(20)
    s.lr = 0.01
    assert epochs_to_reach(s, cap=500) is not None


def test_textbook_mode_differs_as_documented():
    wb, tb = Sheet("basic"), Sheet("basic", textbook=True)
    display = tb.rows
    tb.run(1)
    assert (tb.b, tb.a) == (display[-1]["new_b"], display[-1]["new_a"])  # all 29 updates carried
    assert tb.history[-1]["rmse"] == pytest.approx(math.sqrt(sum(r["err2"] for r in tb.rows) / 29))
    wb.run(1)
    assert wb.a != tb.a
    adam = Sheet("adam", textbook=True)
    assert adam.state == {"mom": (0.0, 0.0), "sq": (0.0, 0.0), "step": 0}
    first = adam.rows[0]
    assert first["new_b"] == pytest.approx(1 + 1.0, rel=1e-6)  # bias-corrected first step = lr * sign(-g)
    adam.lr = 0.5
    adam.run(50)
    assert adam.state["step"] == 50 * 29


def test_state_lr_and_rows_api():
    s = Sheet("adam")
    assert set(s.state) == {"mom", "sq"} and s.lr == 1.0
    s.lr = 0.1
    s.run(epochs=2)
    assert [h["lr"] for h in s.history] == [0.1, 0.1] and s.epoch == 2
    keys = set(s.rows[0])
    assert {"x", "y", "pred", "err2", "db", "da", "new_b", "new_a", "mom_b", "mom_a", "sq_b", "sq_a"} <= keys
    assert "fd_db" in Sheet("basic").rows[0] and "mom_b" not in Sheet("rmsprop").rows[0]


def test_random_and_csv_data(tmp_path):
    rows = random_rows(29, seed=3)
    assert rows == random_rows(29, seed=3) and all(y == 30 + 2 * x and 1 <= x <= 100 for x, y in rows)
    s = Sheet.random("basic", n=10, a=3, b=5, seed=1)
    assert len(s.data) == 10 and all(y == 5 + 3 * x for x, y in s.data)
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,32\n2,34\n")
    assert load_csv(path) == [(1.0, 32.0), (2.0, 34.0)] and Sheet("adam", data=path).data == [(1.0, 32.0), (2.0, 34.0)]


@pytest.mark.parametrize(
    "text, match",
    [("x,y\n1,32\n2\n", "line 3"), ("x,y\n1,abc\n", "line 2: non-numeric"), ("1,2\n,4\n", "line 2"), ("", "no x,y")],
)
def test_bad_csv_names_the_line(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_csv(path)


def test_bad_sheet_lr_and_epochs():
    with pytest.raises(LabError, match="unknown sheet 'sgd'; choose one of basic, momentum, rmsprop, adam, adam_ann"):
        Sheet("sgd")
    s = Sheet("basic")
    for bad in (0, -1e-4, float("nan"), float("inf")):
        with pytest.raises(LabError, match="learning rate"):
            s.lr = bad
    with pytest.raises(LabError, match="epochs"):
        s.run(0)


def test_overflow_stops_with_epoch_and_row_and_keeps_last_finite_state():
    s = Sheet("basic")
    s.lr = 0.01
    with pytest.raises(LabError, match=r"epoch 5, data row 5 \(x=28, y=86\)"):
        s.run(50)
    assert s.epoch == 4 and len(s.history) == 4
    assert math.isfinite(s.a) and math.isfinite(s.b)
    s.lr = 1e-4  # the user lowers the lr and carries on from the last finite state
    s.run(1)
    assert s.epoch == 5


def test_every_sheet_runs_from_reset():
    for name in SHEETS:
        s = Sheet(name).run()
        assert len(s.history) == 5 and all(math.isfinite(h["rmse"]) for h in s.history)


def test_cli_lab_sheet_and_compare(tmp_path, capsys):
    from lrlab.cli.main import main

    assert main(["lab", "basic", "--rows", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1.066648   2.57414" in out and "fd_db" in out and (tmp_path / "rmse-basic.png").exists()
    assert main(["lab", "adam", "--lr", "0.1", "--runs", "2", "--epochs", "3", "--out", str(tmp_path)]) == 0
    assert "Run(s) of 3 epochs" in capsys.readouterr().out
    assert main(["lab", "compare", "--cap", "4000", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "adam_ann" in out and "not within 4000" in out and " 20 " in out
    for name in ("compare.png", "paths.png", "rmse-adam_ann.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["lab", "nope"]) == 2
    assert "choose one of basic" in capsys.readouterr().err


def test_tables_round_like_a_spreadsheet():
    from lrlab.lab.report import cell, history_table, rows_table

    assert cell(1.0666479742323505) == "1.066648" and cell(0.0001) == "0.0001" and cell(1.5e-7) == "1.5000E-07"
    s = Sheet("adam_ann").run(3)
    assert "gradrat" in history_table(s).splitlines()[0]
    assert len(rows_table(s).splitlines()) == 30
