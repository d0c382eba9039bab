"""Fault injection through the command line, as in life: real signals to real processes, runs started at once,
a closed pipe, a file-size limit, a crafted checkpoint, and bad input that must be one line, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrlab.cli.main import main
from lrlab.train import checkpoint
from tests.conftest import REPO, require

SMALL = ["--n-train", "12288", "--n-valid", "1000", "--no-progress"]  # 48 batches an epoch


def lrlab(*args: str, data_dir: Path | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"LRLAB_DATA": str(data_dir)} if data_dir else {})}
    return subprocess.Popen([sys.executable, "-m", "lrlab", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def position(run: Path) -> tuple[int, str, int] | None:
    try:
        pos = checkpoint.position_of(checkpoint.load(run / "last.pt"))
    except ValueError:
        return None
    return pos["epoch"], pos["phase"], pos["batch"]


def stop_when(proc: subprocess.Popen, run: Path, reached, sig: int) -> tuple[int, str, int]:
    """Send `sig` once the run's last checkpoint satisfies `reached`; return where it stopped."""
    deadline = time.monotonic() + 600  # a guard against a hang, generous for a busy machine
    while time.monotonic() < deadline and proc.poll() is None:
        here = position(run)
        if here is not None and reached(here):
            proc.send_signal(sig)
            code, _, err = finish(proc)
            assert code == 128 + sig or (sig == signal.SIGKILL and code == -sig), err
            return position(run)
        time.sleep(0.01)
    raise AssertionError(f"the run never reached the point (exit {proc.poll()}): {proc.communicate()}")


def same_run(full: Path, run: Path) -> None:
    """Bit-identical weights and best model, equal metrics (all but the seconds)."""
    for name in ("last.pt", "best.pt"):
        a, b = checkpoint.load(full / name), checkpoint.load(run / name)
        assert a["position"] == b["position"]
        assert all(torch.equal(a["model"][k], v) for k, v in b["model"].items()), name
    histories = [json.loads((d / "metrics.json").read_text())["history"] for d in (full, run)]
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in history] for history in histories]
    assert untimed[0] == untimed[1]
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.slow
def test_two_interruptions_in_one_epoch_resume_exactly(sig, data_dir, tmp_path):
    options = ["--epochs", "3", "--checkpoint-every", "1", *SMALL]
    full, run = tmp_path / "full", tmp_path / "run"
    reference = lrlab("fit", *options, "--run-dir", str(full), data_dir=data_dir)
    first = stop_when(lrlab("fit", *options, "--run-dir", str(run), data_dir=data_dir), run,
                      lambda p: p[:2] == (1, "train") and p[2] >= 3, sig)  # fmt: skip
    second = stop_when(lrlab("fit", "--resume", str(run), data_dir=data_dir), run,
                       lambda p: p[:2] == (1, "train") and p[2] >= first[2] + 3, sig)  # fmt: skip
    assert first[0] == second[0] == 1 and second[2] > first[2], (first, second)
    code, out, err = finish(lrlab("fit", "--resume", str(run), data_dir=data_dir))
    assert code == 0, err
    assert finish(reference)[0] == 0
    same_run(full, run)
    assert "test accuracy" in out


@pytest.mark.slow
def test_runs_started_together_never_share_a_folder(data_dir, tmp_path):
    tiny = ["--epochs", "1", "--n-train", "1024", "--n-valid", "200", "--no-progress"]
    procs = [
        lrlab("fit", *tiny, "--seed", str(s), "--out", str(tmp_path / "runs"), data_dir=data_dir) for s in range(3)
    ]
    assert all(finish(p)[0] == 0 for p in procs)
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 3
    seeds = {json.loads((f / "metrics.json").read_text())["config"]["seed"] for f in folders}
    assert seeds == {0, 1, 2}
    for f in folders:
        assert json.loads((f / "config.json").read_text())["seed"] == json.loads((f / "metrics.json").read_text())[
            "config"]["seed"]  # fmt: skip
    same = [lrlab("fit", *tiny, "--run-dir", str(tmp_path / "one"), data_dir=data_dir) for _ in range(2)]
    results = sorted(finish(p)[:3:2] for p in same)
    assert [code for code, _ in results] == [0, 2], results
    assert "in use by another lrlab process" in results[1][1] or "already holds a run" in results[1][1]


@pytest.mark.slow
def test_a_finished_run_is_never_replaced_or_changed(data_dir, tmp_path):
    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--n-train", "1024", "--n-valid", "200", "--no-progress"]
    assert finish(lrlab("fit", *tiny, "--run-dir", str(run), data_dir=data_dir))[0] == 0
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    code, _, err = finish(lrlab("fit", *tiny, "--run-dir", str(run), data_dir=data_dir))
    assert code == 2 and "already holds a run" in err and "--overwrite" in err and "Traceback" not in err
    code, out, err = finish(lrlab("fit", "--resume", str(run), data_dir=data_dir))
    assert code == 0 and "finished already" in out, err
    code, _, err = finish(lrlab("fit", "--resume", str(run), "--epochs", "4", "--lr", "0.01", data_dir=data_dir))
    assert code == 2 and "--epochs 4 (the run has 1)" in err and "--lr 0.01" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == files
    code, _, err = finish(lrlab("fit", *tiny, "--seed", "5", "--run-dir", str(run), "--overwrite", data_dir=data_dir))
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["config"]["seed"] == 5


def test_a_closed_stdout_does_not_stop_training(data_dir, tmp_path):
    run = tmp_path / "run"
    proc = lrlab("fit", "--epochs", "3", "--n-train", "2048", "--n-valid", "500", "--no-progress",
                 "--run-dir", str(run), data_dir=data_dir)  # fmt: skip
    lines = [proc.stdout.readline() for _ in range(3)]  # as `lrlab fit | head -3` does
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert lines[0].startswith("lesson CNN") and "standard output was closed" in err
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3


def test_a_crafted_last_pt_runs_no_code_on_resume(data_dir, tmp_path):
    marker, run = tmp_path / "pwned", tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"epochs": 1}))

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"version": 1, "model": Payload()}, run / "last.pt")
    code, _, err = finish(lrlab("fit", "--resume", str(run), data_dir=data_dir))
    assert code == 2 and "refused to load it" in err and "Traceback" not in err, err
    assert not marker.exists()


@contextlib.contextmanager
def small_disk(folder: Path, kib: int):
    """A real file system of `kib` KiB mounted at folder (tmpfs): writing past it fails with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    require(mounted.returncode == 0, f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_resumes_exactly(data_dir, tmp_path):
    options = ["--epochs", "2", "--n-train", "2048", "--n-valid", "500", "--no-progress"]
    full, copy = tmp_path / "full", tmp_path / "copy"
    assert finish(lrlab("fit", *options, "--run-dir", str(full), data_dir=data_dir))[0] == 0
    with small_disk(tmp_path / "disk", 1000) as disk:  # room for epoch 1's best.pt and last.pt, not epoch 2's
        run = disk / "run"
        code, _, err = finish(lrlab("fit", *options, "--run-dir", str(run), data_dir=data_dir))
        assert code == 1 and "No space left on device" in err and "Traceback" not in err, err
        assert "the last good checkpoint is" in err and "(start of epoch 2)" in err
        assert position(run) == (1, "train", 0)
        assert not list(run.glob(".*.tmp"))
        copy.mkdir()
        for name in ("config.json", "last.pt", "best.pt"):  # space freed: the run moves to a bigger disk
            (copy / name).write_bytes((run / name).read_bytes())
    code, _, err = finish(lrlab("fit", "--resume", str(copy), data_dir=data_dir))
    assert code == 0, err
    same_run(full, copy)


@pytest.mark.slow
def test_lab_export_keeps_the_previous_workbook_on_a_full_disk_or_ctrl_c(tmp_path):
    with small_disk(tmp_path / "disk", 1000) as disk:
        book = disk / "graddesc.xlsx"
        assert finish(lrlab("lab", "export", str(book)))[0] == 0  # 10 epochs of 11 sheets: about 500 KB
        good = book.read_bytes()
        code, _, err = finish(lrlab("lab", "export", str(book), "--epochs", "60"))  # about 2.5 MB: no room
        assert code == 1 and "No space left on device" in err and "Traceback" not in err, err
        assert book.read_bytes() == good and not list(disk.glob(".*.tmp"))
        # Ctrl-C inside the export: its moment is found from an uninterrupted export timed on this machine now
        # (busy or not), and tried again earlier or later if it fell before start-up ended or after the end
        start = time.monotonic()
        assert finish(lrlab("lab", "export", str(tmp_path / "timed.xlsx"), "--epochs", "100"))[0] == 0
        whole = time.monotonic() - start
        codes = []
        for fraction in (0.5, 0.7, 0.3, 0.85):
            proc = lrlab("lab", "export", str(book), "--epochs", "100")
            time.sleep(whole * fraction)
            proc.send_signal(signal.SIGINT)
            code, _, err = finish(proc)
            codes.append(code)
            assert book.read_bytes() == good and not list(disk.glob(".*.tmp"))  # whatever the moment
            if code == 130:
                assert "interrupted" in err and "Traceback" not in err, err
                break
        assert codes[-1] == 130, f"no Ctrl-C landed inside the export (exit codes {codes}, export {whole:.1f} s)"


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0])
def test_ctrl_c_while_torch_and_the_data_load_is_one_line(delay, data_dir, tmp_path):
    """The first seconds of every command import torch and read the data: a Ctrl-C there stops in one line."""
    proc = lrlab("fit", "--epochs", "1", *SMALL, "--run-dir", str(tmp_path / "run"), data_dir=data_dir)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


BAD_INPUT = {
    "opt-arg": (["fit", "--opt-arg", "foo=1"], "--opt-arg foo=1"),
    "sched-arg": (["fit", "--sched-arg", "foo=1"], "--sched-arg foo=1"),
    "no-cuda": (["fit", "--device", "cuda"], "no CUDA device"),
    "bad-device": (["fit", "--device", "gpu0"], "--device 'gpu0' is not a device"),
    "uneven-nproc": (["fit", "--nproc", "3"], "--bs 256 must divide evenly over 3 processes"),
    "tiny-nproc": (["fit", "--nproc", "2", "--n-train", "100"], "--n-train 100 cannot fill one batch"),
    "threads": (["fit", "--threads", "100000"], "--threads 100000"),
    "stray-file": (["lab", "basic", "stray.csv"], "takes no file argument"),
    "export-epochs": (["lab", "export", "x.xlsx", "--epochs", "100000"], "epochs must be an integer from 1 to 100"),
    "lab-loop": (["lab", "basic", "--epochs", "1000000", "--runs", "3"], "at most 1,000,000 epochs"),
    "repeated-config": (["compare", "--configs", "onecycle,onecycle"], "named more than once"),
    "resume-nothing": (["fit", "--resume", "no/such/run"], "not a run folder"),
    "endless-data": (["lab", "basic", "--data", "/dev/zero"], "the CSV /dev/zero is over 16 MB"),
    # found by the CLI fuzz test (tests/test_cli_fuzz.py), kept as plain examples
    "sched-lr-key": (["sched-plot", "onecycle", "--opt", "lr=0"], "OneCycleLR takes no 'lr'; its arguments: max_lr"),
    "constant-args": (["sched-plot", "constant", "--opt", "lr=0"], "constant holds the lr and takes no arguments"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_nothing_is_made(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, message = BAD_INPUT[name]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lrlab: error: "), err
    assert list(tmp_path.iterdir()) == []  # no run folder, no file


@pytest.mark.parametrize(
    "command, rows, message",
    [
        (["lab", "export", "book.xlsx", "--epochs", "2"], "1,1e200\n2,-1e200\n3,1e200",
         "basic: the displayed epoch overflows at data row 1 (x=1, y=1e+200)"),
        (["lab", "compare"], "1e300,1\n2,5\n3,1e300", "the data's values are too large for the best line"),
        (["lab", "basic"], "1," + "9" * 200_000, "data.csv, line 2: not CSV (field larger than field limit"),
        (["lab", "basic"], "\x00" * 5000, "data.csv, line 2: expected two numbers x,y, got '\\x00"),
    ],
    ids=["export-overflow", "compare-overflow", "huge-field", "nul-bytes"],
)  # fmt: skip
def test_lab_data_that_overflows_or_is_not_csv_is_one_line(command, rows, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x,y\n" + rows + "\n")
    assert main([*command, "--data", "data.csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrlab: error: ") and message in err and err.count("\n") == 1 and len(err) < 400, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_lab_compare_where_every_sheet_overflows_still_draws_its_pictures(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x,y\n1,1e200\n2,-1e200\n3,1e200\n")
    assert main(["lab", "compare", "--data", "data.csv", "--cap", "50"]) == 0
    assert "not within 50" in capsys.readouterr().out
    assert (tmp_path / "runs" / "lab" / "compare.png").stat().st_size > 5000


PARSER_BOUNDS = {
    "label-smoothing": ["fit", "--label-smoothing", "nan"],
    "negative-smoothing": ["fit", "--label-smoothing", "-1"],
    "sched-steps": ["sched-plot", "cosine", "--steps", "100000000"],
    "compare-cap": ["lab", "compare", "--cap", "1000000000"],
    "compare-seeds": ["compare", "--seeds", "100000000000"],  # found by the fuzz test: a MemoryError before
    "bench-seeds": ["bench", "--seeds", "100000000000"],
}


@pytest.mark.parametrize("name", sorted(PARSER_BOUNDS))
def test_out_of_range_options_are_refused_by_the_parser_in_one_line(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(PARSER_BOUNDS[name])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "error: argument" in err, err


def test_lab_csv_from_excel_extra_columns_and_the_best_line(tmp_path, capsys):
    from lrlab.lab import compare

    excel = tmp_path / "excel.csv"
    excel.write_bytes("\ufeffx,y\r\n1,8\r\n2,11\r\n5,20\r\n9,32\r\n".encode())  # y = 3x + 5, with Excel's BOM
    assert main(["lab", "adam", "--data", str(excel), "--out", str(tmp_path)]) == 0
    wide = tmp_path / "wide.csv"
    wide.write_text("x,y,z\n1,2,3\n4,5,6\n")
    assert main(["lab", "basic", "--data", str(wide), "--out", str(tmp_path)]) == 2
    assert "wide.csv, line 2: expected two numbers x,y, got '1,2,3'" in capsys.readouterr().err
    [result] = compare(["adam"], cap=20_000, data=excel, textbook=True)
    assert result["target"] == pytest.approx((3.0, 5.0))
    assert result["epochs"] is not None and abs(result["a"] - 3) < 0.01 and abs(result["b"] - 5) < 0.1


def test_sched_plot_into_a_folder_says_the_file_it_wrote(tmp_path, capsys):
    assert main(["sched-plot", "cosine", "--out", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / 'cosine.png'}" in capsys.readouterr().out
    assert (tmp_path / "cosine.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["sched-plot", "cosine", "--out", str(tmp_path / "plain")]) == 0
    assert f"wrote {tmp_path / 'plain.png'}" in capsys.readouterr().out and (tmp_path / "plain.png").exists()


def test_ctrl_c_in_compare_keeps_the_finished_runs(data_dir, tmp_path):
    out = tmp_path / "cmp"
    proc = lrlab("compare", "--configs", "constant,cosine,plateau", "--seeds", "2", "--epochs", "1", "--n-train",
                 "2048", "--n-valid", "500", "--out", str(out), data_dir=data_dir)  # fmt: skip
    seen = []
    while not any(line.startswith("[2/6]") for line in seen):
        line = proc.stdout.readline()
        assert line, f"compare ended early: {proc.communicate()}"
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    code, rest, err = finish(proc)
    assert code == 130 and "reporting the" in err and "Traceback" not in err, err
    results = json.loads((out / "report-results.json").read_text())
    assert len(results) >= 2 and [r["config"] for r in results[:2]] == ["constant", "constant"]
    assert "interrupted" in (out / "report.md").read_text()
