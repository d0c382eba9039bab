"""Step time of lrlab's Adam against torch.optim.Adam (default, foreach, fused), alternated in one process.

Run: .venv/bin/python benchmarks/optim_step.py [--compile] [--rounds 7]
Prints the median step time of each and its ratio to torch's foreach (and fused) on two models.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lrlab.models import lesson_cnn, n_params
from lrlab.optim import Adam


def resnet_like(width: int = 80, blocks: int = 17) -> nn.Module:
    """About 1M parameters in about 50 tensors: convs with BatchNorm, like a small ResNet."""
    layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
    for _ in range(blocks):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def time_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor], n: int) -> float:
    """Seconds per step over n steps (gradients fixed, as only the optimizer is measured)."""
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()  # warm-up (state allocation, compilation)
    start = time.perf_counter()
    for _ in range(n):
        opt.step()
    return (time.perf_counter() - start) / n


def bench(name: str, model: nn.Module, compile: bool, rounds: int, n: int) -> None:
    params = [p for p in model.parameters()]
    grads = [torch.randn_like(p) * 1e-2 for p in params]
    makers = {
        "torch default": lambda ps: torch.optim.Adam(ps, lr=1e-3),
        "torch foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "lrlab foreach": lambda ps: Adam(ps, lr=1e-3),
    }
    if compile:
        makers["lrlab compiled"] = lambda ps: Adam(ps, lr=1e-3, compile=True)
    opts = {}
    for key, make in makers.items():
        copies = [p.detach().clone().requires_grad_() for p in params]
        opts[key] = (make(copies), copies)
    times: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(rounds):  # alternate so that machine noise hits all alike
        for key, (opt, copies) in opts.items():
            times[key].append(time_steps(opt, copies, grads, n))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name}: {n_params(model):,} parameters in {len(params)} tensors, median of {rounds} rounds x {n} steps")
    print(f"{'optimizer':<16}{'µs/step':>10}{'vs foreach':>12}{'vs fused':>10}")
    for key, t in med.items():
        print(f"{key:<16}{t * 1e6:>10.1f}{t / med['torch foreach']:>11.2f}x{t / med['torch fused']:>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile", action="store_true", help="also time Adam(compile=True) (compiles 10-30 s)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench("lesson CNN", lesson_cnn(), args.compile, args.rounds, n=400)
    bench("ResNet-like", resnet_like(), args.compile, args.rounds, n=100)


if __name__ == "__main__":
    main()
