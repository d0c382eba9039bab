"""Every workload of the suite trains for real and beats its trivial baseline (chance, the mean, unigram
frequencies) after a short run; the text corpus is verified; the registry refuses unknown names."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lrlab.apps.bench import parse_config, run_one
from lrlab.data import DataError
from lrlab.data.workloads import get_workload, workload_names
from lrlab.data.workloads.text import FORTUNES_DIR, fortunes_text
from tests.conftest import require

# (workload, config, epochs, how far past the trivial baseline it must get)
SHORT_RUNS = [
    ("linear", "constant@1e-2", 10, lambda final, base: final < 0.2 * base),
    ("regression", "constant@3e-3", 2, lambda final, base: final < 0.2 * base),
    ("small-class", "constant@1e-3", 10, lambda final, base: final > base + 0.3),
    ("small-reg", "constant@1e-3", 5, lambda final, base: final < 0.6 * base),
    ("mnist1d", "constant@3e-3", 5, lambda final, base: final > base + 0.6),
    ("fmnist-mlp", "constant@3e-3", 1, lambda final, base: final > 0.8),
    ("fmnist-cnn", "constant@3e-3", 1, lambda final, base: final > 0.8),
    pytest.param("fmnist-resnet", "constant@3e-3", 1, lambda final, base: final > 0.8, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(
    "name, config, epochs, good", SHORT_RUNS, ids=[r.values[0] if hasattr(r, "values") else r[0] for r in SHORT_RUNS]
)
def test_each_workload_beats_its_trivial_baseline(name, config, epochs, good, data_dir, monkeypatch):
    monkeypatch.setenv("LRLAB_DATA", str(data_dir))
    workload = get_workload(name)
    baseline = workload.baseline(workload.loaders(0))
    record = run_one(workload, parse_config(config), seed=0, epochs=epochs)
    assert not record["diverged"] and good(record["final"], baseline), (record["final"], baseline)


@pytest.mark.slow
def test_the_language_model_beats_unigram_frequencies():
    require(FORTUNES_DIR.is_dir(), "Debian's fortunes package is not installed (apt-get install fortunes)")
    workload = get_workload("charlm")
    dls = workload.loaders(0)
    unigram = workload.baseline(dls)
    assert 4.0 < unigram < 5.5  # English text: about 4.5 bits per character from letter frequencies alone
    record = run_one(workload, parse_config("constant@3e-3"), seed=0, epochs=1)
    assert not record["diverged"] and record["final"] < unigram - 1.0, (record["final"], unigram)
    n_params = sum(p.numel() for p in workload.model().parameters())
    assert 300_000 < n_params < 1_000_000


def test_the_corpus_is_checked_and_a_wrong_one_refused(tmp_path):
    (tmp_path / "fortunes").write_text("Not the packaged text.\n%\n")
    with pytest.raises(DataError, match="has SHA-256 .* not the expected version: install Debian's package"):
        fortunes_text(tmp_path)
    with pytest.raises(DataError, match="is not in .*nowhere"):
        fortunes_text(tmp_path / "nowhere")


def test_mnist1d_generation_leaves_the_global_generators_alone():
    random.seed(5)
    np.random.seed(5)
    state = random.getstate(), np.random.get_state()[1].copy()
    dls = get_workload("mnist1d").loaders(0)
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert dls.train.ds.images.shape == (4000, 1, 40) and len(dls.valid.ds) == 1000


def test_the_registry_lists_the_suite_and_refuses_unknown_names():
    assert workload_names() == ["linear", "regression", "small-class", "small-reg", "fmnist-cnn", "fmnist-mlp",
                                "fmnist-resnet", "mnist1d", "charlm"]  # fmt: skip
    with pytest.raises(ValueError, match="unknown workload 'imagenet'; choose one of linear, regression"):
        get_workload("imagenet")
    assert torch.is_tensor(get_workload("linear").loaders(0).train.ds.images)
