"""The README's "In your own training loop" examples run as they are shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script, expected",
    [
        ("plain_loop.py", ["lr_find: suggestion", "epoch 5: lr", "annealer: 12 checks", "recorded 120 steps"]),
        ("lightning_loop.py", ["lr_find_module: suggestion", "one-cycle: valid accuracy", "annealer: valid accuracy"]),
        ("autolr_loop.py", ["epoch 1: lr", "epoch 5: lr 0, valid accuracy", "AutoLR: searched from 0.0001 for"]),
    ],
)
def test_example_runs_and_prints_its_results(script, expected, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(line in done.stdout for line in expected), done.stdout
    assert list(tmp_path.glob("*.png")) and not done.stderr.strip(), done.stderr[-2000:]
