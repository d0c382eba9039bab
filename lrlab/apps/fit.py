"""`lrlab fit`: one training run of the lesson CNN, with its run folder, checkpoints and plots."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from lrlab.files import atomic_write_text

ROW = "{epoch:>5}  {train_loss:>10}  {valid_loss:>10}  {valid_acc:>9}  {seconds:>7}"


def _fmt(row: dict) -> str:
    def num(key: str, spec: str) -> str:
        return format(row[key], spec) if key in row else "-"

    return ROW.format(
        epoch=row["epoch"] + 1,
        train_loss=num("train_loss", ".4f"),
        valid_loss=num("valid_loss", ".4f"),
        valid_acc=num("valid_acc", ".4f"),
        seconds=num("seconds", ".1f"),
    )


def key_values(pairs: Sequence[str]) -> dict:
    """Parse K=V options, reading numbers and booleans as such."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value.replace("True", "true").replace("False", "false"))
        except json.JSONDecodeError:
            out[key] = value
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def initialized_model(args: argparse.Namespace, dls):
    """The chosen model (the lesson CNN with or without BatchNorm by default), initialized as asked."""
    from torch import nn

    from lrlab.models import get_model, lesson_cnn, lsuv_init

    model = lesson_cnn(norm=not args.no_norm) if args.model == "cnn" else get_model(args.model)
    if args.init == "default":  # PyTorch's own init instead of Kaiming
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
    elif args.init == "lsuv":
        xb, _ = next(iter(dls.train))
        dls.train.epoch = 0  # the peek must not shift the shuffling
        lsuv_init(model, xb)
    return model


def speed_callbacks(args: argparse.Namespace) -> list:
    """Mixed precision, batch augmentation and test-time augmentation, as the options ask."""
    from lrlab.train.callbacks.speed import TTACB, BatchAugmentCB, MixedPrecisionCB

    cbs = []
    if args.bf16:
        cbs.append(MixedPrecisionCB())
    if args.augment:
        cbs.append(BatchAugmentCB(pad=2, flip=True))
    if args.tta:
        cbs.append(TTACB())
    return cbs


NOT_SAVED = ("func", "given", "overwrite", "resume")  # how this process was started, not what the run is


def saved_options(args: argparse.Namespace) -> dict:
    """The options a run folder records (config.json, and metrics.json's config)."""
    return {k: v for k, v in vars(args).items() if k not in NOT_SAVED}


def fit_command(args: argparse.Namespace) -> int:
    """Train (or resume) a run; exit status 0, 3 when it diverged, 128+signal when interrupted.

    Everything the options could get wrong is checked before any folder is made or any process started."""
    from lrlab.train.distributed import init_from_env, launch

    distributed = init_from_env()
    if args.resume:
        args, finished = resumed_options(args)
        if finished:
            return 0
    args.nproc = args.nproc or 1
    resolve_schedule(args)
    validate_fit_options(args, distributed)
    run_dir, lock = open_run_dir(args)
    try:
        if args.nproc > 1 and not distributed:  # launch the ranks, each trains in this same folder
            options = {k: v for k, v in vars(args).items() if k != "func"}
            return launch(distributed_entry, args.nproc, {**options, "run_dir": str(run_dir)})
        return train(args, run_dir)
    finally:
        if lock is not None:
            lock.release()


DEFAULT_LR = 6e-2  # the lesson's one-cycle peak


def resolve_schedule(args: argparse.Namespace) -> None:
    """--auto is --sched autolr (AutoLR sets the lr: no --lr to choose, its search starts at its own start_lr,
    1e-4, or --sched-arg start_lr=X); without --lr, any other run starts at the lesson's 6e-2.

    Raises:
        ValueError: --auto with another --sched or with --lr, or --sched-step with AutoLR (it steps every batch)."""
    if args.auto and args.sched not in (None, "autolr"):
        raise ValueError(f"--auto lets AutoLR set the lr, so it takes no --sched (got --sched {args.sched})")
    args.sched = "autolr" if args.auto else args.sched or "onecycle"
    args.auto = args.sched == "autolr"
    if args.auto and args.sched_step:
        raise ValueError(f"--sched-step {args.sched_step} does not apply to AutoLR: it steps every batch")
    if args.auto and "lr" in getattr(args, "given", ()):
        raise ValueError(f"--auto searches its own lr, whatever --lr says (got --lr {args.lr:g}): leave --lr out "
                         "(to move where the search starts: --sched-arg start_lr=X)")  # fmt: skip
    if args.lr is None:
        args.lr = auto_start(args.sched_arg) if args.auto else DEFAULT_LR


def auto_start(sched_args: list[str]) -> float:
    """Where AutoLR's search starts: --sched-arg start_lr=X, else AutoLR's own default (1e-4)."""
    import inspect

    from lrlab.tuning.auto_lr import AutoLR

    try:
        return float(key_values(sched_args)["start_lr"])
    except (KeyError, TypeError, ValueError):  # AutoLRCB refuses a bad value with its own message, later
        return inspect.signature(AutoLR).parameters["start_lr"].default


def resumed_options(args: argparse.Namespace) -> tuple[argparse.Namespace, bool]:
    """The interrupted run's own options from its folder; refuses options given now that differ from them.
    Returns (options, finished): a finished run is reported and left as it is."""
    from lrlab.train.runs import RunFolderError, conflicts, finished_summary, saved_config

    run_dir = Path(args.resume)
    saved = saved_config(run_dir)
    given = {k: getattr(args, k) for k in getattr(args, "given", ()) if k not in NOT_SAVED}
    differ = conflicts(saved, given)
    if differ:
        raise RunFolderError(
            f"--resume {run_dir} continues the run with its own options, and these differ: {'; '.join(differ)}; "
            f"leave them out, or start a new run"
        )
    summary = finished_summary(run_dir)
    if summary is not None:
        epochs = len(summary.get("history", []))
        acc = summary.get("test_accuracy")
        print(f"{run_dir} finished already ({epochs} epochs, test accuracy {acc}); nothing to resume, nothing changed")
        return args, True
    if (run_dir / "last.pt").exists():  # a foreign or crafted checkpoint is refused before any work
        from lrlab.train import checkpoint

        check_unedited(run_dir, saved, checkpoint.load(run_dir / "last.pt"))
    kept = {"resume": args.resume, "progress": args.progress, "run_dir": str(run_dir), "overwrite": False}
    return argparse.Namespace(**{**vars(args), **saved, **kept}), False


def trained_options(args: argparse.Namespace) -> dict:
    """The options that decide what a run computes, as JSON has them (what checkpoints keep)."""
    import json

    from lrlab.train.runs import FREE_ON_RESUME

    kept = {k: v for k, v in saved_options(args).items() if k not in (*FREE_ON_RESUME, "run_dir")}
    return json.loads(json.dumps(kept))


def check_unedited(run_dir: Path, saved: dict, ckpt: dict) -> None:
    """Refuse to resume when config.json no longer holds the options the checkpoint was trained with.

    Raises:
        RunFolderError: an option differs (named, with both values)."""
    from lrlab.train.runs import RunFolderError

    trained = ckpt.get("meta", {}).get("config") if isinstance(ckpt.get("meta"), dict) else None
    if not isinstance(trained, dict):  # written before checkpoints kept their options
        return
    now = trained_options(argparse.Namespace(**saved))
    changed = sorted(k for k in set(trained) | set(now) if trained.get(k) != now.get(k))
    if changed:
        parts = [f"{k} {now.get(k)!r} (trained with {trained.get(k)!r})" for k in changed[:5]]
        raise RunFolderError(
            f"{run_dir / 'config.json'} was changed after its checkpoint was written: {'; '.join(parts)}; "
            f"put the options back to resume, or start a new run"
        )


def validate_fit_options(args: argparse.Namespace, distributed: bool) -> None:
    """Build the optimizer and scheduler on a dummy parameter, check the device and the split over processes:
    a mistake is one clear ValueError before any folder, data or process."""
    import torch

    from lrlab.optim.registry import lesson_opt_func
    from lrlab.schedules.torch_schedules import build_sched, checked_lrs, sched_func

    try:
        device = torch.device(args.device) if args.device else None
    except RuntimeError as e:
        raise ValueError(f"--device {args.device!r} is not a device: use cpu, cuda, cuda:1, ...") from e
    if device is not None and device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: this machine has no CUDA device; use --device cpu")
    cores = os.cpu_count() or 1
    if args.threads is not None and args.threads > 4 * cores:
        raise ValueError(f"--threads {args.threads}: this machine has {cores} cores; use at most {4 * cores}")
    try:
        opt = lesson_opt_func(args.opt, **key_values(args.opt_arg))([torch.zeros(1, requires_grad=True)], args.lr)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--opt {args.opt} with --opt-arg {' '.join(args.opt_arg) or '(none)'}: {e}") from e
    if args.auto:
        from lrlab.train.callbacks.anneal import AutoLRCB

        try:
            AutoLRCB(**key_values(args.sched_arg)).build(opt, 1000)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--auto with --sched-arg {' '.join(args.sched_arg)}: {e}") from e
        return check_split_and_data(args, distributed)
    given = f"--sched {args.sched} with --sched-arg {' '.join(args.sched_arg) or '(none)'}"
    try:
        make_sched, step = sched_func(args.sched, args.lr, **key_values(args.sched_arg))
        if make_sched is not None:
            build_sched(make_sched, opt, 1000)
            if step == "batch":  # a few steps too: some arguments fail only when stepped (a step_size of 0)
                checked_lrs(make_sched, 10, lr=args.lr, opt=opt)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{given}: {e}") from e
    check_split_and_data(args, distributed)


def check_split_and_data(args: argparse.Namespace, distributed: bool) -> None:
    """The batch must divide evenly over the processes, and the data be there.

    Raises:
        ValueError: a batch that does not split; DataError: no data."""
    from lrlab.train.distributed import world_size

    world = world_size() if distributed else args.nproc
    if args.bs % world:
        raise ValueError(
            f"--bs {args.bs} must divide evenly over {world} processes (e.g. --bs {args.bs // world * world})"
        )
    n_train = min(args.n_train or 60_000, 60_000)
    if world > 1 and n_train < args.bs:
        raise ValueError(f"--n-train {n_train} cannot fill one batch of {args.bs} split over {world} processes")
    from lrlab.data.fashion_mnist import locate

    locate(args.data_dir)  # the data is there (or downloaded and verified) before any folder is made


def open_run_dir(args: argparse.Namespace):
    """The run folder, locked by this process for the run's duration (rank 0 only), and claimed for a new run:
    a fresh folder per run, or --run-dir, refused when it holds another run unless --overwrite."""
    from lrlab.train.distributed import broadcast_object, is_distributed, is_main
    from lrlab.train.runs import RunLock, claim, new_run_dir

    if args.resume:
        return Path(args.run_dir), RunLock(Path(args.run_dir)) if is_main() else None
    run_dir, lock = None, None
    if is_main():
        if args.run_dir:
            run_dir = Path(args.run_dir)
        else:
            run_dir = new_run_dir(args.out, time.strftime(f"fit-%Y%m%d-%H%M%S-{args.opt}-{args.sched}"))
        lock = RunLock(run_dir)
        try:
            claim(run_dir, saved_options(args), args.overwrite)
        except BaseException:
            lock.release()
            raise
    if is_distributed():  # under torchrun every rank runs this: all use rank 0's folder
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else None))
    return run_dir, lock


def train(args: argparse.Namespace, run_dir: Path) -> int:
    """The fit itself, in a folder already claimed (or resumed); writes metrics.json and plots at the end."""
    import torch
    from torch.nn import functional as F

    from lrlab.data.fashion_mnist import get_dls
    from lrlab.optim.registry import lesson_opt_func
    from lrlab.train.distributed import is_main, world_size
    from lrlab.train.learner import Learner

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    opt_func = lesson_opt_func(args.opt, **key_values(args.opt_arg), **({"compile": True} if args.compile else {}))
    world = world_size()
    dls = get_dls(args.bs // world, data_dir=args.data_dir, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid)
    model = initialized_model(args, dls)
    say = print if is_main() else (lambda *a, **k: None)
    say(describe(args, model, dls, world))
    last = run_dir / "last.pt"
    resume_from = last if args.resume and last.exists() else None  # stopped before its first checkpoint: anew
    if args.resume:
        say(f"resuming {run_dir}" + ("" if resume_from else " from the start (it had written no checkpoint)"))
    say(ROW.format(epoch="epoch", train_loss="train loss", valid_loss="valid loss", valid_acc="valid acc",
                     seconds="seconds"))  # fmt: skip
    cbs, parts = run_callbacks(args, run_dir, say)
    loss_func = partial(F.cross_entropy, label_smoothing=args.label_smoothing)
    learn = Learner(model, dls, loss_func=loss_func, lr=args.lr, cbs=cbs, opt_func=opt_func)
    start = time.perf_counter()
    stopped = fit_or_stop(learn, args.epochs, resume_from, run_dir)
    if stopped is not None:
        return stopped
    wall = time.perf_counter() - start
    if world > 1:  # every rank leaves proof that its parameters equal the others'
        from lrlab.train.distributed import rank

        digest = params_digest(learn.model)
        atomic_write_text(run_dir / f"rank{rank()}.sha256", digest + "\n")
    if is_main():
        write_results(args, run_dir, parts, wall)
    return 0


def describe(args: argparse.Namespace, model, dls, world: int) -> str:
    """The run's first line: model, optimizer, schedule, data."""
    from lrlab.models import n_params

    return (
        f"{'lesson CNN' if args.model == 'cnn' else args.model}{' without BatchNorm' if args.no_norm else ''} "
        f"({n_params(model):,} parameters, {args.init} init), {args.opt}, "
        + (f"AutoLR (search from lr {args.lr:g}), " if args.auto else f"lr {args.lr:g}, schedule {args.sched}, ")
        + f"{args.epochs} epochs, batch size {args.bs}, {len(dls.train.ds):,} train / {len(dls.valid.ds):,} test images"
        + (f", {world} processes" if world > 1 else "")
    )


def run_callbacks(args: argparse.Namespace, run_dir: Path, say) -> tuple[list, dict]:
    """The callbacks of `lrlab fit`, and those whose records make the results ({"metrics", "recorder", ...})."""
    from lrlab.schedules.torch_schedules import sched_func
    from lrlab.train.callbacks import (
        BatchSchedCB,
        CheckpointCB,
        DeviceCB,
        DivergenceGuardCB,
        EpochSchedCB,
        MetricsCB,
        ProgressCB,
        RecorderCB,
    )  # fmt: skip
    from lrlab.train.callbacks.ddp import DDPCB
    from lrlab.train.callbacks.recorder import loss_value, lr_of, mom_of
    from lrlab.train.distributed import is_main

    parts = {
        "metrics": MetricsCB(log=lambda row: say(_fmt(row), flush=True)),
        "recorder": RecorderCB(lr=lr_of(0), mom=mom_of(0), loss=loss_value),
    }
    # a smoothed training loss 10x its best is divergence, not noise: stop before it reaches a checkpoint
    cbs = [DeviceCB(args.device), *parts.values(), DivergenceGuardCB(factor=10.0), DDPCB()]
    # the options it trains with travel in every checkpoint: a config.json edited by hand is caught on resume
    cbs.append(CheckpointCB(run_dir, every=args.checkpoint_every, meta={"config": trained_options(args)}))
    if args.auto:  # AutoLR sets the lr: its search, hold and decay; --sched-arg K=V are its settings
        import warnings

        from lrlab.train.callbacks.anneal import AutoLRCB

        # a run too short to search is said in AutoLR's own line after the fit (describe_autolr), once
        warnings.filterwarnings("ignore", message="AutoLR: a run of", category=UserWarning)
        parts["autolr"] = AutoLRCB(**key_values(args.sched_arg))
        cbs.append(parts["autolr"])
        make_sched = None
    else:
        make_sched, natural_step = sched_func(args.sched, args.lr, **key_values(args.sched_arg))
    if make_sched is not None:
        step = args.sched_step or natural_step
        cbs.append(BatchSchedCB(make_sched) if step == "batch" else EpochSchedCB(make_sched))
    if args.progress and sys.stderr.isatty() and is_main():
        cbs.append(ProgressCB())
    if args.hyper:  # momentum, betas, weight decay ramped over the fit, beside the lr schedule
        from lrlab.schedules.phased import HyperScheduler, parse_ramp

        cbs.append(BatchSchedCB(functools.partial(HyperScheduler, **dict(parse_ramp(t) for t in args.hyper))))
    if args.opt == "schedulefree_adamw":  # its averaged weights for validation and the saved model
        from lrlab.train.callbacks.lrfree import ScheduleFreeCB

        cbs.append(ScheduleFreeCB())
    if args.stats:
        from lrlab.train.callbacks import ActivationStats, GradientStats

        parts.update(act_stats=ActivationStats(), grad_stats=GradientStats())
        cbs += [parts["act_stats"], parts["grad_stats"]]
    return cbs + speed_callbacks(args), parts


def fit_or_stop(learn, epochs: int, resume_from: Path | None, run_dir: Path) -> int | None:
    """Fit; None when it ran to its end, else the exit status after saying why it stopped and how to go on."""
    from lrlab.train.callbacks import Diverged, TrainingInterrupted
    from lrlab.train.distributed import is_main
    from lrlab.tuning.auto_lr import AutoLRError

    last = run_dir / "last.pt"
    try:
        learn.fit(epochs, resume=resume_from)
    except TrainingInterrupted as e:
        if is_main():
            print(f"\nlrlab: {e}\nresume with: lrlab fit --resume {run_dir}", file=sys.stderr)
        return 128 + e.signum
    except (Diverged, AutoLRError) as e:
        print(f"lrlab: diverged: {e}; {last_good(last)}", file=sys.stderr)
        return 3
    except OSError as e:  # a full disk, a folder gone read-only: the checkpoint before it is intact
        print(f"lrlab: training stopped: {e.strerror or e}; {last_good(last)}; when fixed, resume with: lrlab fit "
              f"--resume {run_dir}", file=sys.stderr)  # fmt: skip
        return 1
    return None


def write_results(args: argparse.Namespace, run_dir: Path, parts: dict, wall: float) -> None:
    """Plots, then metrics.json (last: its presence means the run is finished), and the closing lines."""
    import torch

    from lrlab.plots import plot_losses
    from lrlab.train.runs import write_json

    metrics, recorder = parts["metrics"], parts["recorder"]
    final = metrics.history[-1]
    summary = {
        "config": saved_options(args),
        "history": metrics.history,
        "test_accuracy": final.get("valid_acc"),
        "test_loss": final.get("valid_loss"),
        "wall_seconds": wall,
        "torch": torch.__version__,
    }
    plot_losses(metrics.history, recorder.recs["loss"], run_dir / "loss.png")
    recorder.plot(run_dir / "schedule.png", keys=["lr", "mom"])
    written = ["metrics.json", "loss.png", "schedule.png", "last.pt", "best.pt"]
    if args.stats:
        act_stats, grad_stats = parts["act_stats"], parts["grad_stats"]
        act_stats.color_dim(run_dir / "color_dim.png")
        act_stats.dead_chart(run_dir / "dead.png")
        act_stats.plot_stats(run_dir / "stats.png")
        grad_stats.color_dim(run_dir / "grad_color_dim.png")
        summary["dead_fraction_last_batch"] = act_stats.dead_fraction()[:, -1].tolist()
        written += ["color_dim.png", "dead.png", "stats.png", "grad_color_dim.png"]
    if "autolr" in parts:  # its search and every decision, as data and as a picture
        record = parts["autolr"].summary()
        summary["autolr"] = {k: v for k, v in record.items() if k not in ("events", "decisions")}
        write_json(run_dir / "autolr.json", record)
        parts["autolr"].autolr.plot(run_dir / "autolr.png")
        written += ["autolr.json", "autolr.png"]
        print(describe_autolr(record))
    write_json(run_dir / "metrics.json", summary)
    print(f"test accuracy {final.get('valid_acc', float('nan')):.4f} in {wall:.1f} s")
    print(f"wrote {run_dir}/" + ", ".join(written))


def describe_autolr(summary: dict) -> str:
    """One line on what AutoLR chose."""
    if summary["found_lr"] is None:
        return f"AutoLR: searched from lr {summary['start_lr']:.3g}; the run ended inside the search"
    if not summary.get("searched", True):
        from lrlab.tuning.auto_lr import AutoLR

        return (f"AutoLR: the run is too short to search an lr (under {AutoLR.MIN_STEPS} steps): held the "
                f"optimizer's default lr {summary['found_lr']:.3g}, then decayed to 0; {summary['restores']} "
                "restores")  # fmt: skip
    return (
        f"AutoLR: searched from lr {summary['start_lr']:.3g} for {summary['search_steps']} steps, found lr "
        f"{summary['found_lr']:.3g}, held it, then decayed to 0; {summary['restores']} restores"
    )


def last_good(last: Path) -> str:
    """Where a diverged run can be taken up again: the position of its last checkpoint."""
    from lrlab.train import checkpoint

    if not last.exists():
        return "no checkpoint had been written yet"
    where = checkpoint.position_of(checkpoint.load(last))
    epoch = where["epoch"] + 1
    if where["phase"] == "valid":
        at = f"epoch {epoch} trained, its validation to run"
    else:
        at = f"epoch {epoch}, after batch {where['batch']}" if where["batch"] else f"start of epoch {epoch}"
    return f"the last good checkpoint is {last} ({at})"


def params_digest(model) -> str:
    """SHA-256 of all parameters' bytes: equal digests mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def distributed_entry(options: dict) -> None:
    """What each rank runs under lrlab fit --nproc: the fit in the folder the launcher prepared, then leave the
    process group."""
    import torch.distributed as dist

    from lrlab.files import guard_stdout
    from lrlab.train.distributed import init_from_env

    guard_stdout()
    init_from_env()
    try:
        code = train(argparse.Namespace(**options), Path(options["run_dir"]))
        if code:
            raise SystemExit(code)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
