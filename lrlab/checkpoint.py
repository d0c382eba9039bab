"""Checkpoints that lose nothing: everything a run needs to continue exactly, written atomically."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lrlab.files import atomic_write

VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over the target."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load(path: str | Path) -> dict:
    """Read a checkpoint file (or the last one in a run folder), refusing anything that is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable lrlab checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION:
        raise ValueError(f"{path} is not an lrlab checkpoint (version {VERSION})")
    return ckpt


def check_model(model: torch.nn.Module, state: dict) -> None:
    """Say exactly which keys differ when a checkpoint comes from another architecture."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {', '.join(missing[:10])}")
        if unexpected:
            parts.append(f"not in this model: {', '.join(unexpected[:10])}")
        if shapes:
            parts.append("different shapes: " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:10]))  # fmt: skip
        raise ValueError("the checkpoint was written for another model architecture; " + "; ".join(parts))


def callback_keys(cbs: list) -> list[str]:
    """Stable names for callbacks that have state: class name and occurrence ('RecorderCB#0')."""
    seen: Counter = Counter()
    keys = []
    for cb in cbs:
        name = type(cb).__name__
        keys.append(f"{name}#{seen[name]}")
        seen[name] += 1
    return keys


def capture(learn, epoch: int, batch: int) -> dict:
    """Everything needed to continue at (epoch, batch): model, optimizer, callbacks, loaders, RNGs."""
    cbs = [cb for cb in learn.cbs if hasattr(cb, "state_dict")]
    loaders = {}
    for name in ("train", "valid"):
        dl = getattr(learn.dls, name, None)
        if hasattr(dl, "state_dict"):
            loaders[name] = dl.state_dict()
    if batch and "train" in loaders:  # mid-epoch: replay this epoch's order from the next batch
        loaders["train"] = {**loaders["train"], "epoch": loaders["train"]["epoch"] - 1, "skip": batch}
    model = getattr(learn.model, "module", learn.model)  # unwrap DistributedDataParallel
    return {
        "version": VERSION,
        "position": {"epoch": epoch, "batch": batch},
        "n_epochs": learn.n_epochs,
        "model": model.state_dict(),
        "opt": learn.opt.state_dict(),
        "callbacks": {k: cb.state_dict() for k, cb in zip(callback_keys(cbs), cbs)},
        "loaders": loaders,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }


def restore(learn, ckpt: dict) -> None:
    """Put optimizer, callbacks, loaders and RNGs back (after before_fit, which rebuilds schedulers)."""
    learn.opt.load_state_dict(ckpt["opt"])
    cbs = [cb for cb in learn.cbs if hasattr(cb, "load_state_dict")]
    for key, cb in zip(callback_keys(cbs), cbs):
        if key in ckpt["callbacks"]:
            cb.load_state_dict(ckpt["callbacks"][key])
    for name, state in ckpt["loaders"].items():
        dl = getattr(learn.dls, name, None)
        if hasattr(dl, "load_state_dict"):
            dl.load_state_dict(state)
    torch.set_rng_state(ckpt["rng"]["torch"])
    random.setstate(ckpt["rng"]["python"])
