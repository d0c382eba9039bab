"""Issue 30's tables from a `lrlab bench` folder: AutoLR from every starting lr, and against tuned one-cycle.

Run (3 seeds, every start; the two long workloads at the extreme starts):
    lrlab bench --workloads small-class,small-reg,linear,regression,mnist1d,fmnist-mlp,fmnist-cnn \
        --configs autolr_avg@1e-4,autolr_avg@1e-3,autolr_avg@1e-2,autolr_avg@1e-1 --seeds 3 --out runs/autolr30
    lrlab bench --workloads fmnist-resnet,charlm --configs autolr_avg@1e-4,autolr_avg@1e-1 --seeds 3 \
        --out runs/autolr30
    lrlab bench --workloads small-class,small-reg --configs onecycle@1e-3,onecycle@3e-3,onecycle@1e-2,onecycle@3e-2 \
        --seeds 3 --out runs/autolr30
    .venv/bin/python benchmarks/autolr_starts.py runs/autolr30 --suite docs/results/suite.md

The `autolr_avg@X` setting is the Learner's lr, which AutoLR no longer uses. Tuned one-cycle is the best lr
of the grid per workload by final metric, from the folder where it ran there, else from the suite report's
"onecycle (tuned)" row (the same one-cycle code, 3 seeds). The trivial baseline is the workload's own
(majority class, the training mean).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from pathlib import Path

from lrlab.apps.bench import load_runs
from lrlab.apps.bench_report import entrants, final_values
from lrlab.data.workloads import get_workload


def spread_goal(workload: str, values: list[float]) -> tuple[str, bool]:
    """The spread of the start lrs' means as the issue measures it: <= 0.3 points, or 1% relative for a loss."""
    spread = max(values) - min(values)
    if get_workload(workload).metric == "accuracy":
        return f"{spread * 100:.2f} points", spread * 100 <= 0.3
    relative = spread / statistics.fmean(values) * 100
    return f"{relative:.2f}%", relative <= 1.0


def gap(workload: str, value: float, reference: float) -> str:
    if get_workload(workload).metric == "accuracy":
        return f"{(value - reference) * 100:+.2f} points"
    return f"{(value - reference) / reference * 100:+.1f}%"


def suite_onecycle(report: Path) -> dict[str, str]:
    """The suite report's tuned one-cycle cells ("mean ± std") by workload."""
    lines = report.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| entrant | charlm"))
    names = [re.sub(r" \(.*\)", "", cell.strip()) for cell in header.strip("|").split("|")[1:]]
    row = next(line for line in lines if line.startswith("| onecycle (tuned) |") and "±" in line)
    return dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")[1:])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the --out folder of lrlab bench")
    parser.add_argument("--suite", type=Path, help="the suite report, for tuned one-cycle where it did not run here")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    suite = suite_onecycle(args.suite) if args.suite else {}
    tuned = entrants(runs, by="final").get("onecycle (tuned)", {})
    starts = sorted({r["config"] for r in runs if r["config"].startswith("autolr_avg@")}, key=lambda c: float(c[11:]))
    heads = " | ".join(f"AutoLR, Learner lr {c[11:]}" for c in starts)
    print(f"| workload | {heads} | spread | goal ≤ 0.3 pt / 1% |")
    print("|---|" + "---|" * (len(starts) + 2))
    summary = []
    for workload in sorted({r["workload"] for r in runs}):
        cells, means = [], []
        for config in starts:
            values = final_values(runs, workload, config)
            ok = [v for v in values if math.isfinite(v)]
            cells.append(f"{statistics.fmean(ok):.4f} ± {statistics.stdev(ok):.4f}" if len(ok) > 1 else "not run")
            if len(ok) == len(values) and ok:
                means.append(statistics.fmean(ok))
        text, met = spread_goal(workload, means)
        print(f"| {workload} ({get_workload(workload).metric}) | " + " | ".join(cells) + f" | {text} | "
              f"{'met' if met else '**not met**'} |")  # fmt: skip
        summary.append((workload, means))
    print("\n| workload | trivial baseline | AutoLR (every run) | worst seed | one-cycle (tuned) | gap |")
    print("|---|---|---|---|---|---|")
    for workload, _ in summary:
        w = get_workload(workload)
        trivial = w.baseline(w.loaders(0))
        values = [v for c in starts for v in final_values(runs, workload, c)]
        worst = min(values) if w.higher_is_better else max(values)
        beats = all(v > trivial if w.higher_is_better else v < trivial for v in values)
        mean = statistics.fmean(values)
        ref_values = final_values(runs, workload, tuned[workload]) if workload in tuned else []
        if ref_values:
            ref_mean = statistics.fmean(ref_values)
            ref = f"{ref_mean:.4f} ± {statistics.stdev(ref_values):.4f} ({tuned[workload]}, here)"
        elif workload in suite:
            ref_mean = float(suite[workload].split("±")[0])
            ref = f"{suite[workload]} (suite report)"
        else:
            ref_mean, ref = math.nan, "not run"
        print(f"| {workload} | {trivial:.4f} | {mean:.4f} ({len(values)} runs) | {worst:.4f} "
              f"({'better than' if beats else '**not better than**'} the baseline) | {ref} | "
              f"{gap(workload, mean, ref_mean) if math.isfinite(ref_mean) else '-'} |")  # fmt: skip


if __name__ == "__main__":
    main()
