"""docs/results/space.md from the committed results of `lrlab bench --sample` (docs/results/space-*.json), or
the margin study of the development seeds from their bench folders.

Run:
    .venv/bin/python benchmarks/space_report.py docs/results/space-seed3.json docs/results/space.md
    .venv/bin/python benchmarks/space_report.py --margins runs/dev0 runs/dev2

The first rebuilds the report from the JSON alone (no training): a grid completed over several sittings is
merged by `lrlab bench --sample ... --report-only` into OUT/space.json, which is what gets committed. The
second prints, for each AutoLR margin run on the development spaces (bench family autolr_margin@M), how
often it is at or above tuned one-cycle and first among the single-run methods: how the margin was chosen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lrlab.apps.bench import load_runs
from lrlab.apps.space import AUTOLR, by_config, report, results, workload_row


def margin_study(folders: list[str]) -> str:
    """Per margin: workloads at or above tuned one-cycle, first among the single-run methods, runs below trivial."""
    lines = ["| margin | at or above tuned one-cycle | first among single-run | runs below trivial |",
             "|---|---|---|---|"]  # fmt: skip
    datasets = []
    for folder in folders:
        runs = load_runs(folder)
        names = sorted({r["workload"] for r in runs}, key=lambda n: tuple(map(int, n[5:].split("-"))))
        datasets.append(results(runs, names))
    margins = sorted({r["config"] for data in datasets for r in data["runs"] if r["config"].startswith("autolr_m")},
                     key=lambda c: float(c.split("@")[1]))  # fmt: skip
    for margin in margins:
        rows = []
        for data in datasets:
            runs = [{**r, "config": AUTOLR} if r["config"] == margin else r for r in data["runs"]
                    if r["config"] != AUTOLR]  # fmt: skip
            rows += [workload_row(n, info, by_config(runs, n)) for n, info in data["workloads"].items()]
        rows = [r for r in rows if r["seeds"]]
        above, first = sum(r["vs_tuned"] for r in rows), sum(r["first"] for r in rows)
        below = sum(len(r["below_trivial"]) for r in rows)
        lines.append(f"| {margin.split('@')[1]} | {above} of {len(rows)} | {first} of {len(rows)} | {below} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--margins", action="store_true", help="the margin study of bench folders")
    args = parser.parse_args()
    if args.margins:
        print(margin_study(args.paths))
        return
    source, target = Path(args.paths[0]), Path(args.paths[1])
    data = json.loads(source.read_text())
    notes = data.get("notes", f"from {source}")
    target.write_text(report(data, "AutoLR on sampled workloads", notes))
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
