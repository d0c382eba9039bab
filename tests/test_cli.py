"""The command line: listings, bad options, and clear errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lrlab.cli.main import main


def test_optimizers_lists_each_with_defaults(capsys):
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    for text in ("sgd", "momentum", "rmsprop", "adam", "nadam", "radam", "lion", "betas=(0.9, 0.999)", "alpha=0.99"):
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


def test_schedulers_lists_signatures(capsys):
    assert main(["schedulers"]) == 0
    out = capsys.readouterr().out
    assert "OneCycleLR(optimizer" in out and "ReduceLROnPlateau(" in out


def test_sched_plot_writes_png(tmp_path, capsys):
    out = tmp_path / "cos.png"
    assert main(["sched-plot", "CosineAnnealingLR", "--steps", "120", "--opt", "T_max=100", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and "120 steps" in capsys.readouterr().out
    assert main(["sched-plot", "onecycle", "--steps", "50", "--out", str(tmp_path / "oc.png")]) == 0
    assert "momentum 0.85..0.95" in capsys.readouterr().out


def test_sched_plot_past_one_cycle_end_is_clear(tmp_path, capsys):
    code = main(
        ["sched-plot", "OneCycleLR", "--steps", "20", "--opt", "total_steps=10", "--out", str(tmp_path / "x.png")]
    )
    assert code == 2 and "OneCycleLR" in capsys.readouterr().err


def test_lr_find_cli(data_dir, tmp_path, capsys):
    out = tmp_path / "find.png"
    assert main(["lr-find", "--n-train", "12800", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "suggested one-cycle peak lr" in text and out.exists()


@pytest.mark.parametrize(
    "argv, said",
    [
        (["StepLR"], "sched-plot StepLR with --opt (none): StepLR needs step_size: give step_size=VALUE"),
        (["StepLR", "--opt", "step_size=0"], "StepLR(step_size=0) fails: ZeroDivisionError: integer modulo by zero"),
        (["cosine", "--opt", "T_max=0"], "CosineAnnealingLR(T_max=0) fails: ZeroDivisionError"),
        (["cosine", "--opt", "foo=1"], "CosineAnnealingLR takes no 'foo'; its arguments: T_max, eta_min, last_epoch"),
        (["cosine", "--opt", "T_max=abc"], "CosineAnnealingLR(T_max='abc') fails: TypeError"),
        (["CyclicLR"], "CyclicLR needs base_lr, max_lr: give base_lr=VALUE"),
        (["SequentialLR"], "SequentialLR needs schedulers (a list of built schedulers), which K=V text cannot give"),
        (["ChainedScheduler"], "ChainedScheduler needs schedulers"),
        (["LambdaLR"], "LambdaLR needs lr_lambda (a function)"),
    ],
)
def test_sched_plot_of_a_scheduler_it_cannot_build_is_one_line(argv, said, tmp_path, capsys):
    assert main(["sched-plot", *argv, "--steps", "10", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and said in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_one_cycle_takes_a_max_lr_given_as_an_argument(tmp_path, capsys):
    out = tmp_path / "oc.png"
    assert main(["sched-plot", "onecycle", "--steps", "50", "--opt", "max_lr=0.01", "--out", str(out)]) == 0
    assert "max 0.01," in capsys.readouterr().out and out.exists()  # a partial TypeError before


@pytest.mark.parametrize(
    "args, said",
    [
        (["--sched", "StepLR", "--sched-arg", "step_size=0"], "StepLR(step_size=0) fails: ZeroDivisionError"),
        (["--sched", "onecycle", "--sched-arg", "foo=2"], "OneCycleLR takes no 'foo'"),
        (["--sched", "LambdaLR"], "LambdaLR needs lr_lambda (a function)"),
    ],
)
def test_fit_refuses_a_schedule_that_fails_when_stepped_before_any_data_or_folder(args, said, tmp_path, capsys):
    assert main(["fit", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lrlab: error: --sched {args[1]} with --sched-arg") and said in err, err
    assert err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_one_version_from_one_place():
    import importlib.metadata
    import subprocess
    import sys

    import lrlab

    assert importlib.metadata.version("lrlab") == lrlab.__version__
    done = subprocess.run([sys.executable, "-m", "lrlab", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"lrlab {lrlab.__version__}"
