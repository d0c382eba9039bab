"""The `lrlab` command: the one door that knows every part."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lrlab.apps.fit import key_values
from lrlab.cli.console import (
    OneLineErrors,
    bounded_int,
    given_options,
    hyper_ramp,
    positive_float,
    positive_int,
    seed_number,
    unit_interval,
)
from lrlab.cli.lab import add_lab_parser
from lrlab.files import guard_stdout

MAX_SCHED_STEPS = 1_000_000  # about 20 s of simulation


def cmd_fit(args: argparse.Namespace) -> int:
    from lrlab.apps.fit import fit_command

    return fit_command(args)


def cmd_optimizers(args: argparse.Namespace) -> int:
    import inspect

    from lrlab.optim.registry import OPTIMIZERS

    for name, cls in OPTIMIZERS.items():
        params = inspect.signature(cls).parameters
        hypers = ", ".join(f"{k}={v.default!r}" for k, v in params.items() if k not in ("params", "impl", "compile"))
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<9} {cls.__name__}({hypers})\n          {doc}")
    return 0


def cmd_schedulers(args: argparse.Namespace) -> int:
    import inspect

    from torch.optim import lr_scheduler

    from lrlab.schedules.torch_schedules import available_schedulers

    for name in available_schedulers():
        sig = str(inspect.signature(getattr(lr_scheduler, name))).replace("\n", " ")
        print(f"{name}{sig}")
    return 0


def cmd_sched_plot(args: argparse.Namespace) -> int:
    from lrlab.plots import image_path, plot_series
    from lrlab.schedules.torch_schedules import checked_lrs, sched_func

    given = f"sched-plot {args.name} with --opt {' '.join(args.opt) or '(none)'}"
    try:
        make_sched, _ = sched_func(args.name, args.lr, **key_values(args.opt))
    except ValueError as e:
        raise ValueError(f"{given}: {e}") from e
    if make_sched is None:  # "constant": the lr as given, drawn as a schedule that keeps it
        from functools import partial

        from torch.optim.lr_scheduler import ConstantLR

        make_sched = partial(ConstantLR, factor=1.0, total_iters=0)
    if args.hyper:  # the other hyperparameters' ramps, stepped beside the lr schedule
        from functools import partial

        from lrlab.schedules.phased import HyperScheduler, parse_ramp

        make_sched = [make_sched, partial(HyperScheduler, **dict(parse_ramp(t) for t in args.hyper))]
    out = Path(args.out or f"{args.name}.png")
    out = image_path(out, f"{args.name}.png")
    try:
        rec = checked_lrs(make_sched, args.steps, lr=args.lr)
    except ValueError as e:
        raise ValueError(f"{given}: {e}") from e
    plot_series(rec, out, xlabel="step")
    lrs = rec["lr"]
    names = {"mom": "momentum", "beta2": "beta2", "weight_decay": "weight_decay"}
    moving = "".join(f"; {names[k]} {min(rec[k]):.3g}..{max(rec[k]):.3g}" for k in names if k in rec)
    print(
        f"{args.name}: {args.steps} steps, lr starts {lrs[0]:.4g}, max {max(lrs):.4g}, min {min(lrs):.4g}, "
        f"ends {lrs[-1]:.4g}{moving}"
    )
    print(f"wrote {out}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    import torch

    from lrlab.data.fashion_mnist import get_dls
    from lrlab.models import lesson_cnn
    from lrlab.optim.registry import lesson_opt_func
    from lrlab.plots import image_path
    from lrlab.train.callbacks.lr_finder import lr_find
    from lrlab.train.learner import Learner

    torch.manual_seed(args.seed)
    dls = get_dls(args.bs, data_dir=args.data_dir, seed=args.seed, n_train=args.n_train)
    learn = Learner(lesson_cnn(), dls, lr=1e-3, opt_func=lesson_opt_func(args.opt))
    result = lr_find(learn, start_lr=args.start_lr, max_lr=args.max_lr)
    out = image_path(args.out, "lr_find.png")
    result.plot(out)
    print(f"{len(result.lrs)} batches, lr {result.lrs[0]:.2g} .. {result.lrs[-1]:.2g}")
    found = f"steepest descent at lr {result.steepest:.3g}; valley at {result.valley:.3g}"
    print(f"{found}; lowest loss at {result.minimum:.3g}")
    print(f"suggested one-cycle peak lr (lowest-loss lr / 2): {result.suggestion:.3g}")
    print(f"try: lrlab fit --opt {args.opt} --sched onecycle --lr {result.suggestion:.3g}")
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json
    import signal

    from lrlab.apps.compare import PRESETS, get_configs, run_grid, write_report
    from lrlab.data.fashion_mnist import get_dls
    from lrlab.files import atomic_write_text
    from lrlab.models import lesson_cnn

    names = args.configs.split(",") if args.configs else PRESETS[args.preset]
    configs = get_configs(names)
    load = {}

    def make_dls(seed: int):
        if "dls" not in load:
            load["dls"] = get_dls(args.bs, data_dir=args.data_dir, n_train=args.n_train, n_valid=args.n_valid)
        dls = load["dls"]
        dls.train.seed, dls.train.epoch = seed, 0
        return dls

    seeds = list(range(args.seeds))
    print(f"{len(configs)} configs x {len(seeds)} seeds, {args.epochs} epochs each, lesson CNN")
    results: list[dict] = []
    title, code = "lrlab compare", 0
    partial = Path(args.out) / "report-results.json"  # rewritten after every run: even SIGKILL keeps them

    def save(done: list[dict]) -> None:
        atomic_write_text(partial, json.dumps(done, indent=1, default=float))

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)  # SIGTERM ends the grid as Ctrl-C does
    try:
        run_grid(configs, seeds, args.epochs, make_dls, lesson_cnn, results=results, after_run=save)
    except KeyboardInterrupt:  # keep every finished run: report them, say the grid is incomplete
        if not results:
            raise
        title, code = f"lrlab compare (interrupted: {len(results)} of {len(configs) * len(seeds)} runs)", 130
        print(f"\nlrlab: interrupted; reporting the {len(results)} finished runs", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    notes = (
        f"lesson CNN on Fashion-MNIST, batch size {args.bs}, {args.epochs} epochs, seeds {seeds}; "
        f"test accuracy on the {len(make_dls(0).valid.ds):,} test images"
    )
    path = write_report(results, args.out, title, notes)
    print(Path(path).read_text().split("\n\n")[2])
    print(f"wrote {path}, report.html and plots in {args.out}")
    return code


def cmd_bench(args: argparse.Namespace) -> int:
    import signal

    from lrlab.apps.bench import load_runs, parse_shard, resolve, run_bench
    from lrlab.apps.bench_report import write_report

    shard = parse_shard(args.shard)
    if args.sample is not None:
        return bench_space(args, shard)
    workloads, configs = resolve(args.workloads.split(","), args.configs.split(","))  # every name checked first

    def stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM ends the grid as Ctrl-C does; finished runs are already on disk

    if not args.report_only:
        previous = signal.signal(signal.SIGTERM, stop)
        try:
            paths = run_bench(args.out, workloads, configs, args.seeds, shard, args.epochs, jobs=args.jobs,
                              threads=args.threads, executor=args.executor, address=args.address)  # fmt: skip
        finally:
            signal.signal(signal.SIGTERM, previous)
    runs = load_runs(args.out)
    notes = f"{len(runs)} runs read from {args.out}/runs; each workload's default epochs unless --epochs was given"
    path = write_report(runs, args.out, notes=notes)
    print(f"wrote {path} and report.html ({len(runs)} runs)")
    missing = 0 if args.report_only else sum(not p.exists() for p in paths)
    if missing:
        print(f"lrlab: {missing} runs of this shard have no result (their workers died): run the same command again",
              file=sys.stderr)  # fmt: skip
    return 1 if missing else 0


def bench_space(args: argparse.Namespace, shard: tuple[int, int]) -> int:
    """`lrlab bench --sample N --space-seed S`: the field on N sampled workloads, then OUT/space.json and space.md."""
    from lrlab.apps.bench import load_runs
    from lrlab.apps.space import report, results, run_space, write_results
    from lrlab.data.workloads.space import sample
    from lrlab.files import atomic_write_text

    if args.workloads != "all" or args.configs != "baselines":
        raise ValueError("--sample draws its own workloads and runs its own field: leave out --workloads and --configs")
    if args.executor == "ray" or args.epochs is not None:
        raise ValueError("--sample runs on this machine (--jobs) at each draw's own epochs: leave out "
                         "--executor ray and --epochs")  # fmt: skip
    names = [d.name for d in sample(args.sample, args.space_seed)]
    if not args.report_only:
        run_space(args.out, args.sample, args.space_seed, args.seeds, shard, jobs=args.jobs, threads=args.threads)
    runs = [r for r in load_runs(args.out) if r["workload"] in names]
    data = {"space_seed": args.space_seed, "sample": args.sample, "seeds": args.seeds, **results(runs, names)}
    out = Path(args.out)
    write_results(out / "space.json", data)
    notes = (f"{args.sample} workloads of space seed {args.space_seed}, {args.seeds} seeds, from `lrlab bench "
             f"--sample {args.sample} --space-seed {args.space_seed} --seeds {args.seeds}`")  # fmt: skip
    atomic_write_text(out / "space.md", report(data, "AutoLR on sampled workloads", notes))
    print(f"wrote {out / 'space.md'} and space.json ({len(runs)} runs)")
    return 0


def cmd_speedrun(args: argparse.Namespace) -> int:

    from lrlab.apps.speedrun import speedrun

    result = speedrun(args.budget, seed=args.seed, data_dir=args.data_dir)
    if args.out:
        from lrlab.train.runs import write_json

        write_json(Path(args.out), result)
        print(f"wrote {args.out}")
    return 0


def add_fit_parser(sub) -> None:
    """`lrlab fit` and its options (the optimizer and model choices come from their registries)."""
    from lrlab.models import MODELS
    from lrlab.optim.registry import OPTIMIZERS

    fit = sub.add_parser("fit", help="train the lesson CNN on Fashion-MNIST and write a run folder")
    fit.add_argument("--epochs", type=positive_int, default=5)
    fit.add_argument("--bs", "--batch-size", dest="bs", type=positive_int, default=256)
    fit.add_argument("--lr", type=positive_float, default=None,
                     help="learning rate (the peak for one-cycle; default 0.06); not with --auto: AutoLR searches "
                          "its own")  # fmt: skip
    fit.add_argument(
        "--auto",
        action="store_true",
        help="AutoLR sets the lr: no --lr to choose (= --sched autolr; --sched-arg K=V are its settings)",
    )
    fit.add_argument("--opt", default="adam", choices=list(OPTIMIZERS))
    fit.add_argument("--opt-arg", action="append", default=[], metavar="K=V", help="extra optimizer keyword")
    fit.add_argument("--sched", default=None,
                     help="onecycle (default) | cosine | constant | plateau | wsd | phased | autolr | "
                          "any lr_scheduler")  # fmt: skip
    fit.add_argument("--sched-arg", action="append", default=[], metavar="K=V", help="extra scheduler keyword")
    fit.add_argument("--sched-step", choices=["batch", "epoch"], default=None)
    fit.add_argument(
        "--hyper",
        action="append",
        type=hyper_ramp,
        default=[],
        metavar="NAME=START:END[:SHAPE]",
        help="ramp momentum, beta1, beta2 or weight_decay over the fit, e.g. weight_decay=0:0.1",
    )
    fit.add_argument("--compile", action="store_true", help="compile the optimizer's update rule (slow first step)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--data-dir", default=None, help="folder with the four Fashion-MNIST .gz files")
    fit.add_argument("--n-train", type=positive_int, default=None, help="use only the first N training images")
    fit.add_argument("--n-valid", type=positive_int, default=None, help="use only the first N test images")
    fit.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    fit.add_argument("--threads", type=positive_int, default=None)
    fit.add_argument("--out", default="runs", help="parent folder of the run folder")
    fit.add_argument("--run-dir", default=None, help="exact run folder (overrides --out)")
    fit.add_argument("--no-progress", dest="progress", action="store_false")
    fit.add_argument("--stats", action="store_true", help="record activation and gradient statistics, save plots")
    fit.add_argument("--init", choices=["kaiming", "lsuv", "default"], default="kaiming")
    fit.add_argument("--no-norm", action="store_true", help="the CNN without BatchNorm")
    fit.add_argument("--model", default="cnn", choices=list(MODELS))
    fit.add_argument("--bf16", action="store_true", help="bfloat16 autocast (mixed precision)")
    fit.add_argument("--augment", action="store_true", help="random crop (pad 2) and flip on training batches")
    fit.add_argument("--tta", action="store_true", help="test-time augmentation: image and mirror averaged")
    fit.add_argument("--label-smoothing", type=unit_interval, default=0.0, help="0 (none) to <1")
    fit.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        metavar="K",
        help="also checkpoint every K training batches (always after each epoch)",
    )
    fit.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run exactly, with its own options"
    )
    fit.add_argument("--overwrite", action="store_true", help="replace the run already in --run-dir")
    fit.add_argument(
        "--nproc",
        type=positive_int,
        default=None,
        help="data-parallel processes on this machine (torch.distributed, gloo on CPU; default 1)",
    )
    fit.set_defaults(func=cmd_fit)


def add_lab_and_grid_parsers(sub) -> None:
    """`lrlab lab`, `lrlab speedrun`, `lrlab compare` and `lrlab bench`."""
    add_lab_parser(sub)

    speed = sub.add_parser("speedrun", help="the best model a time budget buys on this machine, measured")
    speed.add_argument("--budget", type=int, default=60, choices=[60, 300, 900], help="seconds, everything included")
    speed.add_argument("--seed", type=int, default=0)
    speed.add_argument("--data-dir", default=None)
    speed.add_argument("--out", default=None, help="write the result as JSON here")
    speed.set_defaults(func=cmd_speedrun)

    cmp = sub.add_parser("compare", help="a grid of lr strategies x seeds on Fashion-MNIST, with a report")
    cmp.add_argument("--preset", default="lesson", choices=["lesson"])
    cmp.add_argument("--configs", default=None, help="comma-separated config names instead of the preset")
    cmp.add_argument("--seeds", type=bounded_int(1000), default=3)
    cmp.add_argument("--epochs", type=positive_int, default=5)
    cmp.add_argument("--bs", type=positive_int, default=256)
    cmp.add_argument("--n-train", type=positive_int, default=None)
    cmp.add_argument("--n-valid", type=positive_int, default=None)
    cmp.add_argument("--data-dir", default=None)
    cmp.add_argument("--out", default="runs/compare")
    cmp.set_defaults(func=cmd_compare)

    bench = sub.add_parser("bench", help="configs x workloads x seeds, one file per run, a report with a profile")
    bench.add_argument("--workloads", default="all", help="comma-separated workload names, or all")
    bench.add_argument("--configs", default="baselines", help="comma-separated family@setting, or baselines")
    bench.add_argument("--seeds", type=bounded_int(1000), default=3)
    bench.add_argument("--shard", default="1/1", help="run only part i of n of the grid (i/n)")
    bench.add_argument("--jobs", type=bounded_int(64), default=1,
                       help="runs at once, each in its own process with the cores split between them")  # fmt: skip
    bench.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local: this machine (--jobs at once); ray: one Ray task per run")  # fmt: skip
    bench.add_argument("--address", default=None, help="with --executor ray: the cluster (default: a local Ray)")
    bench.add_argument(
        "--threads",
        type=bounded_int(256),
        default=None,
        help="torch threads per run (default: the cores / --jobs; with --jobs 1, torch's own)",
    )
    bench.add_argument("--epochs", type=positive_int, default=None, help="override every workload's epochs")
    bench.add_argument("--out", default="runs/bench")
    bench.add_argument("--report-only", action="store_true", help="only merge the result files into a report")
    bench.add_argument("--sample", type=bounded_int(1000), default=None,
                       help="draw N workloads from the sampled space and run AutoLR's field on them")  # fmt: skip
    bench.add_argument("--space-seed", type=seed_number, default=0,
                       help="with --sample: which space to draw from (report on seeds not developed on)")  # fmt: skip
    bench.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The `lrlab` command and its subcommands."""
    from lrlab import __version__
    from lrlab.optim.registry import OPTIMIZERS

    parser = OneLineErrors(prog="lrlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lrlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_fit_parser(sub)

    opts = sub.add_parser("optimizers", help="list lrlab's optimizers and their hyperparameters")
    opts.set_defaults(func=cmd_optimizers)

    scheds = sub.add_parser("schedulers", help="list the scheduler classes torch.optim.lr_scheduler offers")
    scheds.set_defaults(func=cmd_schedulers)

    splot = sub.add_parser("sched-plot", help="plot what a schedule will do, without training")
    splot.add_argument("name", help="onecycle | cosine | wsd | phased | constant | any lr_scheduler class name")
    splot.add_argument("--steps", type=bounded_int(MAX_SCHED_STEPS), default=100, help="at most 1,000,000 (~20 s)")
    splot.add_argument("--lr", type=positive_float, default=0.06, help="base lr (max_lr for one-cycle)")
    splot.add_argument("--opt", action="append", default=[], metavar="K=V", help="scheduler keyword, e.g. T_max=100")
    splot.add_argument(
        "--hyper",
        action="append",
        type=hyper_ramp,
        default=[],
        metavar="NAME=START:END[:SHAPE]",
        help="also ramp momentum, beta1, beta2 or weight_decay, e.g. weight_decay=0:0.1:linear",
    )
    splot.add_argument("--out", default=None, help="PNG path (default NAME.png)")
    splot.set_defaults(func=cmd_sched_plot)

    find = sub.add_parser("lr-find", help="grow the lr batch by batch, plot loss vs lr, suggest an lr")
    find.add_argument("--opt", default="adam", choices=list(OPTIMIZERS))
    find.add_argument("--bs", "--batch-size", dest="bs", type=positive_int, default=256)
    find.add_argument("--start-lr", type=positive_float, default=1e-6)
    find.add_argument("--max-lr", type=positive_float, default=10.0)
    find.add_argument("--seed", type=int, default=0)
    find.add_argument("--data-dir", default=None)
    find.add_argument("--n-train", type=positive_int, default=None)
    find.add_argument("--out", default="lr_find.png")
    find.set_defaults(func=cmd_lr_find)

    add_lab_and_grid_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lrlab` console script. A mistake in the input or the environment is one line on
    stderr and exit status 2; Ctrl-C outside a fit (which checkpoints) exits 130; internal errors keep their
    traceback."""
    from lrlab.data.fashion_mnist import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fit":
        args.given = given_options(parser, "fit", argv)
    guard_stdout()
    try:
        return args.func(args)
    except (ValueError, DataError) as e:
        print(f"lrlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nlrlab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the environment: a full disk, a read-only folder, a missing file
        where = f" ({e.filename})" if e.filename else ""
        print(f"lrlab: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
