"""The command line: ``main`` (every subcommand but the lab's), ``lab`` (the spreadsheet lab's commands) and
``console`` (argument types, one-line errors, a stdout that survives a closed pipe). The only door that
knows everything."""

from __future__ import annotations

import os
import signal
import sys
import threading


def in_import(frame) -> bool:
    """Whether Python is in the middle of importing a module at this frame."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def interrupt_between_imports(signum: int, frame) -> None:
    """Ctrl-C as KeyboardInterrupt, but never inside an import: a module cut off half-way is left half-built
    (numpy, matplotlib and torch then fail in strange ways or swallow the interrupt), so the signal is sent
    again a moment later, until it lands between imports."""
    if in_import(frame):
        threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
        return
    raise KeyboardInterrupt


def run() -> int:
    """The `lrlab` console script: main() with its imports inside, so a Ctrl-C while torch and the data load
    (the first seconds of every command) stops in one line, as it does later."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell ignores it (a & job)
        signal.signal(signal.SIGINT, interrupt_between_imports)
    try:
        from lrlab.cli.main import main

        return main()
    except KeyboardInterrupt:
        print("\nlrlab: interrupted", file=sys.stderr)
        return 130
