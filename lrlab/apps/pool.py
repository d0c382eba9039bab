"""Where the bench's runs execute: this process with a set number of torch threads, or a pool of fresh
processes that share the cores and die with their parent."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op threads set to `threads` for the block (None: left as they are)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the pool
    if sys.platform == "linux":  # a parent killed outright (SIGKILL) takes its workers with it
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def parallel(jobs: int, threads: int):
    """A pool of `jobs` fresh processes (spawned: no state shared with this one), each with `threads` torch
    threads. Leaving the block early (an error, Ctrl-C, SIGTERM) terminates them: the runs in progress are
    lost, never half-written, and a rerun does them again."""
    pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_start_worker, initargs=(threads,))
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
