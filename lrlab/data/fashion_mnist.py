"""Fashion-MNIST from disk or the canonical upstream, verified, kept in memory as uint8 (loaders: lrlab.data)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from lrlab.data.loaders import MEAN, STD, DataLoader, DataLoaders, Dataset
from lrlab.files import atomic_write

__all__ = ["MEAN", "STD", "DataLoader", "DataLoaders", "Dataset"]  # re-exported: the loaders once lived here

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


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, download_ok: bool = True) -> tuple[Dataset, Dataset]:
    """Train (60k) and test (10k) sets, verified."""
    d = locate(data_dir, download_ok)
    parts = {key: parse_idx(read_verified(d / name)) for key, name in FILES.items()}
    train = Dataset(parts["train_images"].unsqueeze(1), parts["train_labels"].long())
    test = Dataset(parts["test_images"].unsqueeze(1), parts["test_labels"].long())
    return train, test


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
