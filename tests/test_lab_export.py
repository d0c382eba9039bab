"""The exported workbook recomputes in LibreOffice to the engine's numbers, cell for cell."""

from __future__ import annotations

import math
import zipfile

import pytest
from openpyxl import load_workbook

from lrlab.cli.main import main
from lrlab.lab.engine import SHEETS, TEXTBOOK_ONLY
from lrlab.lab.export import export_workbook, find_soffice, read_values, recalculate
from lrlab.lab.export_textbook import HELPER_COLUMNS
from tests.conftest import require


def formula_cells(path):
    wb = load_workbook(path)
    return {
        (ws.title, c.coordinate)
        for ws in wb.worksheets
        for row in ws.iter_rows()
        for c in row
        if isinstance(c.value, str) and c.value.startswith("=")
    }


def assert_matches(expected, got, rel=1e-9):
    worst = 0.0
    for key, value in expected.items():
        computed = got.get(key)
        assert isinstance(computed, (int, float)), f"{key}: LibreOffice gave {computed!r}, engine {value!r}"
        if value == 0:
            assert abs(computed) < 1e-12, key
            continue
        diff = abs(computed - value) / abs(value)
        worst = max(worst, diff)
        assert diff <= rel, f"{key}: LibreOffice {computed!r} vs engine {value!r}"
    return worst


@pytest.fixture(scope="module")
def soffice():
    require(find_soffice() is not None, "LibreOffice (soffice) not installed: apt-get install libreoffice-calc-nogui")


def test_export_structure(tmp_path):
    path = tmp_path / "lab.xlsx"
    expected = export_workbook(path, epochs=4)
    wb = load_workbook(path)
    assert wb.sheetnames == ["Overview", "data", *SHEETS]
    unchecked = formula_cells(path) - set(expected)  # every formula has an engine value, and vice versa,
    assert set(expected) <= formula_cells(path)  # but the helper columns of the sheets since Adam
    assert unchecked and all(sheet in TEXTBOOK_ONLY and cell[0] in HELPER_COLUMNS for sheet, cell in unchecked)
    assert wb["basic"]["F1"].value == 1e-4 and wb["adam"]["D2"].value == 1.0 and wb["adam_ann"]["L1"].value == 0.95
    assert wb["basic"]["M5"].value == "=D5-L5*$F$1"  # the original's formula shape
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == len(SHEETS)


def test_libreoffice_recomputes_every_formula_cell_like_the_engine(tmp_path, soffice):
    path = tmp_path / "lab.xlsx"
    expected = export_workbook(path, epochs=10)
    got = read_values(recalculate(path, tmp_path / "out"))
    worst = assert_matches(expected, got)
    assert len(expected) > 20_000 and worst < 1e-9


def test_editing_the_lr_recomputes_every_epoch(tmp_path, soffice):
    """Type new learning rates into the workbook; LibreOffice's values equal the engine run at those lrs."""
    lrs = {"basic": 2e-4, "rmsprop": 0.01, "adam": 0.3, "adam_ann": 0.5}
    path = tmp_path / "edit.xlsx"
    export_workbook(path, epochs=6)
    wb = load_workbook(path)
    for name, lr in lrs.items():
        wb[name]["F1" if name == "basic" else "D2"] = lr
    wb.save(path)
    got = read_values(recalculate(path, tmp_path / "out"))
    expected = export_workbook(tmp_path / "ref.xlsx", epochs=6, lrs=lrs)
    assert_matches(expected, got)
    assert not math.isclose(got[("adam", "Q7")], export_workbook(tmp_path / "d.xlsx", epochs=6)[("adam", "Q7")])


def test_typed_betas_recompute_like_the_engine_with_those_betas(tmp_path, soffice):
    """The browser lab's download types the betas in before Reset: the same as editing the beta cells."""
    hypers = {"momentum": {"beta1": 0.8}, "adam": {"beta1": 0.85, "beta2": 0.99, "lr": 0.3}}
    path = tmp_path / "edit.xlsx"
    export_workbook(path, epochs=4, names=["momentum", "adam"])
    wb = load_workbook(path)
    wb["momentum"]["J1"], wb["adam"]["J1"], wb["adam"]["L1"], wb["adam"]["D2"] = 0.8, 0.85, 0.99, 0.3
    wb.save(path)
    got = read_values(recalculate(path, tmp_path / "out"))
    expected = export_workbook(tmp_path / "ref.xlsx", epochs=4, names=["momentum", "adam"], hypers=hypers)
    assert_matches(expected, got)


def test_sheets_since_adam_recompute_after_editing_their_cells(tmp_path, soffice):
    """Textbook sheets: type a new lr and betas into their header; LibreOffice equals the engine at those."""
    hypers = {"nadam": {"lr": 0.05, "beta1": 0.8}, "lion": {"lr": 0.02, "beta2": 0.95},
              "schedulefree_adamw": {"lr": 0.2, "beta2": 0.99}, "muon": {"lr": 0.02}}  # fmt: skip
    path = tmp_path / "edit.xlsx"
    export_workbook(path, epochs=3, names=TEXTBOOK_ONLY)
    wb = load_workbook(path)
    cells = {"lr": "D2", "beta1": "J1", "beta2": "L1"}
    for name, typed in hypers.items():
        for key, value in typed.items():
            wb[name][cells[key]] = value
    wb.save(path)
    got = read_values(recalculate(path, tmp_path / "out"))
    expected = export_workbook(tmp_path / "ref.xlsx", epochs=3, names=TEXTBOOK_ONLY, hypers=hypers)
    assert_matches(expected, got)
    assert got[("nadam", "H5")] != export_workbook(tmp_path / "d.xlsx", epochs=3, names=["nadam"])[("nadam", "H5")]


def test_cli_export(tmp_path, capsys):
    path = tmp_path / "g.xlsx"
    assert main(["lab", "export", str(path), "--epochs", "3"]) == 0
    assert path.exists() and "11 optimizer sheets, 3 epochs each" in capsys.readouterr().out
    assert main(["lab", "export"]) == 2


def test_export_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        export_workbook(tmp_path / "x.xlsx", epochs=0)
    with pytest.raises(ValueError, match="unknown sheet 'sgd'"):
        export_workbook(tmp_path / "x.xlsx", names=["sgd"])
