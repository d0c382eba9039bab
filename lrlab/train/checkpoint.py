"""Checkpoints that lose nothing: everything a run needs to continue exactly, written atomically."""

from __future__ import annotations

import io
import pickle
import random
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lrlab.files import atomic_write

VERSION = 1
PHASES = ("train", "valid")


def to_bytes(obj: Any) -> bytes:
    """Serialize once, to write the same bytes to several files (best.pt and last.pt)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over the target."""
    data = obj if isinstance(obj, bytes) else to_bytes(obj)
    return atomic_write(path, lambda f: f.write(data))


def load(path: str | Path) -> dict:
    """Read a checkpoint file (or the last one in a run folder), refusing anything that is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    try:  # weights_only: a crafted file cannot run code; lrlab's checkpoints hold only tensors and plain data
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if blocked:  # the file asks to import and call something
            raise ValueError(f"{path} is not a plain-data lrlab checkpoint; refused to load it ({blocked})") from e
        raise ValueError(f"{path} is not a readable lrlab checkpoint (not a torch.save file)") from e
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path} is not a readable lrlab checkpoint: {type(e).__name__}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION:
        raise ValueError(f"{path} is not an lrlab checkpoint (version {VERSION})")
    return ckpt


def position_of(ckpt: dict) -> dict:
    """Where a checkpoint resumes: {"epoch", "phase", "batch"} (older checkpoints had no phase)."""
    position = {"phase": "train", **ckpt["position"]}
    if position["phase"] not in PHASES:
        raise ValueError(f"checkpoint position has an unknown phase {position['phase']!r}")
    return position


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


def rank_state(learn, rng: dict | None = None) -> dict:
    """What differs between processes of a distributed run: callbacks' state (their own losses and partial
    sums), the random generators (`rng` when given: as they stood at an earlier point the checkpoint resumes
    from), and in a distributed run the model's buffers (each rank keeps its own BatchNorm statistics). Each
    rank's is saved, and each rank gets its own back."""
    from lrlab.train.distributed import is_distributed

    cbs = [cb for cb in learn.cbs if hasattr(cb, "state_dict")]
    state = {
        "callbacks": {k: cb.state_dict() for k, cb in zip(callback_keys(cbs), cbs)},
        "rng": rng or {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    if is_distributed():
        model = getattr(learn.model, "module", learn.model)
        state["buffers"] = {name: b.detach().cpu().clone() for name, b in model.named_buffers()}
    return state


def resumable(loader) -> bool:
    """Whether a loader can save where it stands and restart mid-epoch (lrlab's loaders can, torch's cannot)."""
    return hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict")


def capture(
    learn,
    epoch: int,
    batch: int,
    phase: str = "train",
    ranks: list[dict] | None = None,
    rng: dict | None = None,
    meta: dict | None = None,
) -> dict:
    """Everything needed to continue at (epoch, phase, batch): model, optimizer, callbacks, loaders, RNGs.

    (e, "train", 0): epoch e has not started; (e, "train", b): its first b training batches are done;
    (e, "valid", 0): its training is done and its validation is to run (validation restarts whole).
    `ranks`: every process's rank_state, in a distributed run (gathered by the caller on all ranks); `rng`: the
    random generators to save instead of the current ones (for "valid": as validation began); `meta`: plain data
    the caller keeps with the checkpoint (lrlab fit: the options the run is trained with)."""
    from lrlab.train.distributed import world_size

    if phase not in PHASES or (phase == "valid" and batch):
        raise ValueError(f"a checkpoint position is (epoch, 'train', batch) or (epoch, 'valid', 0), got {phase!r}")
    if phase == "train" and batch and not resumable(learn.dls.train):
        raise ValueError(
            f"a {type(learn.dls.train).__name__} cannot restart in the middle of an epoch, so no checkpoint can "
            f"be taken at batch {batch}: serve its dataset with TorchLoader (DataLoaders.from_datasets) or "
            f"checkpoint at epoch ends"
        )
    own = ranks[0] if ranks else rank_state(learn, rng)
    loaders = {}
    for name in ("train", "valid"):
        dl = getattr(learn.dls, name, None)
        if hasattr(dl, "state_dict"):
            loaders[name] = dl.state_dict()
    if phase == "train" and batch and "train" in loaders:  # mid-epoch: replay this epoch's order from there
        loaders["train"] = {**loaders["train"], "epoch": loaders["train"]["epoch"] - 1, "skip": batch}
    model = getattr(learn.model, "module", learn.model)  # unwrap DistributedDataParallel
    return {
        "version": VERSION,
        "position": {"epoch": epoch, "phase": phase, "batch": batch},
        "n_epochs": learn.n_epochs,
        "world_size": world_size(),
        "model": model.state_dict(),
        "opt": learn.opt.state_dict(),
        "callbacks": own["callbacks"],
        "loaders": loaders,
        "rng": own["rng"],
        **({"ranks": ranks} if ranks and len(ranks) > 1 else {}),
        **({"meta": meta} if meta is not None else {}),
    }


def restore(learn, ckpt: dict) -> dict:
    """Put optimizer, callbacks, loaders and RNGs back (after before_fit, which rebuilds schedulers); return
    the position to continue from. Refuses a checkpoint of another world size or length of fit."""
    from lrlab.train.distributed import rank, world_size

    saved_world = ckpt.get("world_size", 1)
    if saved_world != world_size():
        raise ValueError(
            f"this checkpoint was written by a run on {saved_world} process(es) and cannot continue exactly on "
            f"{world_size()}: the batches per epoch and the schedule differ; resume it on {saved_world} "
            f"(lrlab fit --resume uses the run's own --nproc), or start a new run"
        )
    if ckpt.get("n_epochs", learn.n_epochs) != learn.n_epochs:
        raise ValueError(
            f"this checkpoint belongs to a fit of {ckpt['n_epochs']} epochs, not {learn.n_epochs}: "
            f"resume with the same number of epochs"
        )
    position = position_of(ckpt)
    own = ckpt["ranks"][rank()] if "ranks" in ckpt else ckpt
    learn.opt.load_state_dict(ckpt["opt"])
    cbs = [cb for cb in learn.cbs if hasattr(cb, "load_state_dict")]
    for key, cb in zip(callback_keys(cbs), cbs):
        if key in own["callbacks"]:
            cb.load_state_dict(own["callbacks"][key])
    for name, state in ckpt["loaders"].items():
        dl = getattr(learn.dls, name, None)
        if hasattr(dl, "load_state_dict"):
            dl.load_state_dict(state)
    if "buffers" in own:  # this rank's own statistics, over the ones DDP copied from rank 0
        buffers = dict(getattr(learn.model, "module", learn.model).named_buffers())
        with torch.no_grad():
            for name, value in own["buffers"].items():
                buffers[name].copy_(value)
    torch.set_rng_state(own["rng"]["torch"])
    random.setstate(_as_python_rng_state(own["rng"]["python"]))
    return position


def _as_python_rng_state(state) -> tuple:
    """random.setstate needs tuples; a plain-data load may hand back lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
