"""Fashion-MNIST: found, verified, never used when corrupt, downloadable, batched by slicing."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from functools import partial

import pytest
import torch

from lrlab.data import FILES, DataError, DataLoader, Dataset, get_dls, load_fashion_mnist
from lrlab.data import fashion_mnist as data


def test_loads_real_data_with_expected_shapes_and_stats(fashion):
    train, test = fashion
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 1, 28, 28)
    assert train.labels.dtype == torch.int64 and set(train.labels.unique().tolist()) == set(range(10))
    x = train.images.float() / 255
    assert abs(x.mean().item() - data.MEAN) < 1e-3 and abs(x.std().item() - data.STD) < 1e-3


def test_loader_normalizes_and_covers_every_example_once(fashion):
    train, _ = fashion
    dl = DataLoader(train.subset(1000), batch_size=300, shuffle=True, seed=3)
    batches = list(dl)
    assert [len(y) for _, y in batches] == [300, 300, 300, 100]
    assert len(dl) == 4
    xs = torch.cat([x for x, _ in batches])
    assert xs.dtype == torch.float32 and xs.shape == (1000, 1, 28, 28)
    # every example exactly once: compare sorted label counts and pixel sums with the source
    ys = torch.cat([y for _, y in batches])
    assert torch.equal(ys.sort().values, train.labels[:1000].sort().values)
    full = dl.normalize(train.images[:1000])
    assert torch.allclose(xs.sum(), full.sum(), rtol=1e-4)


def test_shuffle_is_seeded_per_epoch():
    ds = Dataset(torch.arange(50, dtype=torch.uint8).reshape(50, 1, 1, 1), torch.arange(50))
    a, b = DataLoader(ds, 10, shuffle=True, seed=1), DataLoader(ds, 10, shuffle=True, seed=1)
    first_a, first_b = [y for _, y in a], [y for _, y in b]
    assert all(torch.equal(u, v) for u, v in zip(first_a, first_b))
    second_a = [y for _, y in a]
    assert not all(torch.equal(u, v) for u, v in zip(first_a, second_a))
    assert not torch.equal(torch.cat(first_a), torch.arange(50))


def test_drop_last():
    ds = Dataset(torch.zeros(25, 1, 2, 2, dtype=torch.uint8), torch.zeros(25, dtype=torch.long))
    assert len(DataLoader(ds, 10, drop_last=True)) == 2 and len(list(DataLoader(ds, 10, drop_last=True))) == 2


def test_loader_rejects_bad_input():
    ds = Dataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, 0)
    with pytest.raises(ValueError, match="empty"):
        DataLoader(ds.subset(0), 2)
    with pytest.raises(ValueError, match="4 inputs but 3 targets"):
        Dataset(ds.images.float(), ds.labels[:3])
    with pytest.raises(ValueError, match="std > 0"):
        DataLoader(Dataset(ds.images.float(), ds.labels), 2, mean=0.0, std=0.0)
    floats = DataLoader(Dataset(ds.images.float() + 7, ds.labels), 2)  # any data: floats pass as they are
    assert float(next(iter(floats))[0].mean()) == 7.0


def test_get_dls_subsets(data_dir):
    dls = get_dls(100, data_dir=data_dir, n_train=500, n_valid=200)
    assert len(dls.train) == 5 and len(dls.valid) == 1


def test_missing_dir_names_it(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nope", download_ok=False)


def test_nothing_found_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="looked in") as err:
        load_fashion_mnist(tmp_path, download_ok=False)
    assert str(tmp_path / "debian") in str(err.value)


def _copy_data(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        shutil.copy(src / name, dst / name)


def test_truncated_file_is_refused_with_remedy(data_dir, tmp_path):
    _copy_data(data_dir, tmp_path)
    target = tmp_path / FILES["test_labels"]
    target.write_bytes(target.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t10k-labels.*(corrupt|truncated).*delete"):
        load_fashion_mnist(tmp_path)


def test_wrong_content_is_refused(data_dir, tmp_path):
    _copy_data(data_dir, tmp_path)
    target = tmp_path / FILES["test_labels"]
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[-1] ^= 1
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="wrong content"):
        load_fashion_mnist(tmp_path)


def test_download_from_a_local_server_into_the_cache(data_dir, tmp_path, monkeypatch):
    """The real download path (urllib) against a file server on loopback: atomic, verified, then used."""
    monkeypatch.delenv("LRLAB_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(data_dir))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        found = data.locate(None, base_url=url)
    finally:
        server.shutdown()
    assert found == tmp_path / "cache" / "lrlab" / "fashion_mnist"
    assert sorted(p.name for p in found.iterdir()) == sorted(FILES.values())
    train, test = load_fashion_mnist()
    assert len(train) == 60_000 and len(test) == 10_000


def test_corrupt_download_is_never_kept(data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("LRLAB_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def bad_opener(url: str) -> bytes:
        return b"not gzip at all"

    with pytest.raises(DataError, match="download failed"):
        data.locate(None, opener=bad_opener)
    assert list((tmp_path / "cache" / "lrlab" / "fashion_mnist").iterdir()) == []


def test_no_network_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv("LRLAB_DATA", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url: str) -> bytes:
        raise OSError("network unreachable")

    with pytest.raises(DataError, match="LRLAB_DATA"):
        data.locate(None, opener=offline)


def test_parse_idx_rejects_non_idx():
    with pytest.raises(DataError, match="IDX"):
        data.parse_idx(b"\x01\x02\x03\x04rest")


def test_a_missing_file_is_named_and_decompressed_files_are_read(data_dir, tmp_path):
    import gzip

    _copy_data(data_dir, tmp_path)
    labels = tmp_path / FILES["train_labels"]
    labels.unlink()
    with pytest.raises(DataError, match=f"{tmp_path} \\(missing {FILES['train_labels']}\\)"):
        load_fashion_mnist(tmp_path, download_ok=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(gzip.decompress((data_dir / FILES["train_labels"]).read_bytes()))
    train, test = load_fashion_mnist(tmp_path, download_ok=False)
    reference, _ = load_fashion_mnist(data_dir, download_ok=False)
    assert torch.equal(train.labels, reference.labels) and len(test) == 10_000


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in 5 float features: a small non-image classification set."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0, 0, 1, 0], [0, 2.0, 0, 0, 1], [0, 0, 2.0, 1, 1]])
    return centers[y] * 10 + 3 + torch.randn(n, 5, generator=g), y


def test_loaders_from_tensors_train_and_resume_any_data(tmp_path):
    from lrlab.data import DataLoaders
    from lrlab.train.callbacks import CheckpointCB, MetricsCB, TrainingInterrupted
    from lrlab.train.learner import Callback, Learner

    (xt, yt), (xv, yv) = blobs(640, 0), blobs(200, 1)
    dls = DataLoaders.from_tensors(xt, yt, xv, yv, batch_size=32, mean=float(xt.mean()), std=float(xt.std()))
    xb, yb = next(iter(dls.train))
    assert xb.dtype == torch.float32 and abs(float(xb.mean())) < 0.5 and yb.dtype == torch.int64
    dls.train.epoch = 0
    plain = DataLoaders.from_tensors(xt, yt, xv, yv, batch_size=32)
    assert torch.equal(next(iter(plain.valid))[0], xv[:64])  # no mean/std: floats passed as they are

    def learner(folder, cbs=()):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        fresh = DataLoaders.from_tensors(xt, yt, xv, yv, batch_size=32, mean=float(xt.mean()), std=float(xt.std()))
        return Learner(model, fresh, lr=0.01, cbs=[MetricsCB(), CheckpointCB(folder), *cbs])

    full = learner(tmp_path / "full").fit(3)
    assert full.cb(MetricsCB).history[-1]["valid_acc"] > 0.9

    class StopAt(Callback):
        def after_batch(self, learn):
            if learn.training and (learn.epoch, learn.iter) == (1, 7):
                learn.cb(CheckpointCB).stop_signal = 15

    with pytest.raises(TrainingInterrupted):
        learner(tmp_path / "run", [StopAt()]).fit(3)
    resumed = learner(tmp_path / "run").fit(3, resume=tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(full.model.parameters(), resumed.model.parameters()))
    with pytest.raises(ValueError, match="640 inputs but 5 targets"):
        DataLoaders.from_tensors(xt, yt[:5], xv, yv)
    with pytest.raises(ValueError, match="give mean and std together"):
        DataLoaders.from_tensors(xt, yt, xv, yv, mean=0.0)
