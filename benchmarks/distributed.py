"""One process against two (gloo, CPU) with the same global batch and seed: accuracy after 3 epochs of the
lesson CNN (goal: within 0.5 points) and wall time.

Run: .venv/bin/python benchmarks/distributed.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(nproc: int, epochs: int, folder: Path) -> tuple[float, float]:
    run_dir = folder / f"nproc{nproc}"
    cmd = [sys.executable, "-m", "lrlab", "fit", "--epochs", str(epochs), "--nproc", str(nproc), "--no-progress",
           "--run-dir", str(run_dir)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return json.loads((run_dir / "metrics.json").read_text())["test_accuracy"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run(n, args.epochs, Path(tmp)) for n in (1, 2)}
    (acc1, wall1), (acc2, wall2) = results[1], results[2]
    print(f"lesson CNN, {args.epochs} epochs, global batch 256, seed 0 (wall time includes start-up)")
    print(f"1 process  x 2 threads: test accuracy {acc1:.4f}, {wall1:.1f} s")
    print(f"2 processes x 1 thread: test accuracy {acc2:.4f}, {wall2:.1f} s")
    print(f"difference {100 * (acc2 - acc1):+.2f} points (goal: within 0.5); 2 processes take {wall2 / wall1:.2f}x")


if __name__ == "__main__":
    main()
