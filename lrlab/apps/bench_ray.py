"""The bench's grid on Ray (optional: pip install 'lrlab[ray]'): one Ray task per run, on a local Ray or a
cluster. Each task returns its whole result and the driver writes it, so a worker that dies (killed, out of
memory, its machine gone) leaves no file, and a rerun of the same command finishes only what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch


def _ray_job(run: Callable[..., tuple], job: tuple[str, str, int], threads: int) -> tuple:
    torch.set_num_threads(threads)
    return run(job)


def start_ray(address: str | None):
    """Ray, started or joined: `address` (a cluster), or a local instance on this machine's cores that
    listens on loopback only."""
    try:
        import ray
    except ImportError:
        raise ImportError("--executor ray needs the ray package: pip install 'lrlab[ray]'") from None
    if not ray.is_initialized():
        where = {"address": address} if address else {"num_cpus": os.cpu_count() or 1, "_node_ip_address": "127.0.0.1"}
        ray.init(include_dashboard=False, log_to_driver=False, **where)
    return ray


def run_on_ray(
    todo: list[tuple[int, tuple[str, str, int]]],
    run: Callable[..., tuple],
    threads: int,
    address: str | None,
    save: Callable[[int, tuple[str, str, int], dict], None],
) -> list[tuple[str, str, int]]:
    """Submit every run of `todo` ((number, job) pairs) as a task of `threads` CPUs that calls run(job);
    save each result as it comes back. Returns the jobs whose task failed (their worker died, or the run raised)."""
    ray = start_ray(address)
    task = ray.remote(num_cpus=threads, max_retries=0)(_ray_job)
    submitted = {task.remote(run, job, threads): (k, job) for k, job in todo}
    pending, failed = list(submitted), []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        k, job = submitted[done[0]]
        try:
            _, record = ray.get(done[0])
        except ray.exceptions.RayError:
            failed.append(job)
            continue
        save(k, job, record)
    return failed
