"""Interruption drill: train once without a break, then again stopped N times at random moments by random
signals (SIGINT, SIGTERM, SIGKILL) and resumed each time; the two must end bit-identical, metrics included.

Run: .venv/bin/python benchmarks/interrupt_drill.py [--stops 5] [--seed 0] [--nproc 1] [--keep DIR]
Options after `--` go to both `lrlab fit` runs (default: 3 epochs on 12,288 images, a checkpoint every batch).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lrlab.train import checkpoint

DEFAULT_FIT = ["--epochs", "3", "--n-train", "12288", "--n-valid", "1000", "--checkpoint-every", "1"]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def lrlab_fit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lrlab", "fit", "--no-progress", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def position(run: Path) -> dict | None:
    try:
        return checkpoint.position_of(checkpoint.load(run / "last.pt"))
    except ValueError:
        return None


def describe(pos: dict | None) -> str:
    return "no checkpoint yet" if pos is None else f"epoch {pos['epoch'] + 1} {pos['phase']} batch {pos['batch']}"


def batches_per_epoch(config: dict) -> int:
    n = min(config.get("n_train") or 60_000, 60_000)
    return n // config["bs"] if config.get("nproc", 1) > 1 else -(-n // config["bs"])


def interrupted_run(run: Path, fit: list[str], targets: list[int], per_epoch: int, rng: random.Random) -> list[str]:
    """Stop the run by a random signal once its checkpoint passes each target batch (counted over the whole
    run; validation counts as the epoch's end), resume it each time, then let it finish."""
    log = []
    proc = lrlab_fit(*fit, "--run-dir", str(run))
    for i, target in enumerate(targets, start=1):
        while proc.poll() is None:
            pos = position(run)
            done = (
                None
                if pos is None
                else pos["epoch"] * per_epoch + (per_epoch if pos["phase"] == "valid" else pos["batch"])
            )
            if done is not None and done >= target:
                break
            time.sleep(0.005)
        if proc.poll() is not None:
            log.append(f"stop {i}: the run had already ended (exit {proc.returncode})")
            break
        sig = rng.choice(SIGNALS)
        proc.send_signal(sig)
        proc.communicate(timeout=600)
        log.append(
            f"stop {i}: {sig.name} past batch {target} -> exit {proc.returncode}, last.pt at {describe(position(run))}"
        )
        proc = lrlab_fit("--resume", str(run))
    _, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"the last resume failed (exit {proc.returncode}):\n{err}")
    return log


def compare(full: Path, run: Path) -> list[str]:
    """What differs between the two runs (empty: bit-identical weights, best model and metrics)."""
    problems = []
    for name in ("last.pt", "best.pt"):
        a, b = checkpoint.load(full / name), checkpoint.load(run / name)
        if a["position"] != b["position"] or any(not torch.equal(a["model"][k], v) for k, v in b["model"].items()):
            problems.append(f"{name} differs")
    histories = [json.loads((d / "metrics.json").read_text())["history"] for d in (full, run)]
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in histories]
    if untimed[0] != untimed[1]:
        problems.append("metrics.json history differs")
    if list(run.glob(".*.tmp")):
        problems.append("temporary files left behind")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seeds the moments and signals of the stops")
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--keep", default=None, help="keep both run folders here")
    args, extra = parser.parse_known_args()
    fit = (extra[1:] if extra[:1] == ["--"] else extra) or DEFAULT_FIT
    fit = [*fit, "--nproc", str(args.nproc)]
    folder = Path(args.keep or tempfile.mkdtemp(prefix="lrlab-drill-"))
    full, run = folder / "uninterrupted", folder / "interrupted"
    start = time.perf_counter()
    proc = lrlab_fit(*fit, "--run-dir", str(full))
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{err}")
    seconds = time.perf_counter() - start
    print(f"uninterrupted: {seconds:.1f} s ({' '.join(fit)})")
    per_epoch = batches_per_epoch(json.loads((full / "config.json").read_text()))
    total = per_epoch * json.loads((full / "config.json").read_text())["epochs"]
    rng = random.Random(args.seed)
    targets = sorted(rng.sample(range(1, total), min(args.stops, total - 1)))
    for line in interrupted_run(run, fit, targets, per_epoch, rng):
        print(line)
    problems = compare(full, run)
    print("result: " + ("bit-identical (weights, best.pt, metrics)" if not problems else "; ".join(problems)))
    print(f"run folders in {folder}")
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
