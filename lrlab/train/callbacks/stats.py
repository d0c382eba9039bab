"""Look inside training: forward hooks, activation and gradient statistics, and their pictures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from lrlab.models import GeneralRelu
from lrlab.train.learner import Callback, Learner

ACTIVATIONS = (GeneralRelu, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)


class Hooks:
    """Forward hooks on some modules, removed on exit (also on error): `with Hooks(mods, fn) as hooks: ...`."""

    def __init__(self, modules: Iterable[nn.Module], fn: Callable) -> None:
        self.modules = list(modules)
        self.handles = [m.register_forward_hook(lambda mod, inp, out, i=i: fn(i, mod, inp, out))
                        for i, m in enumerate(self.modules)]  # fmt: skip

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __len__(self) -> int:
        return len(self.modules)


def _is_instance(module: nn.Module, kind: type) -> bool:
    return isinstance(module, kind)


def activation_modules(model: nn.Module) -> list[nn.Module]:
    """The activation layers (GeneralRelu, ReLU, ...) or, if there are none, the model's top-level children."""
    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS)]
    return acts or list(model.children())


class _Recorder(Callback):
    """Shared bookkeeping: per layer, lists of per-batch tensors (stacked lazily), and the three plots."""

    run_in_lr_find = False  # it follows or steers the real run

    def __init__(self, n_bins: int, lo: float, hi: float, every: int, sample: int | None = None) -> None:
        self.n_bins, self.lo, self.hi, self.every, self.sample = n_bins, lo, hi, every, sample
        self.names: list[str] = []
        self.records: list[dict[str, list[torch.Tensor]]] = []

    def _new(self, names: list[str]) -> None:
        self.names = names
        self.records = [{"mean": [], "std": [], "hist": [], "dead": []} for _ in names]

    def _record(self, i: int, x: torch.Tensor) -> None:
        x = x.detach().float()
        rec = self.records[i]
        rec["mean"].append(x.mean())  # (separate mean and std: faster than std_mean on the CPU)
        rec["std"].append(x.std())
        rec["hist"].append(self._histogram(x))

    def _histogram(self, x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x.abs(), self.n_bins, self.lo, self.hi)

    def stats(self, key: str) -> torch.Tensor:
        """(layers, batches) for mean/std, (layers, batches, bins) for hist."""
        return torch.stack([torch.stack(r[key]).cpu() for r in self.records])

    def color_dim(self, path: str | Path = "color_dim.png", title: str = "activations (log histogram)"):
        """The lesson's colorful dimension: one panel per layer, histogram (log scale) over training time."""
        import matplotlib.pyplot as plt

        from lrlab.plots import save

        hists = self.stats("hist")
        n = len(self.names)
        cols = min(n, 5)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
        for ax in axes.flat[n:]:
            ax.axis("off")
        for ax, name, h in zip(axes.flat, self.names, hists):
            ax.imshow(torch.log1p(h).T.numpy(), origin="lower", aspect="auto", extent=(0, h.shape[0], self.lo, self.hi))
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("batch")
        fig.suptitle(title)
        save(fig, path)
        return fig


class ActivationStats(_Recorder):
    """Per layer and per training batch: mean, std and histogram of |activation| (40 bins on [0, 10]), and
    the fraction of dead units: channels whose input to the activation is <= 0 at every position of the
    sampled examples (a ReLU-like unit that never fires passes no gradient).

    Statistics are taken on the first `sample` examples of each batch (32 by default, all with None): the
    histograms then cost an eighth at batch size 256 and still see thousands of values per channel.

    Args:
        modules: which layers to watch: a list of modules, a predicate on modules (the course's
            `ActivationStats(fc.risinstance(GeneralRelu))`), a module class, or None for the activations."""

    order = -3

    def __init__(
        self,
        modules: Iterable[nn.Module] | Callable[[nn.Module], bool] | type | None = None,
        n_bins: int = 40,
        hi: float = 10.0,
        every: int = 1,
        sample: int | None = 32,
    ) -> None:
        super().__init__(n_bins, 0.0, hi, every, sample)
        if isinstance(modules, type):
            modules = partial(_is_instance, kind=modules)
        self.chosen = list(modules) if modules is not None and not callable(modules) else modules
        self.hooks: Hooks | None = None

    def before_fit(self, learn: Learner) -> None:
        if callable(self.chosen):
            mods = [m for m in learn.model.modules() if self.chosen(m)]
        else:
            mods = self.chosen if self.chosen is not None else activation_modules(learn.model)
        self._new([f"{i}: {type(m).__name__}" for i, m in enumerate(mods)])
        self.batch = 0
        self.hooks = Hooks(mods, self._hook)
        self.learn = learn

    def _hook(self, i: int, mod: nn.Module, inp, out) -> None:
        if self.learn.training and self.batch % self.every == 0:
            self._record(i, out[: self.sample])
            pre = inp[0].detach()[: self.sample]
            dims = [d for d in range(pre.dim()) if d != 1] if pre.dim() > 1 else [0]
            self.records[i]["dead"].append(pre.amax(dim=dims).le(0).float().mean())  # channels that never fire

    def after_batch(self, learn: Learner) -> None:
        if learn.training:
            self.batch += 1

    def cleanup_fit(self, learn: Learner) -> None:
        if self.hooks is not None:
            self.hooks.remove()

    def dead_fraction(self) -> torch.Tensor:
        """(layers, batches): the fraction of dead units (see the class docstring)."""
        return self.stats("dead")

    def near_zero_fraction(self, bins: int = 2) -> torch.Tensor:
        """(layers, batches): share of activations in the histogram's lowest bins (|a| < 0.5 by default)."""
        h = self.stats("hist")
        return h[..., :bins].sum(-1) / h.sum(-1).clamp_min(1)

    def dead_chart(self, path: str | Path = "dead.png"):
        """Fraction of dead units per layer over training."""
        dead = self.dead_fraction()
        return _lines(dict(zip(self.names, dead)), path, "fraction of dead units", ylim=(0, 1))

    def plot_stats(self, path: str | Path = "stats.png"):
        """Means and standard deviations per layer over training."""
        import matplotlib.pyplot as plt

        from lrlab.plots import save

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
        for name, m, s in zip(self.names, self.stats("mean"), self.stats("std")):
            ax1.plot(m.numpy(), label=name)
            ax2.plot(s.numpy(), label=name)
        ax1.set_title("means")
        ax2.set_title("standard deviations")
        for ax in (ax1, ax2):
            ax.set_xlabel("batch")
            ax.grid(alpha=0.3)
        ax2.legend(fontsize=7)
        save(fig, path)
        return fig


class GradientStats(_Recorder):
    """Per conv/linear layer and per training batch: histogram of log10|weight grad| (T-Fixup style).

    All layers go through one histogram call (each layer shifted into its own range), so the cost does not
    grow with the number of layers; values outside [lo, hi] (exact zeros included) land in the edge bins.

    Args:
        n_bins: histogram bins; lo, hi: the range of log10|grad|; every: record every `every` batches."""

    order = -3

    def __init__(self, n_bins: int = 40, lo: float = -10.0, hi: float = 0.0, every: int = 1) -> None:
        super().__init__(n_bins, lo, hi, every)

    def before_fit(self, learn: Learner) -> None:
        kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        self.layers = [(n, m) for n, m in learn.model.named_modules() if isinstance(m, kinds)]
        self._new([f"{n} ({type(m).__name__})" for n, m in self.layers])
        self.batch, self.offsets = 0, None

    def after_backward(self, learn: Learner) -> None:
        if self.batch % self.every == 0 and self.layers:
            grads = [m.weight.grad for _, m in self.layers]
            if all(g is not None for g in grads):
                span, n = self.hi - self.lo, len(grads)
                if self.offsets is None:
                    self.offsets = torch.cat([torch.full((g.numel(),), i * span, device=g.device)
                                              for i, g in enumerate(grads)])  # fmt: skip
                logs = torch.cat([g.detach().reshape(-1) for g in grads]).abs_().log10_()
                logs = logs.clamp_(self.lo, self.hi - 1e-6).add_(self.offsets)
                hists = torch.histc(logs, n * self.n_bins, self.lo, self.lo + n * span).view(n, self.n_bins)
                for rec, h in zip(self.records, hists):
                    rec["hist"].append(h)
        self.batch += 1

    def color_dim(self, path: str | Path = "grad_color_dim.png", title: str = "gradients: log10|g| histogram"):
        return super().color_dim(path, title)


def _lines(series: dict[str, torch.Tensor], path, ylabel: str, ylim=None):
    import matplotlib.pyplot as plt

    from lrlab.plots import save

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, values in series.items():
        ax.plot(values.numpy(), label=name)
    ax.set_xlabel("batch")
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path)
    return fig
