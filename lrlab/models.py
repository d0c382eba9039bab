"""The lesson's CNN and the pieces it is built from."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class GeneralRelu(nn.Module):
    """Leaky ReLU shifted down by `sub` (so activations centre near 0) and optionally capped at `maxv`."""

    def __init__(self, leak: float = 0.0, sub: float = 0.0, maxv: float | None = None) -> None:
        super().__init__()
        self.leak, self.sub, self.maxv = leak, sub, maxv

    def forward(self, x):
        x = F.leaky_relu(x, self.leak) if self.leak else F.relu(x)
        if self.sub:
            x = x - self.sub
        if self.maxv is not None:
            x = x.clamp_max(self.maxv)
        return x

    def extra_repr(self) -> str:
        return f"leak={self.leak}, sub={self.sub}, maxv={self.maxv}"


def conv(ni: int, nf: int, ks: int = 3, stride: int = 2, act: bool = True, norm: bool = True) -> nn.Sequential:
    """Conv (no bias when normalized), then BatchNorm, then GeneralRelu(0.1, 0.4)."""
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(nf))
    if act:
        layers.append(GeneralRelu(leak=0.1, sub=0.4))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second strided) added to an identity path (1x1 conv when the width changes,
    2x2 average pooling when the size halves): the course's ResBlock."""

    def __init__(self, ni: int, nf: int, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv(ni, nf, stride=1), conv(nf, nf, stride=stride, act=False))
        self.idconv = nn.Identity() if ni == nf else conv(ni, nf, ks=1, stride=1, act=False)
        self.pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)
        self.act = GeneralRelu(leak=0.1, sub=0.4)

    def forward(self, x):
        return self.act(self.convs(x) + self.idconv(self.pool(x)))


def resnet(nfs: tuple[int, ...] = (8, 16, 32, 64, 128, 256), n_classes: int = 10, pool: bool = False) -> nn.Sequential:
    """The course's ResNet for 28x28 images: a stride-1 ResBlock, then stride-2 ResBlocks over `nfs`.

    Default (lesson 13): 8..256, down to 1x1, then Linear + BatchNorm1d, ~1.2M parameters. pool=True ends
    with global average pooling instead (for nfs that stop before 1x1, e.g. the small 8..128, ~300k)."""
    layers: list[nn.Module] = [ResBlock(1, nfs[0], stride=1)]
    layers += [ResBlock(nfs[i], nfs[i + 1], stride=2) for i in range(len(nfs) - 1)]
    if pool:
        layers.append(nn.AdaptiveAvgPool2d(1))
    layers += [nn.Flatten(), nn.Linear(nfs[-1], n_classes, bias=False), nn.BatchNorm1d(n_classes)]
    return init_weights(nn.Sequential(*layers), leaky=0.1)


def get_model(name: str = "cnn", **course: object) -> nn.Sequential:
    """A model by name from MODELS: cnn (the lesson's), cnn-wide (4x the channels, ~0.4M), resnet (lesson 13,
    ~1.2M), resnet-small (~300k, pooled).

    Raises:
        ValueError: an unknown name (the message lists MODELS).
        TypeError: the course's get_model(act, nfs, norm) keywords: the message says what to call instead."""
    if course or not isinstance(name, str):
        raise TypeError(
            "lrlab's get_model(name) picks a registered model by name (" + ", ".join(MODELS) + "); for the "
            "course's get_model(act, nfs, norm) build lesson_cnn(nfs=..., norm=...)"
        )
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]()


def init_weights(model: nn.Module, leaky: float = 0.1) -> nn.Module:
    """Kaiming-normal init of every conv and linear weight, for leaky ReLUs of slope `leaky`."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=leaky)
    return model


def lesson_cnn(nfs: tuple[int, ...] = (8, 16, 32, 64), n_classes: int = 10, norm: bool = True) -> nn.Sequential:
    """Four stride-2 convs 1->8->16->32->64 (28->1 pixels), a conv to the classes, flatten: ~30k params.

    norm=False drops BatchNorm (the convs get biases): the course's model for studying initialization."""
    chans = (1, *nfs)
    layers = [conv(chans[i], chans[i + 1], norm=norm) for i in range(len(nfs))]
    model = nn.Sequential(*layers, conv(chans[-1], n_classes, act=False, norm=False), nn.Flatten())
    return init_weights(model, leaky=0.1)


MODELS: dict[str, Callable[[], nn.Sequential]] = {
    "cnn": lesson_cnn,
    "cnn-wide": lambda: lesson_cnn(nfs=(32, 64, 128, 256)),
    "resnet": resnet,
    "resnet-small": lambda: resnet((8, 16, 32, 64, 128), pool=True),
}


def n_params(model: nn.Module) -> int:
    """How many trainable numbers a model has."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lsuv_init(model: nn.Module, batch: torch.Tensor, tol: float = 0.01, max_iter: int = 50) -> nn.Module:
    """Layer-sequential unit-variance init (the course's version): layer by layer, scale and shift the last
    affine module before each activation until the activation's output has mean 0 and std 1 on `batch`."""
    blocks = []
    for block in model.modules():
        children = list(block.children())
        for i, act in enumerate(children):
            if isinstance(act, (GeneralRelu, nn.ReLU, nn.LeakyReLU)):
                affine = [m for m in children[:i] if getattr(m, "bias", None) is not None and hasattr(m, "weight")]
                if affine:
                    blocks.append((affine[-1], act))
    if not blocks:
        raise ValueError("lsuv_init found no (conv/linear/norm with bias, activation) pair to initialize")
    seen = {}
    with torch.no_grad():
        for affine, act in blocks:
            handle = act.register_forward_hook(lambda m, i, out: seen.update(mean=out.mean(), std=out.std()))
            try:
                for _ in range(max_iter):
                    model(batch)
                    mean, std = float(seen["mean"]), float(seen["std"])
                    if abs(mean) < tol and abs(std - 1) < tol:
                        break
                    affine.bias -= mean
                    affine.weight /= std
            finally:
                handle.remove()
    return model


def recompute_bn_stats(model: nn.Module, batches, n_batches: int = 50) -> None:
    """Re-estimate every BatchNorm's running mean/var at the current weights (a cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = model.training
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the batches below
    model.train()
    with torch.no_grad():
        for i, (xb, _) in enumerate(batches):
            if i >= n_batches:
                break
            model(xb)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.train(was_training)


def recompute_bn_keeping_order(model: nn.Module, batches, n_batches: int = 50) -> None:
    """recompute_bn_stats, leaving the training order untouched: torch's random state (a shuffling torch
    DataLoader draws from it when iterated) and a lrlab loader's epoch, so a run stays reproducible."""
    epoch, rng = getattr(batches, "epoch", None), torch.get_rng_state()
    recompute_bn_stats(model, batches, n_batches)
    torch.set_rng_state(rng)
    if epoch is not None:
        batches.epoch = epoch
