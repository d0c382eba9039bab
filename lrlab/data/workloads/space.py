"""A declared space of small workloads to sample from, so that AutoLR is judged on workloads nobody chose.

AlgoPerf judges its algorithms on held-out randomized variants of its workloads; this is the same idea at the
size of two CPU cores. A draw picks, in this order: the data (Fashion-MNIST subsets, MNIST-1D, scikit-learn's
bundled sets and generators, the fortunes text) and how much of it to train on with which split; a model family
that fits the data (MLP of any depth, width, activation, with or without normalization; a CNN with or without
BatchNorm; a small ResNet; a causal Transformer); an optimizer with its usual weight decay, lrlab's or torch's
(SGD with momentum, Adam, AdamW, RMSprop, Lion); the batch size; the epochs (so that a run has 60 to 1,500
steps and costs at most about 30 s on a core). Draw `index` of space `space_seed` depends on those two numbers
alone (not on how many are drawn), and its name `space{S}-{i}` is enough to rebuild it anywhere.

Develop on some space seeds; report on others, drawn fresh (docs/results/space.md says which).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import Workload, majority_accuracy, mean_mse

# data name -> (kind, sampling weight): the kinds decide which models fit and how the data is split
DATA = {
    "fmnist": ("image28", 3),
    "digits": ("image8", 2),
    "mnist1d": ("sequence", 2),
    "breast_cancer": ("tabular-class", 1),
    "wine": ("tabular-class", 1),
    "diabetes": ("tabular-reg", 1),
    "classification": ("tabular-class", 2),
    "regression": ("tabular-reg", 2),
    "friedman": ("tabular-reg", 1),
    "moons": ("tabular-class", 1),
    "fortunes": ("text", 2),
}
N_TRAIN = {"fmnist": (1000, 2000, 5000, 10000), "digits": (300, 600, 1000), "mnist1d": (1000, 2000, 4000),
           "breast_cancer": (150, 300, 400), "wine": (80, 120), "diabetes": (150, 250, 350),
           "classification": (200, 500, 1000, 3000), "regression": (200, 500, 1000, 3000),
           "friedman": (200, 500, 1000, 3000), "moons": (200, 500, 1000), "fortunes": (1500, 3000, 6000)}  # fmt: skip
MODELS = {"image28": ("mlp", "cnn", "resnet"), "image8": ("mlp", "cnn"), "sequence": ("mlp", "cnn"),
          "tabular-class": ("mlp",), "tabular-reg": ("mlp",), "text": ("transformer",)}  # fmt: skip
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "leaky": partial(nn.LeakyReLU, 0.1)}
# optimizer -> (implementations, weight decays in common use, the lr grid's lowest point); the grid doubles from
# there over GRID_POINTS points (lrlab's momentum is damped, (1 - momentum) x the gradient: 10x torch's lr)
OPTIMIZERS = {
    "sgd": (("torch", "lrlab"), (0.0, 5e-4), 5e-3),
    "adam": (("torch", "lrlab"), (0.0,), 2.5e-4),
    "adamw": (("torch",), (1e-2, 5e-2), 2.5e-4),
    "rmsprop": (("torch", "lrlab"), (0.0,), 1.25e-4),
    "lion": (("lrlab",), (0.0, 0.1), 3.125e-5),
}
NOISE = {"moons": (0.1, 0.2, 0.3), "friedman": (0.5, 1.0, 2.0)}
GRID_POINTS = 7
MIN_STEPS, MAX_STEPS = 60, 1500
# examples (sequences for text) one draw may train on, by model family: about 30 s on a core at the most
MAX_EXAMPLES = {"mlp": 400_000, "cnn": 40_000, "resnet": 6_000, "transformer": 6_000}
WIDTHS = {"mlp": (32, 64, 128, 256), "cnn": (8, 16, 32), "resnet": (8, 16), "transformer": (32, 64)}


@dataclass(frozen=True)
class Draw:
    """One sampled workload, fully described by its fields (the report prints them)."""

    space_seed: int
    index: int
    data: str
    n_train: int
    split_seed: int
    model: str
    depth: int
    width: int
    activation: str
    norm: str
    optimizer: str
    impl: str
    weight_decay: float
    nesterov: bool
    batch_size: int
    epochs: int
    noise: float

    @property
    def name(self) -> str:
        return f"space{self.space_seed}-{self.index}"

    @property
    def kind(self) -> str:
        return DATA[self.data][0]

    def lr_grid(self, points: int = GRID_POINTS) -> tuple[float, ...]:
        """The optimizer's factor-2 lr grid (the usual range of that optimizer, lrlab's or torch's)."""
        low = OPTIMIZERS[self.optimizer][2] * (10 if (self.optimizer, self.impl) == ("sgd", "lrlab") else 1)
        return tuple(low * 2**k for k in range(points))

    def describe(self) -> str:
        """One line: data, model, optimizer, batch size and epochs."""
        if self.model == "transformer":
            model = f"Transformer {self.depth}x{self.width}"
        else:
            model = f"{self.model} depth {self.depth} width {self.width} {self.activation} norm {self.norm}"
        wd = f" wd {self.weight_decay:g}" if self.weight_decay else ""
        nesterov = " nesterov" if self.nesterov else ""
        return (f"{self.data} n={self.n_train} split {self.split_seed}, {model}, {self.impl} {self.optimizer}{wd}"
                f"{nesterov}, batch {self.batch_size}, {self.epochs} epochs")  # fmt: skip

    def as_dict(self) -> dict:
        return {**asdict(self), "name": self.name, "about": self.describe()}


def draw(space_seed: int, index: int) -> Draw:
    """Draw `index` of space `space_seed` (the same on every machine and Python: a string-seeded generator).

    Raises:
        ValueError: a negative seed or index."""
    for label, value in (("space_seed", space_seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{label} must be an integer >= 0, got {value!r}")
    rng = random.Random(f"lrlab-space-{space_seed}-{index}")
    names = list(DATA)
    data = rng.choices(names, weights=[DATA[n][1] for n in names])[0]
    kind = DATA[data][0]
    n_train = rng.choice(N_TRAIN[data])
    model = rng.choice(MODELS[kind])
    depth = rng.choice((1, 2) if model == "transformer" else (1, 2, 3, 4) if model == "mlp" else (2, 3))
    width = rng.choice(WIDTHS[model])
    activation = rng.choice(sorted(ACTIVATIONS)) if model == "mlp" else "relu"
    norm = rng.choice(("none", "batch", "layer") if model == "mlp" else ("none", "batch"))
    norm = {"transformer": "layer", "resnet": "batch"}.get(model, norm)  # lrlab's ResNet always normalizes
    optimizer = rng.choice(sorted(OPTIMIZERS))
    impls, decays, _ = OPTIMIZERS[optimizer]
    impl, weight_decay = rng.choice(impls), rng.choice(decays)
    nesterov = optimizer == "sgd" and impl == "torch" and rng.random() < 0.5
    batches = (16, 32, 64) if model == "transformer" else (16, 32, 64, 128, 256)  # 64 characters a sequence
    batch_size = min(rng.choice(batches), max(8, n_train // 4))
    epochs = rng.choice((3, 5, 10, 20, 40))
    per_epoch = -(-n_train // batch_size)
    epochs = min(epochs, max(1, MAX_STEPS // per_epoch), max(1, MAX_EXAMPLES[model] // n_train))
    epochs = max(epochs, -(-MIN_STEPS // per_epoch))
    noise = rng.choice(NOISE.get(data, (0.0, 0.05, 0.1)))  # the generated sets' noise (classification: labels)
    if data == "regression":
        noise = rng.choice((10.0, 50.0, 100.0))
    return Draw(space_seed, index, data, n_train, rng.randrange(1000), model, depth, width, activation, norm,
                optimizer, impl, weight_decay, nesterov, batch_size, epochs, noise)  # fmt: skip


def sample(n: int, space_seed: int) -> list[Draw]:
    """The first n draws of a space.

    Raises:
        ValueError: n < 1, or a bad seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the sample size must be an integer >= 1, got {n!r}")
    return [draw(space_seed, i) for i in range(n)]


def parse_name(name: str) -> tuple[int, int] | None:
    """(space_seed, index) of a name `space{S}-{i}`, or None when it is not one."""
    head, _, index = name.partition("-")
    if not head.startswith("space") or not head[5:].isdigit() or not index.isdigit():
        return None
    return int(head[5:]), int(index)


# -- building a draw: its data, its model, its Workload -----------------------------------------------------


def _split(x: torch.Tensor, y: torch.Tensor, n_train: int, split_seed: int, n_valid: int | None = None):
    """Rows permuted by the split's seed: the first n_train to train, the next n_valid (or all the rest) to validate."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    end = len(x) if n_valid is None else n_train + n_valid
    return x[order[:n_train]], y[order[:n_train]], x[order[n_train:end]], y[order[n_train:end]]


def _standardize(x_train, y_train, x_valid, y_valid, regression: bool):
    """Features to the training rows' mean 0 and std 1 (and float targets too, so MSE 1 is about the mean's)."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_valid = (x_train - mean) / std, (x_valid - mean) / std
    if regression:
        y_mean, y_std = y_train.mean(), y_train.std()
        y_train, y_valid = (y_train - y_mean) / y_std, (y_valid - y_mean) / y_std
    return x_train, y_train, x_valid, y_valid


GENERATED_VALID = 500  # validation rows drawn beside the training rows of the generated sets


def _tabular(d: Draw) -> tuple[torch.Tensor, ...]:
    import sklearn.datasets as sk

    n = d.n_train + GENERATED_VALID
    if d.data in ("breast_cancer", "wine", "diabetes"):
        x, y = getattr(sk, f"load_{d.data}")(return_X_y=True)
    elif d.data == "classification":
        x, y = sk.make_classification(n_samples=n, n_features=20, n_informative=6, n_redundant=4, n_classes=3,
                                      flip_y=d.noise, random_state=d.split_seed)  # fmt: skip
    elif d.data == "regression":
        x, y = sk.make_regression(n_samples=n, n_features=10, n_informative=5, noise=d.noise, random_state=d.split_seed)
    elif d.data == "friedman":
        x, y = sk.make_friedman1(n_samples=n, n_features=10, noise=d.noise, random_state=d.split_seed)
    else:
        x, y = sk.make_moons(n_samples=n, noise=d.noise, random_state=d.split_seed)
    regression = d.kind == "tabular-reg"
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32).unsqueeze(1) if regression else torch.tensor(y, dtype=torch.long)
    return _standardize(*_split(x, y, d.n_train, d.split_seed), regression)


def _images(d: Draw) -> tuple[torch.Tensor, ...]:
    if d.data == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16
        x_train, y_train, x_valid, y_valid = _split(x, torch.tensor(y, dtype=torch.long), d.n_train, d.split_seed)
    elif d.data == "fmnist":
        from lrlab.data.fashion_mnist import load_fashion_mnist

        train, test = load_fashion_mnist()
        x_train, y_train, _, _ = _split(train.images, train.labels, d.n_train, d.split_seed, 0)
        _, _, x_valid, y_valid = _split(test.images, test.labels, 0, d.split_seed, 2000)
        x_train, x_valid = x_train.float() / 255, x_valid.float() / 255
    else:  # mnist1d
        from lrlab.data.workloads.images import mnist1d

        dls = mnist1d(0, 64)
        x_train, y_train, _, _ = _split(dls.train.ds.images, dls.train.ds.labels, d.n_train, d.split_seed, 0)
        x_valid, y_valid = dls.valid.ds.images, dls.valid.ds.labels
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, y_train, (x_valid - mean) / std, y_valid


def _text(d: Draw) -> tuple[torch.Tensor, ...]:
    from lrlab.data.workloads.text import TRAIN_BYTES, VALID_BYTES, fortunes_text, sequences

    text = fortunes_text()
    x, y = sequences(text[:TRAIN_BYTES])
    x_train, y_train, _, _ = _split(x, y, d.n_train, d.split_seed, 0)
    x_valid, y_valid = sequences(text[-VALID_BYTES:])
    return x_train, y_train, x_valid[:1000], y_valid[:1000]


@lru_cache(maxsize=4)  # a process trains one draw many times (configs x seeds): read, verify and split it once
def tensors(d: Draw) -> tuple[torch.Tensor, ...]:
    """The draw's (x_train, y_train, x_valid, y_valid), fixed by the draw: its split, its generator's seed."""
    build = {"image28": _images, "image8": _images, "sequence": _images, "text": _text}.get(d.kind, _tabular)
    return build(d)


def loaders(d: Draw, seed: int, batch_size: int) -> DataLoaders:
    """The draw's data (`tensors`), training order seeded by `seed`."""
    return DataLoaders.from_tensors(*tensors(d), batch_size, seed=seed)


SHAPES = {"image28": (1, 28, 28), "image8": (1, 8, 8), "sequence": (1, 40)}


def _n_outputs(d: Draw) -> int:
    if d.kind == "tabular-reg":
        return 1
    return {"wine": 3, "breast_cancer": 2, "moons": 2, "classification": 3}.get(d.data, 10)


def _mlp(d: Draw, n_in: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(d.depth):
        layers.append(nn.Linear(n_in if i == 0 else d.width, d.width))
        if d.norm != "none":
            layers.append(nn.BatchNorm1d(d.width) if d.norm == "batch" else nn.LayerNorm(d.width))
        layers.append(ACTIVATIONS[d.activation]())
    return nn.Sequential(*layers, nn.Linear(d.width if d.depth else n_in, _n_outputs(d)))


def _cnn(d: Draw) -> nn.Sequential:
    """`depth` stride-2 convolutions doubling the channels from `width`, with or without BatchNorm, pooled."""
    one_d = d.kind == "sequence"
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if one_d else (nn.Conv2d, nn.BatchNorm2d)
    layers: list[nn.Module] = []
    for i in range(d.depth):
        ni, nf = (1 if i == 0 else d.width * 2 ** (i - 1)), d.width * 2**i
        layers.append(conv(ni, nf, 3, stride=2, padding=1, bias=d.norm == "none"))
        layers += [bn(nf)] if d.norm == "batch" else []
        layers.append(nn.ReLU())
    pool = nn.AdaptiveAvgPool1d(1) if one_d else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(d.width * 2 ** (d.depth - 1), _n_outputs(d)))


def build_model(d: Draw) -> nn.Module:
    """A fresh model for the draw (the caller seeds torch first)."""
    if d.model == "transformer":
        from lrlab.data.workloads.text import CharTransformer

        return CharTransformer(d_model=d.width, n_layers=d.depth, n_heads=4)
    if d.model == "resnet":
        from lrlab.models import resnet

        return resnet(tuple(d.width * 2**i for i in range(d.depth + 1)), pool=True)
    if d.model == "cnn":
        return _cnn(d)
    n_in = {"breast_cancer": 30, "wine": 13, "moons": 2, "classification": 20}.get(d.data, 10)
    shape = SHAPES.get(d.kind)
    return _mlp(d, n_in if shape is None else int(torch.tensor(shape).prod()))


def opt_settings(d: Draw) -> tuple[tuple[str, object], ...]:
    """The optimizer's keywords beside the lr: its weight decay, SGD's momentum and Nesterov."""
    settings: dict[str, object] = {"weight_decay": d.weight_decay}
    if d.optimizer == "sgd":
        settings["momentum"] = 0.9
        if d.impl == "torch":
            settings["nesterov"] = d.nesterov
    return tuple(settings.items())


def workload(d: Draw) -> Workload:
    """The draw as a Workload of the suite's shape (its optimizer and lr grid named for the bench to build)."""
    from lrlab.data.workloads.text import next_char_loss, unigram_bpc

    metric = {"tabular-reg": "mse", "text": "bpc"}.get(d.kind, "accuracy")
    loss = {"mse": F.mse_loss, "bpc": next_char_loss}.get(metric, F.cross_entropy)
    baseline = {"mse": mean_mse, "bpc": unigram_bpc}.get(metric, majority_accuracy)
    unreachable = 2.0 if metric == "accuracy" else -1.0  # no time-to-target on a sampled workload
    optimizer = "momentum" if (d.optimizer, d.impl) == ("sgd", "lrlab") else d.optimizer
    return Workload(d.name, d.describe(), partial(loaders, d), partial(build_model, d), loss, metric, d.epochs,
                    d.batch_size, unreachable, baseline, eval_subset=500 if d.kind in ("image28", "text") else None,
                    optimizer=f"{d.impl}:{optimizer}", opt_settings=opt_settings(d), lr_grid=d.lr_grid())  # fmt: skip
