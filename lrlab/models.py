"""The lesson's CNN and the pieces it is built from."""

from __future__ import annotations

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


def init_weights(model: nn.Module, leaky: float = 0.1) -> nn.Module:
    """Kaiming-normal init of every conv and linear weight, for leaky ReLUs of slope `leaky`."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=leaky)
    return model


def lesson_cnn(nfs: tuple[int, ...] = (8, 16, 32, 64), n_classes: int = 10) -> nn.Sequential:
    """Four stride-2 convs 1->8->16->32->64 (28->1 pixels), a conv to the classes, flatten: ~30k params."""
    chans = (1, *nfs)
    layers = [conv(chans[i], chans[i + 1]) for i in range(len(nfs))]
    model = nn.Sequential(*layers, conv(chans[-1], n_classes, act=False, norm=False), nn.Flatten())
    return init_weights(model, leaky=0.1)


def n_params(model: nn.Module) -> int:
    """How many trainable numbers a model has."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
