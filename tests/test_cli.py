"""The command line: listings, bad options, and clear errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lrlab.cli import main


def test_optimizers_lists_each_with_defaults(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    for text in ("sgd", "momentum", "rmsprop", "adam", "betas=(0.9, 0.999)", "alpha=0.99"):
        assert text in out


def test_console_script_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "lrlab", "optimizers"], capture_output=True, text=True)
    assert done.returncode == 0 and "Adam" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--epochs", "0"], "must be >= 1"),
        (["fit", "--lr", "-1"], "must be a finite number > 0"),
        (["fit", "--lr", "abc"], "expected a number"),
        (["fit", "--opt", "adamx"], "invalid choice"),
    ],
)
def test_bad_options_are_rejected_by_the_parser(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["fit", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "lrlab: error:" in err and "does not exist" in err


def test_unknown_scheduler_lists_valid_ones(data_dir, capsys):
    assert main(["fit", "--sched", "Nope", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "unknown scheduler 'Nope'" in err and "CosineAnnealingLR" in err and "onecycle" in err
