"""Data-parallel training on torch.distributed: process group from the environment, DDP, sharded loaders.

The same Learner, callbacks and CLI run under `torchrun` (one or many hosts) or `lrlab fit --nproc N`.
BatchNorm: SyncBatchNorm needs GPUs (nccl), so under gloo on CPU each rank normalizes its own share of the
batch, and rank 0's running statistics are the ones checkpointed; under nccl SyncBatchNorm is used.
"""

from __future__ import annotations

import datetime
import os
import signal
import uuid
from collections.abc import Callable

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 120


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only rank 0 prints, shows progress, plots and writes checkpoints."""
    return rank() == 0


def init_from_env(timeout_s: float | None = None) -> bool:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU), with a
    timeout so a rank that stops answering is cut off; returns False when not launched distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    timeout_s = timeout_s or float(os.environ.get("LRLAB_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def all_sum(values: list[float]) -> list[float]:
    """Sum numbers over all ranks (identity on one process)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: object) -> list:
    """Every rank's value of a small picklable object, in rank order, on rank 0 ([] elsewhere; [obj] alone)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out if rank() == 0 else []


def broadcast_object(obj: object) -> object:
    """Rank 0's value of a small picklable object, on every rank (identity on one process)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def launch(entry: Callable, nproc: int, *args, timeout_s: float | None = None) -> int:
    """Run entry(*args) in `nproc` local processes through torch.distributed's elastic launcher
    (rendezvous on loopback, an OS-chosen port). Returns 0, or 1 after printing each failed rank's error."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    cores = os.cpu_count() or 1
    threads = max(1, cores // nproc)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # one thread each when the processes fill the cores
    if timeout_s is not None:
        os.environ["LRLAB_DIST_TIMEOUT"] = str(timeout_s)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"lrlab-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    try:
        elastic_launch(config, entry)(*args)
    except SignalException as e:  # Ctrl-C or SIGTERM: the ranks checkpoint together and stop; so do we
        import sys

        print(f"lrlab: the launcher was stopped by {signal.Signals(e.sigval).name}", file=sys.stderr)
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        import sys

        for failed_rank, failure in sorted(e.failures.items()):
            message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
            print(f"lrlab: training process {failed_rank} failed (exit code {failure.exitcode}):\n{message}",
                  file=sys.stderr)  # fmt: skip
        return 1
    return 0
