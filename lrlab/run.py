"""`lrlab fit`: one training run of the lesson CNN, with its run folder, checkpoints and plots."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

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


def opt_defaults(name: str) -> dict:
    """The CLI's recipe: the lesson's eps for adaptive optimizers; Adam also gets AdamW's weight decay."""
    return {"adam": {"eps": 1e-5, "weight_decay": 1e-2}, "rmsprop": {"eps": 1e-5}}.get(name, {}).copy()


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
    from lrlab.callbacks.speed import TTACB, BatchAugmentCB, MixedPrecisionCB

    cbs = []
    if args.bf16:
        cbs.append(MixedPrecisionCB())
    if args.augment:
        cbs.append(BatchAugmentCB(pad=2, flip=True))
    if args.tta:
        cbs.append(TTACB())
    return cbs


def fit_command(args: argparse.Namespace) -> int:
    """Train (or resume) a run; exit status 0, 3 when it diverged, 128+signal when interrupted."""
    import torch
    from torch.nn import functional as F

    from lrlab.callbacks import DeviceCB, MetricsCB, ProgressCB
    from lrlab.callbacks.checkpoint import CheckpointCB, Diverged, DivergenceGuardCB, TrainingInterrupted
    from lrlab.callbacks.recorder import RecorderCB, loss_value, lr_of, mom_of
    from lrlab.callbacks.schedule import BatchSchedCB, EpochSchedCB
    from lrlab.data import get_dls
    from lrlab.distributed import DDPCB, init_from_env, is_main, launch, world_size
    from lrlab.learner import Learner
    from lrlab.models import n_params
    from lrlab.optim import get_opt_func
    from lrlab.plots import plot_losses
    from lrlab.schedules import sched_func

    distributed = init_from_env()
    resume = args.resume
    if args.nproc > 1 and not distributed:  # launch the ranks, each runs this same command
        if not args.run_dir and not resume:
            args.run_dir = str(Path(args.out) / time.strftime(f"fit-%Y%m%d-%H%M%S-{args.opt}-{args.sched}"))
        return launch(distributed_entry, args.nproc, {k: v for k, v in vars(args).items() if k != "func"})
    if resume:  # the interrupted run's own options, from its folder
        run_dir = Path(resume)
        config_path = run_dir / "config.json"
        if not config_path.exists():
            raise ValueError(f"{run_dir} is not a run folder of lrlab fit (no config.json)")
        try:
            saved = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON ({e}); it should hold the run's options") from e
        if not isinstance(saved, dict):
            raise ValueError(f"{config_path} should hold an object of options, got {type(saved).__name__}")
        keep = {"resume": resume, "progress": args.progress, "nproc": args.nproc}
        args = argparse.Namespace(**{**vars(args), **saved, **keep})  # options added since keep their defaults
    else:
        stamp = time.strftime(f"fit-%Y%m%d-%H%M%S-{args.opt}-{args.sched}")
        run_dir = Path(args.run_dir) if args.run_dir else Path(args.out) / stamp
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in vars(args).items() if k != "func"}
        if is_main():
            (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    opt_kwargs = opt_defaults(args.opt)
    opt_kwargs.update(key_values(args.opt_arg))
    if args.compile:
        opt_kwargs["compile"] = True
    opt_func = get_opt_func(args.opt, **opt_kwargs)
    make_sched, natural_step = sched_func(args.sched, args.lr, **key_values(args.sched_arg))
    world = world_size()
    if args.bs % world:
        raise ValueError(f"the batch size {args.bs} must divide evenly over {world} processes")
    dls = get_dls(args.bs // world, data_dir=args.data_dir, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid)
    model = initialized_model(args, dls)
    say = print if is_main() else (lambda *a, **k: None)

    say(
        f"{'lesson CNN' if args.model == 'cnn' else args.model}{' without BatchNorm' if args.no_norm else ''} "
        f"({n_params(model):,} parameters, {args.init} init), "
        f"{args.opt}, lr {args.lr:g}, schedule {args.sched}, "
        f"{args.epochs} epochs, batch size {args.bs}, {len(dls.train.ds):,} train / {len(dls.valid.ds):,} test images"
        + (f", {world} processes" if world > 1 else "")
    )
    if resume:
        say(f"resuming {run_dir}")
    say(ROW.format(epoch="epoch", train_loss="train loss", valid_loss="valid loss", valid_acc="valid acc",
                     seconds="seconds"))  # fmt: skip
    metrics = MetricsCB(log=lambda row: say(_fmt(row), flush=True))
    recorder = RecorderCB(lr=lr_of(0), mom=mom_of(0), loss=loss_value)
    cbs = [DeviceCB(args.device), metrics, recorder, DivergenceGuardCB(), DDPCB()]
    cbs.append(CheckpointCB(run_dir, every=args.checkpoint_every))
    if make_sched is not None:
        step = args.sched_step or natural_step
        cbs.append(BatchSchedCB(make_sched) if step == "batch" else EpochSchedCB(make_sched))
    if args.progress and sys.stderr.isatty() and is_main():
        cbs.append(ProgressCB())
    if args.stats:
        from lrlab.callbacks.stats import ActivationStats, GradientStats

        act_stats, grad_stats = ActivationStats(), GradientStats()
        cbs += [act_stats, grad_stats]
    cbs += speed_callbacks(args)
    loss_func = partial(F.cross_entropy, label_smoothing=args.label_smoothing)
    learn = Learner(model, dls, loss_func=loss_func, lr=args.lr, cbs=cbs, opt_func=opt_func)
    start = time.perf_counter()
    try:
        learn.fit(args.epochs, resume=run_dir / "last.pt" if resume else None)
    except TrainingInterrupted as e:
        print(f"\nlrlab: {e}\nresume with: lrlab fit --resume {run_dir}", file=sys.stderr)
        return 128 + e.signum
    except Diverged as e:
        last = run_dir / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no epoch had finished yet"
        print(f"lrlab: diverged: {e}; {kept}", file=sys.stderr)
        return 3
    wall = time.perf_counter() - start
    if world > 1:  # every rank leaves proof that its parameters equal the others'
        from lrlab.distributed import rank

        digest = params_digest(learn.model)
        (run_dir / f"rank{rank()}.sha256").write_text(digest + "\n")
    if not is_main():
        return 0

    final = metrics.history[-1]
    summary = {
        "config": {k: v for k, v in vars(args).items() if k != "func"},
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
        act_stats.color_dim(run_dir / "color_dim.png")
        act_stats.dead_chart(run_dir / "dead.png")
        act_stats.plot_stats(run_dir / "stats.png")
        grad_stats.color_dim(run_dir / "grad_color_dim.png")
        summary["dead_fraction_last_batch"] = act_stats.dead_fraction()[:, -1].tolist()
        written += ["color_dim.png", "dead.png", "stats.png", "grad_color_dim.png"]
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"test accuracy {final.get('valid_acc', float('nan')):.4f} in {wall:.1f} s")
    print(f"wrote {run_dir}/" + ", ".join(written))
    return 0


def params_digest(model) -> str:
    """SHA-256 of all parameters' bytes: equal digests mean bit-identical weights."""
    import hashlib

    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def distributed_entry(options: dict) -> None:
    """What each rank runs under lrlab fit --nproc: the same fit, then leave the process group."""
    import torch.distributed as dist

    from lrlab.distributed import init_from_env

    init_from_env()
    try:
        code = fit_command(argparse.Namespace(**{**options, "nproc": 1}))
        if code:
            raise SystemExit(code)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
