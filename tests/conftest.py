"""Shared fixtures: the real Fashion-MNIST (never skipped in CI) and tiny synthetic loaders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lrlab.data import DataLoader, DataLoaders, Dataset, find_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Under pytest-xdist the workers share the cores: each (and every process it starts) gets its part, so two
# workers do not fight over the same two cores, and results do not depend on how many workers run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    os.environ["OMP_NUM_THREADS"] = _threads
    torch.set_num_threads(int(_threads))


def require(condition: bool, why: str) -> None:
    """Skip locally when a dependency is missing, but fail in CI so it cannot go green by skipping."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI never skips for a missing dependency)")
        pytest.skip(why)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    explicit = os.environ.get("LRLAB_DATA") or (SHARED / "data" / "fashion_mnist")
    found = find_dir(explicit) if Path(explicit).is_dir() else find_dir()
    require(found is not None, "Fashion-MNIST not found: set LRLAB_DATA")
    return found


@pytest.fixture(scope="session")
def fashion(data_dir):
    from lrlab.data import load_fashion_mnist

    return load_fashion_mnist(data_dir)


def tiny_dls(n: int = 64, bs: int = 16, n_classes: int = 10, seed: int = 0) -> DataLoaders:
    """Random 28x28 uint8 images with random labels: for loop mechanics, not accuracy."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    ds = Dataset(images, labels)
    return DataLoaders(DataLoader(ds, bs, shuffle=True, seed=seed), DataLoader(ds, bs))


def tiny_model(n_classes: int = 10) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, n_classes))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Print what the CLI fuzz test ran, and say so when the quick suite left the slow tests out (CI and
    `make test SUITE=all` run them)."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == "fuzz":  # the fuzz test's budget and count (from any xdist worker)
                terminalreporter.write_line(str(value))
    if config.getoption("markexpr") == "not slow":
        terminalreporter.write_line(
            "quick suite: the tests marked slow (long real training, faults through whole runs) were left out; "
            "`make test SUITE=all` runs them, and CI (CI=true) always does"
        )
