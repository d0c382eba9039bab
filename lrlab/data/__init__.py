"""Data: Fashion-MNIST found on disk or downloaded with checksums (``fashion_mnist``), the loaders that carry
their position so a run resumes exactly (``loaders``), and the suite's workloads (``workloads``).

The documented import is this package: ``from lrlab.data import get_dls, DataLoaders``.
"""

from lrlab.data.fashion_mnist import (
    CLASSES,
    FILES,
    DataError,
    find_dir,
    get_dls,
    load_fashion_mnist,
    locate,
)
from lrlab.data.loaders import BatchOrder, DataLoader, DataLoaders, Dataset, TorchLoader, to_device

__all__ = [
    "CLASSES",
    "FILES",
    "BatchOrder",
    "DataError",
    "DataLoader",
    "DataLoaders",
    "Dataset",
    "TorchLoader",
    "find_dir",
    "get_dls",
    "load_fashion_mnist",
    "locate",
    "to_device",
]
