"""The teaching notebooks run headless top to bottom (reduced settings), and the lab's buttons work."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lrlab.lab import Sheet
from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_six_notebooks_with_outputs_stripped():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in book.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs(path: Path, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LRLAB_FAST", "1")
    monkeypatch.setenv("LRLAB_DATA", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert list((tmp_path / "out").glob("*.png")), "each notebook saves its pictures"
    assert os.environ["LRLAB_FAST"] == "1"


def test_widget_buttons_equal_reset_and_runs():
    widget = Sheet("adam_ann").widget()
    widget.on_reset()
    widget.on_run()
    widget.on_run()
    direct = Sheet("adam_ann").reset().run().run()
    assert (widget.sheet.a, widget.sheet.b, widget.sheet.lr) == (direct.a, direct.b, direct.lr)
    assert widget.sheet.state == direct.state and widget.sheet.history == direct.history
    assert widget.lr_box.value == direct.lr  # the annealer's lr is shown
    widget.lr_box.value = 0.5
    assert widget.sheet.lr == 0.5
    widget.lr_box.value = -1.0
    assert widget.sheet.lr == 0.5 and "learning rate" in widget.message.value
