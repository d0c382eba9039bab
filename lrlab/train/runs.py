"""Run folders of `lrlab fit`: created without collisions, locked while a process uses them, never silently
replaced, and resumed only with the options they were started with."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from lrlab.files import atomic_write_text

# What a run writes; --overwrite removes exactly these (and the ranks' digests), nothing else of the user's.
RUN_FILES = (
    "config.json",
    "last.pt",
    "best.pt",
    "metrics.json",
    "loss.png",
    "schedule.png",
    "autolr.json",
    "autolr.png",
    "color_dim.png",
    "dead.png",
    "stats.png",
    "grad_color_dim.png",
)
# Options that may differ on --resume: how the run is shown, not what it computes.
FREE_ON_RESUME = ("resume", "progress")


class RunFolderError(ValueError):
    """A run folder cannot be used as asked; the message says why and what to do."""


def run_files(folder: Path) -> list[str]:
    """The files of an lrlab run present in a folder."""
    if not folder.is_dir():
        return []
    found = [name for name in RUN_FILES if (folder / name).exists()]
    return found + sorted(p.name for p in folder.glob("rank*.sha256"))


def new_run_dir(parent: str | Path, stem: str) -> Path:
    """Create a fresh folder parent/stem (stem-2, stem-3, ... when taken): runs started in the same second,
    in any number of processes, each get their own, since creating a folder is atomic."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunFolderError(f"{parent} already holds 10,000 runs named {stem}*; use --out or --run-dir")


class RunLock:
    """An exclusive lock on a run folder for one process's lifetime (flock: released even on SIGKILL).

    Raises:
        RunFolderError: another process holds the folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunFolderError(
                f"{folder} is in use by another lrlab process (pid {holder}); wait for it to finish or stop it"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def claim(folder: Path, config: dict, overwrite: bool = False) -> None:
    """Make `folder` (already locked) this new run's: refuse a folder holding another run unless `overwrite`,
    which first removes that run's files; then write config.json atomically.

    Raises:
        RunFolderError: the folder holds a run and overwrite is False."""
    found = run_files(folder)
    if found and not overwrite:
        raise RunFolderError(
            f"{folder} already holds a run ({', '.join(found)}); continue it with --resume {folder}, "
            f"replace it with --overwrite, or choose another --run-dir"
        )
    for name in found:
        (folder / name).unlink(missing_ok=True)
    write_json(folder / "config.json", config)


def write_json(path: Path, obj: object) -> Path:
    """JSON written atomically: a crash leaves the previous file or the new one, never half of one."""
    return atomic_write_text(path, json.dumps(obj, indent=2))


def saved_config(folder: Path) -> dict:
    """The options a run folder was started with.

    Raises:
        RunFolderError: not a run folder, or its config.json is unreadable."""
    path = folder / "config.json"
    if not path.exists():
        raise RunFolderError(f"{folder} is not a run folder of lrlab fit (no config.json)")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} is not valid JSON ({e}); it should hold the run's options") from e
    if not isinstance(saved, dict):
        raise RunFolderError(f"{path} should hold an object of options, got {type(saved).__name__}")
    return saved


def conflicts(saved: dict, given: dict) -> list[str]:
    """The options given on the command line that differ from the run's own, as '--name VALUE (the run has X)'."""
    out = []
    for key, value in sorted(given.items()):
        if key in FREE_ON_RESUME or saved.get(key, value) == value:
            continue
        if isinstance(value, (list, tuple)) and list(value) == list(saved.get(key) or []):
            continue
        flag = "--" + key.replace("_", "-")
        out.append(f"{flag} {value!r} (the run has {saved[key]!r})")
    return out


def finished_summary(folder: Path) -> dict | None:
    """metrics.json of a run that ran to its end (it is written last), or None."""
    path = folder / "metrics.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
