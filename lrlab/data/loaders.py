"""Loaders that know where they stand: a seeded order per epoch that a checkpoint can resume mid-epoch.

`BatchOrder` is the order (seed, epoch, batches to skip, rank's share); `DataLoader` serves in-memory tensors
by slicing (Fashion-MNIST's uint8 images or any tensors); `TorchLoader` serves any map-style torch Dataset
through torch's DataLoader (collate, workers) in that same resumable order. A plain torch DataLoader works too,
with what it cannot do refused by name (mid-epoch checkpoints, sharding), never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's pixel statistics: the default for uint8 images


@dataclass
class Dataset:
    """Inputs as one tensor whose first dimension is the examples, and targets as another of the same length:
    Fashion-MNIST's uint8 images (N, 1, 28, 28) and int64 labels, or any tensors (float features, token ids,
    regression targets).

    Raises:
        ValueError: inputs and targets of different lengths, or not tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise ValueError(
                f"a Dataset holds two tensors, got {type(self.images).__name__}, {type(self.labels).__name__}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} inputs but {len(self.labels)} targets: they must pair up one to one")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> Dataset:
        """The first n examples: quick experiments and tests."""
        return Dataset(self.images[:n], self.labels[:n])


class BatchOrder:
    """Which examples each batch takes: in order, or a permutation seeded by (seed, epoch); resumable.

    Args:
        n: examples in the dataset; batch_size: examples per batch; shuffle: a new seeded order each epoch;
        seed: the order's seed; drop_last: drop a last partial batch.

    Raises:
        ValueError: a batch size that is not a positive integer, or an empty dataset."""

    def __init__(self, n: int, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if n == 0:
            raise ValueError("the dataset is empty: a loader needs at least one example")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.epoch, self.skip = seed, 0, 0
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """Serve only this rank's share: shuffled loaders cut each epoch to steps x global batch and take
        perm[rank::world] (every rank the same number of steps, or DDP hangs); others take rank::world."""
        if world > 1 and self.shuffle and self.n < self.batch_size * world:
            raise ValueError(f"{self.n} examples cannot fill one global batch of {self.batch_size} x {world}")
        self.rank, self.world = rank, world

    def _indices(self) -> torch.Tensor | None:
        """This epoch's example indices for this rank (None: all, in order)."""
        perm = self.order()
        if self.world == 1:
            return perm
        if perm is None:
            return torch.arange(self.rank, self.n, self.world)
        steps = self.n // (self.batch_size * self.world)
        return perm[: steps * self.batch_size * self.world][self.rank :: self.world]

    def __len__(self) -> int:
        if self.world > 1 and self.shuffle:
            return self.n // (self.batch_size * self.world)
        n = len(range(self.rank, self.n, self.world))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation: seeded by (seed, epoch), so a run is reproducible and resumable."""
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def state_dict(self) -> dict:
        """Where the loader stands: its seed, how many epochs it has started, batches to skip next time."""
        return {"seed": self.seed, "epoch": self.epoch, "skip": self.skip}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.skip = state["seed"], state["epoch"], state.get("skip", 0)

    def index_batches(self) -> Iterator[slice | torch.Tensor]:
        """This epoch's batches as index slices or index tensors, from the batch a resumed epoch stopped at."""
        perm, bs = self._indices(), self.batch_size
        self.epoch += 1
        start, self.skip = self.skip, 0
        for i in range(start, len(self)):
            yield slice(i * bs, (i + 1) * bs) if perm is None else perm[i * bs : (i + 1) * bs]


class DataLoader(BatchOrder):
    """Batches by index slicing from an in-memory dataset; normalizes on the fly, no per-item work.

    Args:
        ds: the Dataset; batch_size, shuffle, seed, drop_last: as BatchOrder's; mean, std: standardize the
            inputs (uint8 pixels are scaled to [0, 1] first, with Fashion-MNIST's statistics by default);
        device: where batches go.

    Raises:
        ValueError: a bad batch size, an empty dataset, or mean without std (or std <= 0)."""

    def __init__(
        self,
        ds: Dataset,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        mean: float | None = None,
        std: float | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(len(ds), batch_size, shuffle, seed, drop_last)
        if (mean is None) != (std is None) or (std is not None and not std > 0):
            raise ValueError(f"give mean and std together, std > 0 (or neither), got mean={mean!r}, std={std!r}")
        self.ds = ds
        self.pixels = ds.images.dtype == torch.uint8  # 0..255 pixels: scaled to [0, 1] first
        if self.pixels and mean is None:
            mean, std = MEAN, STD  # Fashion-MNIST's
        self.mean, self.std = mean, std
        if self.pixels:
            self.scale, self.shift = 1 / (255 * std), mean / std
        self.device = torch.device(device)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels to standardized floats; other inputs standardized by mean and std when given, else
        passed as they are (token ids, features already scaled)."""
        if self.pixels:
            return x.float().mul_(self.scale).sub_(self.shift)
        return x if self.mean is None else (x - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.ds.images, self.ds.labels
        for idx in self.index_batches():
            yield self.normalize(images[idx].to(self.device)), labels[idx].to(self.device)


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in a batch (a tensor, or tuples, lists and dicts of them) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class TorchLoader(BatchOrder):
    """Any map-style torch Dataset served through torch's DataLoader (its collate_fn, its worker processes)
    in lrlab's seeded, resumable order: a checkpoint resumes it mid-epoch exactly, and it shards across ranks.

    Args:
        dataset: a torch.utils.data.Dataset with __len__ and __getitem__.
        batch_size, shuffle, seed, drop_last: as BatchOrder's; collate_fn, num_workers: torch DataLoader's;
        device: where batches go.

    Raises:
        ValueError: a dataset without __len__/__getitem__ (an IterableDataset has no order to resume), a bad
            batch size, or an empty dataset."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        collate_fn: Callable | None = None,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            raise ValueError(
                f"TorchLoader needs a map-style dataset (__len__ and __getitem__), got {type(dataset).__name__}: an "
                f"iterable dataset has no order to resume; pass its torch DataLoader to DataLoaders(...) directly"
            )
        super().__init__(len(dataset), batch_size, shuffle, seed, drop_last)
        self.dataset, self.collate_fn, self.num_workers = dataset, collate_fn, num_workers
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[Any]:
        batches = [list(range(self.n)[idx]) if isinstance(idx, slice) else idx.tolist() for idx in self.index_batches()]
        # the workers' seeds come from a generator of this epoch, not from torch's global RNG
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate_fn,
                                             num_workers=self.num_workers, generator=generator)  # fmt: skip
        for batch in loader:
            yield to_device(batch, self.device)


@dataclass
class DataLoaders:
    """The train and valid loaders of one experiment: lrlab's DataLoader or TorchLoader, or any iterable with a
    len (a torch DataLoader: it trains, and checkpoints at epoch ends; a mid-epoch checkpoint or sharding
    across ranks, which need a resumable order, are refused by name)."""

    train: Any
    valid: Any

    @classmethod
    def from_tensors(
        cls,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_valid: torch.Tensor,
        y_valid: torch.Tensor,
        batch_size: int = 64,
        seed: int = 0,
        mean: float | None = None,
        std: float | None = None,
        device: torch.device | str = "cpu",
    ) -> DataLoaders:
        """Loaders over in-memory tensors of any shape and dtype: the training set shuffled (seeded, resumable
        mid-epoch like Fashion-MNIST's), the validation set in order at twice the batch size; inputs
        standardized by mean and std when given (uint8 pixels always scaled).

        Raises:
            ValueError: inputs and targets of different lengths, an empty set, or a bad batch size."""
        train = DataLoader(Dataset(x_train, y_train), batch_size, shuffle=True, seed=seed, mean=mean, std=std,
                           device=device)  # fmt: skip
        valid = DataLoader(Dataset(x_valid, y_valid), batch_size * 2, mean=mean, std=std, device=device)
        return cls(train, valid)

    @classmethod
    def from_datasets(
        cls,
        train: torch.utils.data.Dataset,
        valid: torch.utils.data.Dataset,
        batch_size: int = 64,
        seed: int = 0,
        collate_fn: Callable | None = None,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
    ) -> DataLoaders:
        """Loaders over map-style torch Datasets (TorchLoader): the training set shuffled (seeded, resumable
        mid-epoch), the validation set in order at twice the batch size.

        Raises:
            ValueError: an iterable dataset, an empty one, or a bad batch size."""
        common = dict(seed=seed, collate_fn=collate_fn, num_workers=num_workers, device=device)
        return cls(TorchLoader(train, batch_size, shuffle=True, **common), TorchLoader(valid, batch_size * 2, **common))
