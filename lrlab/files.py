"""Writing files so that a crash never leaves a half-written one in place, and printing so that a closed pipe
(`lrlab ... | head`) never stops a run."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_TEMP_PREFIX, _TEMP_SUFFIX = ".{name}.", ".tmp"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call write(f) on a temporary file beside `path`, fsync it, then rename it over `path`: a crash, a full
    disk or Ctrl-C leaves the previous file or the new one, never a mix. The file gets the permissions a plain
    open() would give (the replaced file's, or the umask's), not the temporary file's private ones.

    A symbolic link is followed: the file it points to is replaced and the link stays, as open() would write
    through it. Returns the path written (the link's target for a link).

    Raises:
        ValueError: `path` is a directory, a device, a pipe or a socket: renaming over it would replace that
            with a file, so it is refused.
        OSError: the write itself fails (a full disk, no permission)."""
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX.format(name=path.name), suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def check_replaceable(path: Path) -> None:
    """Refuse a target that exists and is not a regular file (see atomic_write)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
        kind = next((name for test, name in kinds if test(mode)), "not a regular file")
        raise ValueError(f"{path} is {kind}: lrlab writes its files only over regular files; choose a file name")


def _mode_for(path: Path) -> int:
    """The replaced file's permission bits, or what the umask allows a new file."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """atomic_write for text (UTF-8)."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def stale_temporaries(path: str | Path) -> list[Path]:
    """The temporary files an interrupted atomic_write of `path` left behind (a SIGKILL skips the cleanup)."""
    path = Path(path)
    return sorted(path.parent.glob(_TEMP_PREFIX.format(name=path.name) + "*" + _TEMP_SUFFIX))


class PipeSafeStdout:
    """Standard output that a closed pipe (`lrlab fit | head -3`) cannot stop: the first failed write says so
    once on stderr and sends the rest to /dev/null, so the command still finishes and writes its files."""

    def __init__(self, stream) -> None:
        self.stream, self.closed_pipe = stream, False

    def _closed(self) -> None:
        self.closed_pipe = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())  # Python's own flush at exit must not fail either
        os.close(devnull)
        print("lrlab: standard output was closed; carrying on without it (files are still written)", file=sys.stderr)

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._closed()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def guard_stdout() -> None:
    """Route this process's prints through PipeSafeStdout (once)."""
    if not isinstance(sys.stdout, PipeSafeStdout) and sys.stdout is not None:
        sys.stdout = PipeSafeStdout(sys.stdout)
