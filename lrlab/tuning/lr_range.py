"""The LR range test's parts that need no Learner: the ramp, the suggestion rules, the result and its plot,
and `find_lr_in_loop`, the finder for a plain PyTorch model, loss, data and optimizer."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

MAX_STEPS = 10_000  # a ramp longer than this is a typo in mult, not a finer search


def finder_steps(start_lr: float, max_lr: float, mult: float) -> int:
    """Batches the ramp takes from start_lr to max_lr.

    Raises:
        ValueError: bounds out of order, mult <= 1, or a ramp of more than MAX_STEPS batches."""
    if not 0 < start_lr < max_lr:
        raise ValueError(f"need 0 < start_lr < max_lr, got start_lr={start_lr!r}, max_lr={max_lr!r}")
    if not mult > 1:
        raise ValueError(f"mult must be > 1, got {mult!r}")
    n_steps = math.ceil(math.log(max_lr / start_lr) / math.log(mult)) + 1
    if n_steps > MAX_STEPS:
        smallest = (max_lr / start_lr) ** (1 / (MAX_STEPS - 1))
        raise ValueError(
            f"mult={mult!r} needs {n_steps:,} batches from {start_lr:g} to {max_lr:g}; at most {MAX_STEPS:,} "
            f"(mult >= {smallest:.6g})"
        )
    return n_steps


def smooth(values: list[float], half_window: int = 2) -> list[float]:
    """Centered moving average (window shrinks at the ends): no lag, so suggestions are not shifted."""
    n = len(values)
    out = []
    for i in range(n):
        lo, hi = max(0, i - half_window), min(n, i + half_window + 1)
        out.append(sum(values[lo:hi]) / (hi - lo))
    return out


def steepest(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest per unit of log(lr)."""
    s = smooth(losses)
    if len(s) < 3:
        return lrs[0]
    slopes = [(s[i + 1] - s[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(1, len(s) - 1)]
    return lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]


def valley(lrs: list[float], losses: list[float]) -> float:
    """Inside the longest run of falling (smoothed) loss, the point 2/3 of the way down: safely before the minimum.

    The 'valley' is the longest decreasing subsequence of the smoothed losses; the suggestion sits
    past its middle, where the loss is still falling steadily, as fastai's `valley` does.
    """
    s = smooth(losses)
    n = len(s)
    run = [1] * n  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and run[j] + 1 > run[i]:
                run[i] = run[j] + 1
    end = max(range(n), key=run.__getitem__)
    start = end - run[end] + 1
    third = (end - start) / 3
    return lrs[min(n - 1, start + int(2 * third))]


def minimum(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss is lowest: the edge beyond which training stops improving."""
    s = smooth(losses)
    return lrs[min(range(len(s)), key=s.__getitem__)]


@dataclass
class LRFindResult:
    """What the finder saw, and its suggestions.

    steepest: fastest fall of the loss (a safe lr for a constant schedule); valley: fastai's pick inside the
    longest falling stretch; minimum: lowest loss. `suggestion` is minimum / 2, the peak lr for one-cycle:
    Smith's range test takes the largest lr that still trains as one-cycle's maximum, halved here for margin.
    """

    lrs: list[float]
    losses: list[float]
    steepest: float
    valley: float
    minimum: float
    suggestion: float = field(init=False)

    def __post_init__(self) -> None:
        self.suggestion = self.minimum / 2

    def plot(self, path: str | Path = "lr_find.png"):
        """Loss against lr on a log axis, both suggestions marked; saved as PNG."""
        import matplotlib.pyplot as plt

        from lrlab.plots import save

        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(self.lrs, self.losses, alpha=0.4, label="loss")
        ax.plot(self.lrs, smooth(self.losses), label="smoothed")
        marks = (
            ("steepest", self.steepest, "C2"),
            ("valley", self.valley, "C3"),
            ("suggestion", self.suggestion, "C4"),
        )
        for name, lr, color in marks:
            ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, path)
        return fig


def suggest(lrs: list[float], losses: list[float]) -> LRFindResult:
    """The suggestions for one ramp.

    Raises:
        ValueError: fewer than 3 batches (nothing to suggest from)."""
    if len(lrs) < 3:
        raise ValueError(f"the finder stopped after {len(lrs)} batches: too few to suggest an lr")
    return LRFindResult(lrs, losses, steepest(lrs, losses), valley(lrs, losses), minimum(lrs, losses))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr to `lr`; a tensor lr (torch allows one) keeps being a tensor."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def batches_forever(data: Iterable) -> Iterable:
    """The loader's batches, starting a new pass whenever one ends (a ramp may be longer than an epoch); an
    empty pass ends it."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            return


def find_lr_in_loop(
    model: torch.nn.Module,
    loss_func: Callable,
    data: Iterable,
    optimizer: torch.optim.Optimizer,
    start_lr: float = 1e-7,
    max_lr: float = 10.0,
    mult: float = 1.3,
    stop_div: float = 3.0,
    n_inp: int = 1,
) -> LRFindResult:
    """The LR range test in a plain PyTorch loop, with the Learner version's ramp, stop rule and suggestions.

    Each batch is (inputs..., targets...): `model(*batch[:n_inp])`, `loss_func(pred, *batch[n_inp:])`, moved to
    the model's device. Afterwards everything is as it was (see find_lr_with).

    Raises:
        ValueError: bad bounds or mult (see finder_steps), an empty loader, or too few batches to suggest."""
    device = next(model.parameters()).device

    def batch_loss(batch) -> torch.Tensor:
        batch = [t.to(device) if isinstance(t, torch.Tensor) else t for t in batch]
        return loss_func(model(*batch[:n_inp]), *batch[n_inp:])

    return find_lr_with(batch_loss, model, data, optimizer, start_lr, max_lr, mult, stop_div)


def find_lr_with(
    batch_loss: Callable,
    model: torch.nn.Module,
    data: Iterable,
    optimizer: torch.optim.Optimizer,
    start_lr: float = 1e-7,
    max_lr: float = 10.0,
    mult: float = 1.3,
    stop_div: float = 3.0,
) -> LRFindResult:
    """The LR range test for any way of computing a batch's loss (`batch_loss(batch)` -> scalar tensor).

    Afterwards model (weights, buffers, train/eval mode, gradients), optimizer (state and hyperparameters),
    torch's RNG and an lrlab loader's position are as they were; the optimizer's step hooks (a recorder, an
    annealer) do not see the finder's steps.

    Raises:
        ValueError: bad bounds or mult (see finder_steps), an empty loader, or too few batches to suggest."""
    n_steps = finder_steps(start_lr, max_lr, mult)
    own = {id(p) for p in model.parameters()}
    if not any(id(p) in own for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "the optimizer holds none of the model's parameters (it was built for another model): the loss "
            "could not move; build it on model.parameters()"
        )
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state())
    grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    loader_state = copy.deepcopy(data.state_dict()) if hasattr(data, "state_dict") else None  # lrlab's loaders
    was_training = model.training
    # the finder's steps are not the run's: hooks that follow the run must not see them
    hooks = (optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks)
    optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks = type(hooks[0])(), type(hooks[1])()
    lrs, losses, best, lr, ended = [], [], math.inf, start_lr, True
    to_none = not getattr(optimizer, "grads_in_place", False)  # a flat optimizer keeps its gradient buffer
    try:
        model.train()
        optimizer.zero_grad(set_to_none=to_none)
        for batch in itertools.islice(batches_forever(data), n_steps):
            set_lr(optimizer, lr)
            loss = batch_loss(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=to_none)
            value = float(loss.detach())
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            if not math.isfinite(value) or value > stop_div * best or lr * mult > max_lr:
                ended = False
                break
            lr *= mult
    finally:
        optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks = hooks
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
        if loader_state is not None:
            data.load_state_dict(loader_state)
        model.train(was_training)
        for p, g in grads:
            p.grad = g
    if not lrs:
        raise ValueError("the data gave no batch: the finder needs at least one")
    if ended and len(lrs) < n_steps:  # a one-pass iterator ran dry: a curve cut short suggests nonsense
        raise ValueError(
            f"the data ended after {len(lrs)} batches, before the ramp reached max_lr {max_lr:g} or the loss "
            f"diverged (a generator cannot start a second pass): give a DataLoader or a list of batches"
        )
    return suggest(lrs, losses)
