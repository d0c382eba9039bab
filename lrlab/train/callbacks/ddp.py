"""DDPCB: data-parallel training for the Learner (the primitives it uses live in lrlab.train.distributed)."""

from __future__ import annotations

import torch.distributed as dist
from torch import nn

from lrlab.train import distributed
from lrlab.train.learner import Callback, Learner


class DDPCB(Callback):
    """Wrap the model in DistributedDataParallel and shard the loaders across ranks, for the whole fit."""

    order = -15

    def before_fit(self, learn: Learner) -> None:
        if not distributed.is_distributed():
            return
        for name in ("train", "valid"):  # first: nothing is wrapped when a loader is refused
            if not hasattr(getattr(learn.dls, name), "shard"):  # every rank would train on all the data
                raise ValueError(
                    f"the {name} loader ({type(getattr(learn.dls, name)).__name__}) cannot be sharded across "
                    f"{distributed.world_size()} processes: use lrlab's DataLoader or TorchLoader "
                    f"(DataLoaders.from_tensors / from_datasets)"
                )
        if not isinstance(learn.model, nn.parallel.DistributedDataParallel):
            model = learn.model
            if dist.get_backend() == "nccl":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # each rank keeps its own BatchNorm statistics (no buffer sync in forward); rank 0's are saved
            learn.model = nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)
        for dl in (learn.dls.train, learn.dls.valid):
            dl.shard(distributed.rank(), distributed.world_size())

    def cleanup_fit(self, learn: Learner) -> None:
        if isinstance(learn.model, nn.parallel.DistributedDataParallel):
            learn.model = learn.model.module
