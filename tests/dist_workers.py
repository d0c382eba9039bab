"""Functions that each rank of a test's distributed run executes (importable by spawned processes)."""

from __future__ import annotations

import time

import torch.distributed as dist

from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.ddp import DDPCB
from lrlab.train.distributed import init_from_env, rank
from lrlab.train.learner import Callback, Learner
from tests.conftest import tiny_dls, tiny_model


class Misbehave(Callback):
    def __init__(self, bad_rank: int, how: str) -> None:
        self.bad_rank, self.how = bad_rank, how

    def after_batch(self, learn):
        if rank() == self.bad_rank and learn.training and learn.iter == 2:
            if self.how == "raise":
                raise RuntimeError(f"boom in a callback on rank {rank()}")
            time.sleep(600)  # stops answering


def misbehaving_fit(bad_rank: int, how: str) -> None:
    init_from_env()
    try:
        cbs = [DDPCB(), MetricsCB(), Misbehave(bad_rank, how)]
        Learner(tiny_model(), tiny_dls(n=512, bs=16), lr=0.01, cbs=cbs).fit(3)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
