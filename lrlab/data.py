"""Fashion-MNIST from disk or the canonical upstream, kept in memory as uint8, batched by slicing."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lrlab.files import atomic_write

UPSTREAM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# SHA-256 of the *decompressed* IDX content: Debian's .gz headers differ from upstream, the content does not.
CONTENT_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
}
MEAN, STD = 0.2860, 0.3530
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class DataError(RuntimeError):
    """The dataset could not be found, fetched or verified; the message says what to do."""


def cache_dir() -> Path:
    """Where a download lands: the user cache, as other ML tools do."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lrlab" / "fashion_mnist"


DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The places searched, in order: explicit argument or LRLAB_DATA, the cache, Debian's package."""
    explicit = data_dir if data_dir is not None else os.environ.get("LRLAB_DATA")
    dirs = [Path(explicit).expanduser()] if explicit else []
    return dirs + [cache_dir(), DEBIAN_DIR]


def decompress_verified(name: str, payload: bytes, where: str) -> bytes:
    """Decompress one IDX .gz file and check its content against the published checksum."""
    try:
        raw = gzip.decompress(payload)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(
            f"{where} is corrupt or truncated ({e}); delete it and let lrlab download it again, "
            f"or copy a good file there"
        ) from e
    return content_verified(name, raw, where, "delete it and let lrlab download it again")


def content_verified(name: str, raw: bytes, where: str, remedy: str) -> bytes:
    """Check decompressed IDX content against the published checksum of the file `name`."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CONTENT_SHA256[name]:
        raise DataError(
            f"{where} has the wrong content (sha256 {digest[:12]}..., expected {CONTENT_SHA256[name][:12]}...); "
            f"{remedy}"
        )
    return raw


def read_verified(path: Path) -> bytes:
    """Read and verify one of the four files on disk: the .gz, or the same file decompressed (name without .gz)."""
    if path.is_file():
        return decompress_verified(path.name, path.read_bytes(), str(path))
    plain = path.with_suffix("")
    return content_verified(path.name, plain.read_bytes(), str(plain), "replace it with the published file")


def present(d: Path, name: str) -> bool:
    """One of the four files is in d, compressed (the published .gz) or decompressed."""
    return (d / name).is_file() or (d / name).with_suffix("").is_file()


def parse_idx(raw: bytes) -> torch.Tensor:
    """Turn IDX bytes (unsigned-byte data) into a uint8 tensor of the declared shape."""
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8)
    return data.reshape(shape)


Opener = Callable[[str], bytes]


def http_get(url: str) -> bytes:
    """Fetch a URL's bytes (the default opener; tests swap it)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def download(dest: Path, base_url: str = UPSTREAM_URL, opener: Opener = http_get) -> None:
    """Fetch the four files into dest, each written atomically and verified before it is kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        target = dest / name
        if target.exists():
            continue
        payload = opener(base_url + name)
        decompress_verified(name, payload, f"the download of {base_url + name}")
        atomic_write(target, lambda f, payload=payload: f.write(payload))


def find_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first candidate folder that holds all four files (each .gz or decompressed)."""
    for d in candidate_dirs(data_dir):
        if all(present(d, n) for n in FILES.values()):
            return d
    return None


def missing_report(data_dir: str | os.PathLike | None = None) -> str:
    """Per candidate folder that exists, which of the four files it lacks (for the 'not found' message)."""
    lines = []
    for d in candidate_dirs(data_dir):
        if not d.is_dir():
            lines.append(f"{d} (no such folder)")
            continue
        lacking = [n for n in FILES.values() if not present(d, n)]
        lines.append(f"{d} (missing {', '.join(lacking)})" if lacking else str(d))
    return "; ".join(lines)


def locate(
    data_dir: str | os.PathLike | None = None,
    download_ok: bool = True,
    base_url: str = UPSTREAM_URL,
    opener: Opener = http_get,
) -> Path:
    """Find the files, downloading them into the cache as a last resort."""
    explicit = data_dir if data_dir is not None else os.environ.get("LRLAB_DATA")
    if explicit and not Path(explicit).expanduser().is_dir():
        raise DataError(f"data dir {explicit!r} does not exist; give a folder holding {', '.join(FILES.values())}")
    found = find_dir(data_dir)
    if found is not None:
        return found
    looked = missing_report(data_dir)
    if not download_ok:
        raise DataError(f"Fashion-MNIST not found; looked in {looked}")
    try:
        download(cache_dir(), base_url, opener)
    except (OSError, DataError) as e:
        raise DataError(
            f"Fashion-MNIST not found and the download failed ({e}); looked in {looked}; provide the data: set "
            f"LRLAB_DATA (or --data-dir) to a folder with {', '.join(FILES.values())} (or the same decompressed), "
            f"or install Debian's package dataset-fashion-mnist"
        ) from e
    return cache_dir()


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


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download_ok: bool = True) -> tuple[Dataset, Dataset]:
    """Train (60k) and test (10k) sets, verified."""
    d = locate(data_dir, download_ok)
    parts = {key: parse_idx(read_verified(d / name)) for key, name in FILES.items()}
    train = Dataset(parts["train_images"].unsqueeze(1), parts["train_labels"].long())
    test = Dataset(parts["test_images"].unsqueeze(1), parts["test_labels"].long())
    return train, test


class DataLoader:
    """Batches by index slicing from an in-memory dataset; normalizes on the fly, no per-item work."""

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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(ds) == 0:
            raise ValueError("the dataset is empty: a loader needs at least one example")
        if (mean is None) != (std is None) or (std is not None and not std > 0):
            raise ValueError(f"give mean and std together, std > 0 (or neither), got mean={mean!r}, std={std!r}")
        self.ds, self.batch_size, self.shuffle, self.drop_last = ds, batch_size, shuffle, drop_last
        self.seed, self.epoch, self.skip = seed, 0, 0
        self.rank, self.world = 0, 1
        self.pixels = ds.images.dtype == torch.uint8  # 0..255 pixels: scaled to [0, 1] first
        if self.pixels and mean is None:
            mean, std = MEAN, STD  # Fashion-MNIST's
        self.mean, self.std = mean, std
        if self.pixels:
            self.scale, self.shift = 1 / (255 * std), mean / std
        self.device = torch.device(device)

    def shard(self, rank: int, world: int) -> None:
        """Serve only this rank's share: shuffled loaders cut each epoch to steps x global batch and take
        perm[rank::world] (every rank the same number of steps, or DDP hangs); others take rank::world."""
        if world > 1 and self.shuffle and len(self.ds) < self.batch_size * world:
            raise ValueError(f"{len(self.ds)} examples cannot fill one global batch of {self.batch_size} x {world}")
        self.rank, self.world = rank, world

    def _indices(self) -> torch.Tensor | None:
        """This epoch's example indices for this rank (None: all, in order)."""
        perm = self.order()
        if self.world == 1:
            return perm
        if perm is None:
            return torch.arange(self.rank, len(self.ds), self.world)
        steps = len(self.ds) // (self.batch_size * self.world)
        return perm[: steps * self.batch_size * self.world][self.rank :: self.world]

    def __len__(self) -> int:
        if self.world > 1 and self.shuffle:
            return len(self.ds) // (self.batch_size * self.world)
        n = len(range(self.rank, len(self.ds), self.world))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor | None:
        """This epoch's permutation: seeded by (seed, epoch), so a run is reproducible and resumable."""
        if not self.shuffle:
            return None
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(len(self.ds), generator=g)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels to standardized floats; other inputs standardized by mean and std when given, else
        passed as they are (token ids, features already scaled)."""
        if self.pixels:
            return x.float().mul_(self.scale).sub_(self.shift)
        return x if self.mean is None else (x - self.mean) / self.std

    def state_dict(self) -> dict:
        """Where the loader stands: its seed, how many epochs it has started, batches to skip next time."""
        return {"seed": self.seed, "epoch": self.epoch, "skip": self.skip}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.skip = state["seed"], state["epoch"], state.get("skip", 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm, images, labels, bs = self._indices(), self.ds.images, self.ds.labels, self.batch_size
        self.epoch += 1
        start, self.skip = self.skip, 0  # a resumed epoch continues where it stopped
        for i in range(start, len(self)):
            if perm is None:
                xb, yb = images[i * bs : (i + 1) * bs], labels[i * bs : (i + 1) * bs]
            else:
                idx = perm[i * bs : (i + 1) * bs]
                xb, yb = images[idx], labels[idx]
            yield self.normalize(xb.to(self.device)), yb.to(self.device)


@dataclass
class DataLoaders:
    """The train and valid loaders of one experiment (lrlab's DataLoader, or anything iterable with a len)."""

    train: DataLoader
    valid: DataLoader

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


def get_dls(
    batch_size: int = 256,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_train: int | None = None,
    n_valid: int | None = None,
    device: torch.device | str = "cpu",
) -> DataLoaders:
    """Fashion-MNIST loaders: shuffled train, and the official test set as valid (as the lesson does)."""
    for name, n in (("n_train", n_train), ("n_valid", n_valid)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"{name} must be None (all) or an integer >= 1, got {n!r}")
    train, test = load_fashion_mnist(data_dir)
    if n_train is not None:
        train = train.subset(n_train)
    if n_valid is not None:
        test = test.subset(n_valid)
    return DataLoaders(
        DataLoader(train, batch_size, shuffle=True, seed=seed, device=device),
        DataLoader(test, batch_size * 2, shuffle=False, device=device),
    )
