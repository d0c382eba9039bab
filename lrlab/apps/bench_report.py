"""The benchmark's report: per-workload tables, fair entrants (tuned schedules, calibrated lr-free methods),
a performance profile in the manner of AlgoPerf, learning curves. Reads only the per-run result files.

Performance profile: for an entrant e and a workload w, t(e, w) is the median over seeds of the training
steps to reach w's target (infinite if a seed never reaches it or diverges); r(e, w) = t(e, w) / min over
entrants of t(., w). rho_e(tau) is the share of workloads with r(e, w) <= tau, and e's score is the area
under rho_e over tau in [1, TAU_MAX], divided by TAU_MAX - 1 (1.0: fastest everywhere; 0: never in reach).
Steps, not seconds: the step counts do not depend on how busy the machine was.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from lrlab.apps.bench import LRFREE, SCHEDULES, SINGLE
from lrlab.data.workloads import Workload, get_workload
from lrlab.files import atomic_write_text

TAU_MAX = 4.0


def final_values(runs: Sequence[dict], workload: str, config: str) -> list[float]:
    """The final metric of each seed of one (workload, config); a diverged seed counts as NaN."""
    return [r["final"] if r["final"] is not None else math.nan for r in runs
            if r["workload"] == workload and r["config"] == config]  # fmt: skip


def mean_final(runs: Sequence[dict], workload: str, config: str) -> float:
    """Mean final metric over seeds (NaN when any seed diverged: a config that diverges is not 'best')."""
    values = final_values(runs, workload, config)
    return statistics.fmean(values) if values and all(math.isfinite(v) for v in values) else math.nan


def median_steps(runs: Sequence[dict], workload: str, config: str) -> float:
    """Median over seeds of the steps to target (inf for a seed that never reached it)."""
    steps = [r["steps_to_target"] for r in runs if r["workload"] == workload and r["config"] == config]
    return statistics.median(steps) if steps else math.inf


def better(workload: str, a: float, b: float) -> bool:
    """Whether metric a beats b on this workload (NaN never beats anything)."""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a > b if get_workload(workload).higher_is_better else a < b


def complete_workloads(runs: Sequence[dict]) -> tuple[list[str], list[str]]:
    """Workloads on which every configuration of the runs has run with the same seeds (a fair comparison),
    and the others (a grid still running, or cut short), as 'name (k of n configs)'."""
    configs = set(r["config"] for r in runs)
    complete, partial = [], []
    for w in dict.fromkeys(r["workload"] for r in runs):
        seeds = {c: {r["seed"] for r in runs if r["workload"] == w and r["config"] == c} for c in configs}
        if all(seeds[c] and seeds[c] == seeds[next(iter(configs))] for c in configs):
            complete.append(w)
        else:
            partial.append(f"{w} ({sum(bool(v) for v in seeds.values())} of {len(configs)} configs)")
    return complete, partial


def entrants(runs: Sequence[dict], by: str = "steps") -> dict[str, dict[str, str]]:
    """Entrant name -> {workload: the config it uses there}.

    "FAMILY (tuned)": a schedule family at its best lr of the grid on each workload: fewest steps to the
    target (by="steps", for the profile; ties go to the better final metric), or best final metric
    (by="final"); "FAMILY (default)" / "FAMILY (calibrated)": a lr-free family at its published default, and
    at the one setting with the best profile score across all workloads; single configs stand as themselves."""
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    configs = set(r["config"] for r in runs)
    out: dict[str, dict[str, str]] = {}
    for family in SCHEDULES:
        members = sorted(c for c in configs if c.split("@")[0] == family and c not in SINGLE)
        if members:
            out[f"{family} (tuned)"] = {w: best_config(runs, w, members, by) for w in workloads}
    for name in SINGLE:
        if name in configs:
            out[name] = dict.fromkeys(workloads, name)
    for family, (default, _) in LRFREE.items():
        members = sorted(c for c in configs if c.split("@")[0] == family)
        if f"{family}@{default}" in members:
            out[f"{family} (default)"] = dict.fromkeys(workloads, f"{family}@{default}")
        if len(members) > 1:
            trial = {c: dict.fromkeys(workloads, c) for c in members}
            scores = profile_scores(runs, trial)
            out[f"{family} (calibrated)"] = trial[max(members, key=lambda c: (scores[c], c))]
    return out


def best_config(runs: Sequence[dict], workload: str, members: Sequence[str], by: str = "final") -> str:
    """The member that is best on one workload: by final metric, or by steps to target (then final metric)."""
    best = members[0]
    for config in members[1:]:
        final_better = better(workload, mean_final(runs, workload, config), mean_final(runs, workload, best))
        if by == "steps":
            steps, best_steps = median_steps(runs, workload, config), median_steps(runs, workload, best)
            if steps < best_steps or (steps == best_steps and final_better):
                best = config
        elif final_better:
            best = config
    return best


def final_table(runs: Sequence[dict], chosen: dict[str, dict[str, str]]) -> str:
    """Each entrant's final metric (mean ± std over seeds) on each workload, at the workloads' epochs."""
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    lines = ["| entrant | " + " | ".join(f"{w} ({get_workload(w).metric})" for w in workloads) + " |",
             "|---|" + "---|" * len(workloads)]  # fmt: skip
    for e, per in chosen.items():
        cells = []
        for w in workloads:
            values = final_values(runs, w, per[w])
            ok = [v for v in values if math.isfinite(v)]
            spread = statistics.stdev(ok) if len(ok) > 1 else 0.0
            cell = f"{statistics.fmean(ok):.4f} ± {spread:.4f}" if ok else ("diverged" if values else "not run")
            cells.append(cell + (f" ({len(values) - len(ok)} diverged)" if ok and len(ok) < len(values) else ""))
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(times: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """time[e][w] -> r[e][w] = time / best time on w (inf where e, or every entrant, never reached it)."""
    workloads = {w for per in times.values() for w in per}
    best = {w: min(per.get(w, math.inf) for per in times.values()) for w in workloads}
    return {e: {w: (t / best[w] if math.isfinite(t) and best[w] > 0 else math.inf) for w, t in per.items()}
            for e, per in times.items()}  # fmt: skip


def profile(r: dict[str, float], tau: float) -> float:
    """rho(tau): the share of workloads on which the ratio is within tau."""
    return sum(v <= tau for v in r.values()) / len(r) if r else 0.0


def profile_score(r: dict[str, float], tau_max: float = TAU_MAX) -> float:
    """Area under rho over [1, tau_max] / (tau_max - 1), computed exactly (rho is a step function)."""
    if not r:
        return 0.0
    area = sum(tau_max - max(v, 1.0) for v in r.values() if v <= tau_max)
    return area / (len(r) * (tau_max - 1))


def entrant_ratios(runs: Sequence[dict], chosen: dict[str, dict[str, str]]) -> dict[str, dict[str, float]]:
    """Each entrant's steps-to-target ratio to the best entrant, per workload."""
    return ratios({e: {w: median_steps(runs, w, c) for w, c in per.items()} for e, per in chosen.items()})


def profile_scores(runs: Sequence[dict], chosen: dict[str, dict[str, str]]) -> dict[str, float]:
    return {e: profile_score(r) for e, r in entrant_ratios(runs, chosen).items()}


def workload_table(runs: Sequence[dict], workload: str) -> str:
    """One row per config: final metric mean ± std, diverged seeds, median steps to target, lr used."""
    w = get_workload(workload)
    lines = [f"### {workload}: {w.about}", "",
             f"target {w.metric} {'>=' if w.higher_is_better else '<='} {w.target:g}", "",
             f"| config | {w.metric} (mean ± std) | diverged | steps to target (median) | seconds (mean) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for config in dict.fromkeys(r["config"] for r in runs if r["workload"] == workload):
        values = [v for v in final_values(runs, workload, config) if math.isfinite(v)]
        mine = [r for r in runs if r["workload"] == workload and r["config"] == config]
        n_div = sum(r["diverged"] for r in mine)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        value = f"{statistics.fmean(values):.4f} ± {spread:.4f}" if values else "—"
        steps = median_steps(runs, workload, config)
        wall = statistics.fmean(r["wall"] for r in mine)
        lines.append(f"| {config} | {value} | {n_div}/{len(mine)} | "
                     f"{'never' if math.isinf(steps) else f'{steps:.0f}'} | {wall:.1f} |")  # fmt: skip
    return "\n".join(lines)


def profile_table(runs: Sequence[dict], chosen: dict[str, dict[str, str]]) -> str:
    r = entrant_ratios(runs, chosen)  # once: the scores come from the same ratios
    scores = {e: profile_score(per) for e, per in r.items()}
    taus = (1.0, 1.5, 2.0, 4.0)
    lines = ["| entrant | score | " + " | ".join(f"rho({t:g})" for t in taus) + " | configs used |",
             "|---|---|" + "---|" * len(taus) + "---|"]  # fmt: skip
    for e in sorted(chosen, key=lambda e: -scores[e]):
        used = ", ".join(sorted(set(chosen[e].values())))
        lines.append(f"| {e} | {scores[e]:.3f} | " + " | ".join(f"{profile(r[e], t):.2f}" for t in taus)
                     + f" | {used} |")  # fmt: skip
    return "\n".join(lines)


def mean_curve(w: Workload, runs: Sequence[dict]) -> tuple[list[int], list[float]]:
    """The validation metric of some seeds' runs, averaged: by training step from their evaluations every k
    steps when they all have them, else by epoch."""
    if all(r.get("evals") for r in runs):
        n = min(len(r["evals"]) for r in runs)
        rows = [r["evals"][:n] for r in runs]
        xs = [row["step"] for row in rows[0]]
    else:
        n = min(len(r["history"]) for r in runs)
        rows, xs = [r["history"][:n] for r in runs], list(range(1, n + 1))
    ys = [statistics.fmean(w.score(seed[e].get("valid_loss", math.nan), seed[e].get("valid_acc")) for seed in rows)
          for e in range(n)]  # fmt: skip
    return xs, ys


def plot_curves(runs: Sequence[dict], out: Path, stem: str = "report") -> list[Path]:
    """Per workload: the validation metric by step (or epoch), mean over seeds, one line per entrant (tuned on the final
    metric; a line per config would be unreadable), in distinct colours and line styles."""
    import matplotlib.pyplot as plt

    from lrlab.plots import save

    chosen, styles = entrants(runs, by="final"), ("-", "--", ":", "-.")
    paths = []
    for workload in dict.fromkeys(r["workload"] for r in runs):
        w = get_workload(workload)
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for i, (entrant, per) in enumerate(chosen.items()):
            mine = [r for r in runs if r["workload"] == workload and r["config"] == per.get(workload)
                    and not r["diverged"]]  # fmt: skip
            if not mine:
                continue
            xs, ys = mean_curve(w, mine)
            ax.plot(xs, ys, marker=".", linestyle=styles[i // 10 % 4], color=f"C{i % 10}",
                    label=f"{entrant}: {per[workload]}")  # fmt: skip
        by_step = all(r.get("evals") for r in runs if r["workload"] == workload)
        ax.set(xlabel="training step" if by_step else "epoch", ylabel=f"valid {w.metric} (mean over seeds)",
               title=workload)  # fmt: skip
        if w.metric != "accuracy":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        paths.append(out / f"{stem}-curves-{workload}.png")
        save(fig, paths[-1])
    return paths


def write_report(
    runs: Sequence[dict], out: str | Path, title: str = "lrlab bench", notes: str = "", stem: str = "report"
) -> Path:
    """OUT/STEM.md and a self-contained OUT/STEM.html (images inlined), with the curves as PNG.

    Raises:
        ValueError: no runs to report."""
    if not runs:
        raise ValueError("no result files to report: run `lrlab bench` first")
    out = Path(out)
    complete, partial = complete_workloads(runs)
    fair = [r for r in runs if r["workload"] in complete]
    plots = plot_curves(runs, out, stem)
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    left_out = f" Not in these two tables (not every config has run there): {', '.join(partial)}." if partial else ""
    parts = [f"# {title}", "", notes, "", "## Performance profile (steps to target)", "",
             f"Over the workloads every configuration has run on: {', '.join(complete) or 'none yet'}.{left_out}",
             "", resolution(runs), ""]  # fmt: skip
    if fair:
        parts += [profile_table(fair, entrants(fair)), "", "## Final metric of each entrant (tuned on the final "
                  "metric)", "", final_table(fair, entrants(fair, by="final")), ""]  # fmt: skip
    parts += ["## Per workload", ""]
    for workload in workloads:
        parts += [workload_table(runs, workload), "", f"![{workload}]({stem}-curves-{workload}.png)", ""]
    md = "\n".join(parts)
    atomic_write_text(out / f"{stem}.md", md + "\n")
    atomic_write_text(out / f"{stem}.html", to_html(md, title, plots))
    return out / f"{stem}.md"


def resolution(runs: Sequence[dict]) -> str:
    """A sentence on how finely steps to target were counted: at evaluations every k steps, or at epoch ends."""
    stepped = [r for r in runs if r.get("evals")]
    if not stepped:
        return "Steps to target are counted at epoch ends."
    fewest = min(len(r["evals"]) for r in stepped)
    where = "" if len(stepped) == len(runs) else f" ({len(runs) - len(stepped)} older runs: at epoch ends)"
    return (
        f"Steps to target are counted at evaluations every k steps on a fixed validation subset, at least "
        f"{fewest} a run{where}; the final metric is on the whole validation set."
    )


def to_html(md: str, title: str, plots: Sequence[Path]) -> str:
    """The Markdown's headings, paragraphs and tables as HTML, with the plots inlined as data URIs."""
    images = {p.name: base64.b64encode(p.read_bytes()).decode() for p in plots}
    body, table = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                tag = "th" if not table else "td"
                table.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("<table>" + "".join(table) + "</table>")
            table = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{line.lstrip('#').strip()}</h{level}>")
        elif line.startswith("![") and "](" in line:
            name = line.split("](")[1].rstrip(")")
            body.append(f'<p><img alt="{name}" src="data:image/png;base64,{images.get(name, "")}"></p>')
        elif line.strip():
            body.append(f"<p>{line}</p>")
    style = "body{font-family:sans-serif;max-width:75em;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:3px 7px}"  # fmt: skip
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>" \
           f"<body>{''.join(body)}</body></html>"  # fmt: skip
