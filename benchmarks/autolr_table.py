"""The annealer issue's table from a `lrlab bench` folder: AutoLR against tuned one-cycle on every workload.

Run: .venv/bin/python benchmarks/autolr_table.py runs/suite [--configs autolr_budget@1e-3,autolr_avg@1e-3]
Prints a Markdown table: tuned one-cycle (its best lr of the grid per workload, by final metric) and each
AutoLR config (mean ± std over seeds, divergences, gap), and whether the goal holds there (within 0.5
accuracy points, or 2% relative loss). Reads only the per-run files, as the suite's report does.
"""

from __future__ import annotations

import argparse
import math
import statistics

from lrlab.apps.bench import load_runs
from lrlab.apps.bench_report import entrants, final_values
from lrlab.data.workloads import get_workload


def gap(workload: str, value: float, reference: float) -> tuple[str, bool]:
    """The gap to the reference as the goal measures it, and whether it is within the goal."""
    if get_workload(workload).metric == "accuracy":
        points = (value - reference) * 100
        return f"{points:+.2f} points", points >= -0.5
    relative = (value - reference) / reference * 100  # a loss: positive is worse
    return f"{relative:+.1f}%", relative <= 2.0


def cell(values: list[float]) -> tuple[str, float]:
    ok = [v for v in values if math.isfinite(v)]
    if not ok:
        return ("diverged" if values else "not run"), math.nan
    spread = statistics.stdev(ok) if len(ok) > 1 else 0.0
    text = f"{statistics.fmean(ok):.4f} ± {spread:.4f}"
    return text + (f" ({len(values) - len(ok)} of {len(values)} diverged)" if len(ok) < len(values) else ""), (
        statistics.fmean(ok) if len(ok) == len(values) else math.nan
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the --out folder of lrlab bench")
    parser.add_argument("--configs", default="autolr_budget@1e-3,autolr_avg@1e-3")
    args = parser.parse_args()
    runs, configs = load_runs(args.runs), args.configs.split(",")
    tuned = entrants(runs, by="final")["onecycle (tuned)"]
    print("| workload | one-cycle (tuned) | " + " | ".join(configs) + " |")
    print("|---|---|" + "---|" * len(configs))
    for workload, config in tuned.items():
        reference_text, reference = cell(final_values(runs, workload, config))
        seeds = len(final_values(runs, workload, config))
        row = [f"{workload} ({get_workload(workload).metric})", f"{reference_text} ({config}, {seeds} seeds)"]
        for name in configs:
            text, mean = cell(final_values(runs, workload, name))
            if math.isfinite(mean) and math.isfinite(reference):
                difference, met = gap(workload, mean, reference)
                text += f"; {difference}, {'met' if met else '**not met**'}"
            row.append(text)
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
