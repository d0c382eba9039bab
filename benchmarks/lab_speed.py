"""The optimizer lab's speed: 10,000 epochs of the basic sheet (goal: under 0.2 s), and µs per epoch per sheet.

Run: .venv/bin/python benchmarks/lab_speed.py
"""

from __future__ import annotations

import statistics
import time

from lrlab.lab import SHEETS, Sheet


def timed_run(name: str, epochs: int) -> float:
    sheet = Sheet(name, lr=1e-4 if name in ("basic", "momentum") else None)
    start = time.perf_counter()
    sheet.run(epochs)
    return time.perf_counter() - start


def main() -> None:
    runs = [timed_run("basic", 10_000) for _ in range(5)]
    best, med = min(runs), statistics.median(runs)
    verdict = "meets" if med < 0.2 else "MISSES"
    print(f"basic sheet, 10,000 epochs: median {med:.3f} s, best {best:.3f} s ({verdict} the 0.2 s goal)")
    for name in SHEETS:
        t = statistics.median(timed_run(name, 1000) for _ in range(3))
        print(f"{name:<9} {t / 1000 * 1e6:6.1f} µs per epoch (29 rows, rmse included)")


if __name__ == "__main__":
    main()
