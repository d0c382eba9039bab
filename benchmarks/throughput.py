"""Training images per second of each model in fp32, with bf16 autocast, and with bf16 + torch.compile,
measured in one process on random batches (warm-up and compilation excluded). The speedrun's recipes are
chosen from these figures.

Run: .venv/bin/python benchmarks/throughput.py [--models cnn-wide,resnet,resnet-small] [--bs 256]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from lrlab.models import get_model
from lrlab.optim import Adam


def images_per_second(name: str, bs: int, bf16: bool, compiled: bool, batches: int = 20) -> float:
    """Forward, loss, backward and an Adam step per batch, timed after a warm-up."""
    torch.manual_seed(0)
    model = get_model(name)
    run = torch.compile(model) if compiled else model
    opt = Adam(model.parameters(), lr=1e-3, eps=1e-5)
    x, y = torch.randn(bs, 1, 28, 28), torch.randint(0, 10, (bs,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(run(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return bs * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="cnn,cnn-wide,resnet,resnet-small")
    parser.add_argument("--bs", type=int, default=256)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bs {args.bs}; training images/s")
    print(f"{'model':14s} {'fp32':>8s} {'bf16':>8s} {'bf16+compile':>13s}")
    for name in args.models.split(","):
        fp32 = images_per_second(name, args.bs, bf16=False, compiled=False)
        bf16 = images_per_second(name, args.bs, bf16=True, compiled=False)
        both = images_per_second(name, args.bs, bf16=True, compiled=True)
        ratios = f"(bf16 {bf16 / fp32:.2f}x, bf16+compile {both / fp32:.2f}x)"
        print(f"{name:14s} {fp32:8.0f} {bf16:8.0f} {both:13.0f}   {ratios}")


if __name__ == "__main__":
    main()
