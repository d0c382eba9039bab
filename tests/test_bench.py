"""lrlab bench: the performance profile against values computed by hand, fair entrants, result files that
survive a kill, shards that split the grid, and a report whose numbers are the files'."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrlab.apps.bench import (
    BenchConfig,
    baseline_configs,
    grid,
    load_runs,
    parse_config,
    parse_shard,
    run_bench,
    run_one,
    shard_of,
    steps_to_target,
    wsd_lambda,
)
from lrlab.apps.bench_report import (
    complete_workloads,
    entrants,
    mean_curve,
    profile,
    profile_score,
    ratios,
    write_report,
)
from lrlab.data.workloads import get_workload

INF = math.inf


def test_performance_profile_on_a_tiny_grid_matches_the_hand_computation():
    # steps to target of three entrants on two workloads; C never reaches w1's target
    times = {"A": {"w1": 100, "w2": 300}, "B": {"w1": 200, "w2": 100}, "C": {"w1": INF, "w2": 150}}
    r = ratios(times)
    assert r == {"A": {"w1": 1.0, "w2": 3.0}, "B": {"w1": 2.0, "w2": 1.0}, "C": {"w1": INF, "w2": 1.5}}
    assert [profile(r["A"], tau) for tau in (1.0, 2.0, 3.0)] == [0.5, 0.5, 1.0]
    assert [profile(r["C"], tau) for tau in (1.0, 1.5, 4.0)] == [0.0, 0.5, 0.5]
    # area under rho over [1, 4] / 3: A: ((4-1) + (4-3)) / 2 / 3; B: ((4-2) + (4-1)) / 6; C: (4-1.5) / 6
    assert profile_score(r["A"]) == pytest.approx(4 / 6)
    assert profile_score(r["B"]) == pytest.approx(5 / 6)
    assert profile_score(r["C"]) == pytest.approx(2.5 / 6)


def fake_run(workload: str, config: str, seed: int, final: float, steps: float) -> dict:
    return {"workload": workload, "config": config, "seed": seed, "final": final, "diverged": False,
            "steps_to_target": steps, "wall": 1.0, "history": [], "metric": "mse"}  # fmt: skip


def test_entrants_tune_schedules_per_workload_and_calibrate_lr_free_methods_once():
    runs = [
        # constant: 1e-3 is best on linear, 1e-2 on regression (lower MSE is better on both)
        fake_run("linear", "constant@1e-3", 0, 0.02, 100), fake_run("linear", "constant@1e-2", 0, 0.05, 50),
        fake_run("regression", "constant@1e-3", 0, 0.09, 400), fake_run("regression", "constant@1e-2", 0, 0.06, 200),
        # schedulefree: 5e-3 is fastest on both workloads, so it is the one calibrated setting
        fake_run("linear", "schedulefree@2.5e-3", 0, 0.03, 300), fake_run("linear", "schedulefree@5e-3", 0, 0.03, 90),
        fake_run("regression", "schedulefree@2.5e-3", 0, 0.07, 500),
        fake_run("regression", "schedulefree@5e-3", 0, 0.08, 250),
    ]  # fmt: skip
    by_final, chosen = entrants(runs, by="final"), entrants(runs)
    assert by_final["constant (tuned)"] == {"linear": "constant@1e-3", "regression": "constant@1e-2"}
    assert chosen["constant (tuned)"] == {"linear": "constant@1e-2", "regression": "constant@1e-2"}  # fewest steps
    assert chosen["schedulefree (default)"] == {"linear": "schedulefree@2.5e-3", "regression": "schedulefree@2.5e-3"}
    assert chosen["schedulefree (calibrated)"] == {"linear": "schedulefree@5e-3", "regression": "schedulefree@5e-3"}


def test_configs_and_shards_are_checked_and_split_the_grid_exactly():
    assert parse_config("onecycle@find").family == "onecycle" and BenchConfig("wsd@3e-3").setting == "3e-3"
    for bad in ("adam", "nosuch@1e-3", "constant@-1", "constant@fast", "prodigy@find"):
        with pytest.raises(ValueError, match="config must be|setting of"):
            parse_config(bad)
    for bad in ("0/3", "4/3", "a/b", "2"):
        with pytest.raises(ValueError, match="--shard must be i/n"):
            parse_shard(bad)
    jobs = grid(["linear", "regression"], baseline_configs(), 3)
    shards = [shard_of(jobs, (i, 4)) for i in range(1, 5)]
    assert sorted(j for s in shards for j in s) == sorted(jobs) and len(set(jobs)) == len(jobs)
    assert all(abs(len(s) - len(jobs) / 4) < 1 for s in shards)


def test_wsd_warms_holds_and_decays():
    f = wsd_lambda(100)
    assert [f(0), f(4), f(5), f(79), f(80), f(90), f(99)] == pytest.approx([0.2, 1.0, 1.0, 1.0, 1.0, 0.5, 0.05])


def test_a_rerun_skips_finished_runs_and_shards_merge(tmp_path):
    calls = []

    def runner(workload, config, seed, epochs):
        calls.append((workload.name, config.name, seed))
        return fake_run(workload.name, config.name, seed, 0.01 * (seed + 1), 10.0 * (seed + 1))

    args = (["linear", "regression"], ["constant@1e-3", "wsd@1e-3"], 2)
    for i in (1, 2):
        run_bench(tmp_path, *args, shard=(i, 2), runner=runner, log=lambda s: None)
    assert len(calls) == 8 and len(set(calls)) == 8
    run_bench(tmp_path, *args, runner=runner, log=lambda s: None)  # everything done: nothing runs again
    assert len(calls) == 8 and len(load_runs(tmp_path)) == 8


def test_a_result_cut_short_is_named_by_the_report_and_redone_by_a_rerun(tmp_path):
    """A copy from a cluster cut short leaves half a file: the report names it, a rerun redoes that run only."""
    calls = []

    def runner(workload, config, seed, epochs):
        calls.append((workload.name, config.name, seed))
        return fake_run(workload.name, config.name, seed, 0.01 * (seed + 1), 10.0)

    args = (["linear"], ["constant@1e-3"], 2)
    run_bench(tmp_path, *args, runner=runner, log=lambda s: None)
    cut = tmp_path / "runs" / "linear" / "constant@1e-3" / "seed1.json"
    whole = cut.read_text()
    cut.write_text(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=f"^{re.escape(str(cut))} is not a whole bench result: delete it, or"):
        load_runs(tmp_path)
    lines = []
    run_bench(tmp_path, *args, runner=runner, log=lines.append)
    assert calls[2:] == [("linear", "constant@1e-3", 1)] and f"{cut} is not a whole result" in "\n".join(lines)
    assert cut.read_text() == whole and len(load_runs(tmp_path)) == 2


def bench_cli(out, *extra):
    return [sys.executable, "-m", "lrlab", "bench", "--workloads", "linear,regression", "--configs",
            "constant@1e-3,constant@3e-3,wsd@3e-3,schedulefree@2.5e-3,schedulefree@5e-3", "--seeds", "2",
            "--epochs", "3", "--out", str(out), *extra]  # fmt: skip


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["serial", "jobs2"])
@pytest.mark.slow
def test_killed_midway_the_rerun_finishes_without_redoing_runs_and_the_report_is_the_files(jobs, tmp_path):
    proc = subprocess.Popen(bench_cli(tmp_path, *jobs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("runs/*/*/seed*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*/seed*.json")}
    assert 3 <= len(finished) < 20, "the kill came too late to test a rerun"
    assert not list(tmp_path.glob("runs/**/*.tmp*"))
    done = subprocess.run(bench_cli(tmp_path, *jobs), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"20 runs in this shard, {len(finished)} already done" in done.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # not redone
    runs = load_runs(tmp_path)
    assert len(runs) == 20
    report = (tmp_path / "report.md").read_text()
    for workload, config in (("linear", "constant@3e-3"), ("regression", "schedulefree@5e-3")):
        finals = [r["final"] for r in runs if r["workload"] == workload and r["config"] == config]
        mean = sum(finals) / len(finals)
        row = next(line for line in report.split(f"### {workload}")[1].splitlines() if line.startswith(f"| {config} |"))
        assert row.split("|")[2].strip().startswith(f"{mean:.4f} ±"), row
    assert "## Performance profile" in report and "schedulefree (calibrated)" in report
    assert "counted at evaluations every k steps on a fixed validation subset, at least 25 a run;" in report
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html and "http" not in html.split("<body>")[1]
    # the runs committed as compact JSON rebuild the same report, with no training
    script, saved = [sys.executable, "benchmarks/suite_report.py"], tmp_path / "suite-runs.json"
    first = subprocess.run([*script, str(tmp_path), "--out", str(tmp_path / "a"), "--save-json", str(saved)],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    again = subprocess.run([*script, str(saved), "--out", str(tmp_path / "b")], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "lrs" not in json.loads(saved.read_text())["runs"][0]
    assert (tmp_path / "a" / "suite.md").read_text() == (tmp_path / "b" / "suite.md").read_text()


def test_bench_refuses_bad_input_in_one_line(tmp_path):
    for extra, message in ((["--workloads", "nosuch"], "unknown workload 'nosuch'"),
                           (["--shard", "3/2"], "--shard must be i/n"),
                           (["--executor", "ray", "--jobs", "2"], "--jobs 2 is for --executor local"),
                           (["--jobs", "0"], "argument --jobs: must be")):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "lrlab", "bench", "--out", str(tmp_path), *extra],
                              capture_output=True, text=True, timeout=120, env={**os.environ})  # fmt: skip
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_report_of_nothing_says_so(tmp_path):
    with pytest.raises(ValueError, match="no result files to report"):
        write_report([], tmp_path)
    assert json.loads(json.dumps(load_runs(tmp_path))) == []


def test_only_workloads_every_config_ran_on_enter_the_profile():
    runs = [fake_run("linear", c, s, 0.03, 100) for c in ("constant@1e-3", "wsd@1e-3") for s in (0, 1)]
    runs += [fake_run("regression", "constant@1e-3", 0, 0.05, 100)]
    assert complete_workloads(runs) == (["linear"], ["regression (1 of 2 configs)"])


def _same_run(record: dict) -> dict:
    """A run's record without its timings (wall-clock differs between any two runs)."""
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in record["history"]]
    evals = [{k: v for k, v in row.items() if k != "seconds"} for row in record["evals"]]
    timings = ("wall", "seconds_to_target")
    return {**{k: v for k, v in record.items() if k not in timings}, "history": history, "evals": evals}


@pytest.mark.slow
def test_jobs_2_gives_each_run_the_result_it_has_alone_at_the_same_thread_count(tmp_path):
    args = (["linear", "regression"], ["constant@1e-3", "wsd@3e-3"], 2)
    threads = torch.get_num_threads()
    serial = run_bench(tmp_path / "serial", *args, epochs=2, log=lambda s: None, threads=1)
    lines = []
    parallel = run_bench(tmp_path / "jobs2", *args, epochs=2, log=lines.append, jobs=2, threads=1)
    assert len(serial) == len(parallel) == 8 and lines[0] == "8 runs in this shard, 0 already done"
    assert sorted(line.split("]")[0] for line in lines[1:]) == sorted(f"[{k}/8" for k in range(1, 9))
    for one, two in zip(serial, parallel):
        assert _same_run(json.loads(one.read_text())) == _same_run(json.loads(two.read_text())), one
    assert torch.get_num_threads() == threads  # the serial run's threads were this process's for its runs only
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        run_bench(tmp_path, *args, jobs=0)


def _ray_workers_running_a_run() -> list[int]:
    """PIDs of Ray workers executing one of the bench's runs (Ray titles a busy worker ray::TASK)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ray::_ray_job" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_grid_on_local_ray_survives_a_killed_worker_and_its_rerun_equals_the_serial_grid(tmp_path):
    def cli(out, *extra):
        return [sys.executable, "-m", "lrlab", "bench", "--workloads", "linear,regression", "--configs",
                "constant@1e-3,wsd@3e-3", "--seeds", "2", "--epochs", "8", "--threads", "1", "--out", str(out),
                *extra]  # fmt: skip

    serial = subprocess.run(cli(tmp_path / "serial"), capture_output=True, text=True, timeout=600)
    assert serial.returncode == 0, serial.stderr
    proc = subprocess.Popen(cli(tmp_path / "ray", "--executor", "ray"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed, deadline = None, time.monotonic() + 300
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        for pid in _ray_workers_running_a_run():
            os.kill(pid, signal.SIGKILL)  # a worker dies mid-run, for real
            killed = pid
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "no Ray worker was seen running a run"
    assert proc.returncode == 1 and "have no result (their workers died): run the same command again" in err, err
    finished = list((tmp_path / "ray").glob("runs/*/*/seed*.json"))
    assert len(finished) < 8 and not list((tmp_path / "ray").glob("runs/**/*.tmp*"))
    rerun = subprocess.run(cli(tmp_path / "ray", "--executor", "ray"), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"8 runs in this shard, {len(finished)} already done" in rerun.stdout
    for one in sorted((tmp_path / "serial").glob("runs/*/*/seed*.json")):
        two = tmp_path / "ray" / one.relative_to(tmp_path / "serial")
        assert _same_run(json.loads(one.read_text())) == _same_run(json.loads(two.read_text())), one


def test_a_run_is_evaluated_at_least_20_times_and_steps_to_target_have_step_resolution():
    workload = get_workload("linear")  # 50 steps an epoch: epoch ends alone could say only 50, 100, 150...
    record = run_one(workload, parse_config("constant@3e-2"), seed=0, epochs=5)
    evals = record["evals"]
    assert len(evals) >= 20 and [row["step"] for row in evals] == list(range(10, 251, 10))
    first = next(row["step"] for row in evals if row["valid_loss"] <= workload.target)
    assert record["steps_to_target"] == first and first % 50 != 0, evals[:5]
    assert evals[-1]["valid_loss"] == pytest.approx(record["final"], rel=1e-5)  # the last: the whole valid set
    xs, ys = mean_curve(workload, [record, record])
    assert xs == [row["step"] for row in evals] and ys == [row["valid_loss"] for row in evals]
    seconds = [row["seconds"] for row in evals]
    assert seconds == sorted(seconds) and record["seconds_to_target"] <= record["wall"]


def test_steps_to_target_read_from_step_evaluations_or_else_epoch_ends():
    workload = get_workload("linear")  # target: mse <= 0.05
    history = [{"epoch": 0, "valid_loss": 0.2, "seconds": 1.0}, {"epoch": 1, "valid_loss": 0.04, "seconds": 1.0}]
    assert steps_to_target(workload, history, 50) == (100.0, 2.0)
    evals = [{"step": 10, "valid_loss": 0.3, "seconds": 0.2}, {"step": 20, "valid_loss": 0.049, "seconds": 0.4}]
    assert steps_to_target(workload, history, 50, evals) == (20.0, 0.4)
    assert steps_to_target(workload, history, 50, evals[:1]) == (INF, INF)
