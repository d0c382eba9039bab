"""Step time of lrlab's Adam and FlatAdam against torch.optim.Adam (default, foreach, fused), alternated in
one process.

Run: .venv/bin/python benchmarks/optim_step.py [--compile] [--rounds 7] [--only flat]
Prints the median step time of each and its ratio to torch's foreach (and fused) on three parameter sets:
the lesson CNN, a ResNet-like model (984k parameters in 56 tensors), and 53 tensors of 64x64x3x3 and 64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lrlab.models import lesson_cnn, n_params
from lrlab.optim import Adam
from lrlab.optim.flat import FlatAdam


def resnet_like(width: int = 80, blocks: int = 17) -> nn.Module:
    """About 1M parameters in about 50 tensors: convs with BatchNorm, like a small ResNet."""
    layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
    for _ in range(blocks):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def conv_stack(convs: int = 27, width: int = 64) -> nn.Module:
    """53 tensors: 27 conv filters of 64x64x3x3 and 26 vectors of 64 (the shapes of the issue's second case)."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers.append(nn.Conv2d(width, width, 3, padding=1, bias=i < convs - 1))
    return nn.Sequential(*layers)


def time_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor], n: int,
               fresh: bool = False) -> float:  # fmt: skip
    """Seconds per step over n steps (gradients fixed, as only the optimizer is measured). fresh: every step
    gets new gradient tensors (a loop whose zero_grad sets them to None); else they stay where they are (a
    loop with zero_grad(set_to_none=False), where backward accumulates into the same tensors)."""
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()  # warm-up (state allocation, compilation)
    if not fresh:  # as a loop that keeps its gradient tensors and backward writes into them
        opt.zero_grad(set_to_none=False)  # FlatAdam: the gradients now live in its flat buffer
        for p, g in zip(params, grads):
            p.grad.copy_(g)
    start = time.perf_counter()
    for _ in range(n):
        if fresh:
            for p, g in zip(params, grads):
                p.grad = g
        opt.step()
    return (time.perf_counter() - start) / n


def bench(name: str, model: nn.Module, compile: bool, rounds: int, n: int, only_flat: bool = False,
          fresh: bool = False) -> None:  # fmt: skip
    params = [p for p in model.parameters()]
    grads = [torch.randn_like(p) * 1e-2 for p in params]
    makers = {
        "torch foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "lrlab flat": lambda ps: FlatAdam(ps, lr=1e-3),
    }
    if not only_flat:
        makers = {"torch default": lambda ps: torch.optim.Adam(ps, lr=1e-3), **makers}
        makers["lrlab foreach"] = lambda ps: Adam(ps, lr=1e-3)
    if compile:
        if not only_flat:
            makers["lrlab compiled"] = lambda ps: Adam(ps, lr=1e-3, compile=True)
        makers["lrlab flat compiled"] = lambda ps: FlatAdam(ps, lr=1e-3, compile=True)
    opts = {}
    for key, make in makers.items():
        copies = [p.detach().clone().requires_grad_() for p in params]
        opts[key] = (make(copies), copies)
    times: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(rounds):  # alternate so that machine noise hits all alike
        for key, (opt, copies) in opts.items():
            times[key].append(time_steps(opt, copies, grads, n, fresh))
    med = {k: statistics.median(v) for k, v in times.items()}
    grads_are = "new gradient tensors every step" if fresh else "gradients in place"
    print(f"\n{name}: {n_params(model):,} parameters in {len(params)} tensors, {grads_are}, "
          f"median of {rounds} rounds x {n} steps")  # fmt: skip
    print(f"{'optimizer':<20}{'µs/step':>10}{'vs foreach':>12}{'vs fused':>10}")
    for key, t in med.items():
        print(f"{key:<20}{t * 1e6:>10.1f}{t / med['torch foreach']:>11.2f}x{t / med['torch fused']:>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compile", action="store_true", help="also time Adam(compile=True) (compiles 10-30 s)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=["flat"], default=None, help="flat: only torch foreach/fused and flat")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    flat = args.only == "flat"
    if not flat:
        bench("lesson CNN", lesson_cnn(), args.compile, args.rounds, n=400)
    for fresh in (False, True) if flat else (False,):
        bench("ResNet-like", resnet_like(), args.compile, args.rounds, n=100, only_flat=flat, fresh=fresh)
        bench("conv stack", conv_stack(), args.compile, args.rounds, n=100, only_flat=flat, fresh=fresh)


if __name__ == "__main__":
    main()
