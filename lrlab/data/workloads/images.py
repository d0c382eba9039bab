"""Image classification: Fashion-MNIST with three networks, and MNIST-1D (generated, no download)."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import Workload, majority_accuracy
from lrlab.data.workloads.tabular import mlp
from lrlab.models import lesson_cnn, resnet


def fashion(seed: int, batch_size: int) -> DataLoaders:
    """Fashion-MNIST (found as `lrlab.data` finds it: LRLAB_DATA, the cache, Debian's package, download)."""
    from lrlab.data.fashion_mnist import get_dls

    return get_dls(batch_size, seed=seed)


def mnist1d(seed: int, batch_size: int) -> DataLoaders:
    """MNIST-1D with the package's default settings (5,000 sequences of 40 values, 4,000 to train),
    generated from its fixed seed; the global random generators it seeds are put back."""
    from mnist1d.data import get_dataset_args, make_dataset

    saved = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    x, x_test = (torch.tensor(data[k], dtype=torch.float32).unsqueeze(1) for k in ("x", "x_test"))
    y, y_test = (torch.tensor(data[k], dtype=torch.int64) for k in ("y", "y_test"))
    return DataLoaders.from_tensors(x, y, x_test, y_test, batch_size, seed=seed)


def conv1d_net(n_classes: int = 10) -> nn.Sequential:
    """Three 1-D convolutions with BatchNorm, global average pooling, a linear head."""

    def block(ni: int, nf: int, stride: int) -> list[nn.Module]:
        return [nn.Conv1d(ni, nf, 3, stride=stride, padding=1, bias=False), nn.BatchNorm1d(nf), nn.ReLU()]

    return nn.Sequential(*block(1, 32, 1), *block(32, 64, 2), *block(64, 64, 2), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(64, n_classes))  # fmt: skip


WORKLOADS = [
    Workload("fmnist-cnn", "Fashion-MNIST, the lesson CNN (BatchNorm)", fashion, lesson_cnn, F.cross_entropy,
             "accuracy", epochs=5, batch_size=256, target=0.88, baseline=majority_accuracy,
             eval_subset=2000),
    Workload("fmnist-mlp", "Fashion-MNIST, MLP 784-256-128-10, no normalization layers", fashion,
             lambda: nn.Sequential(nn.Flatten(), mlp((784, 256, 128, 10))), F.cross_entropy, "accuracy", epochs=5,
             batch_size=256, target=0.86, baseline=majority_accuracy, eval_subset=2000),
    Workload("fmnist-resnet", "Fashion-MNIST, a small ResNet (ResBlocks 8-16-32-64, pooled)", fashion,
             lambda: resnet((8, 16, 32, 64), pool=True), F.cross_entropy, "accuracy", epochs=2, batch_size=256,
             target=0.89, baseline=majority_accuracy, eval_subset=2000),
    Workload("mnist1d", "MNIST-1D (generated), a 1-D CNN with BatchNorm", mnist1d, conv1d_net, F.cross_entropy,
             "accuracy", epochs=15, batch_size=128, target=0.95, baseline=majority_accuracy),
]  # fmt: skip
