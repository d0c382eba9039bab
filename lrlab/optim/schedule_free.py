"""Schedule-Free AdamW (Defazio et al. 2024): no lr schedule, and no decay at the end, yet the final weights are
as good as a tuned schedule's. It keeps three sequences: z, plain AdamW-normalized SGD steps; x, a running
average of the z's (weighted by lr^2 during warm-up); and y = (1 - beta1) z + beta1 x, where the gradient is
taken. The model's parameters hold y while training and x for evaluation: call optimizer.eval() before
evaluating or saving and optimizer.train() before training again, as with the `schedulefree` package. It starts
in train mode (before the first step x = y = z, so nothing differs), so a plain loop can step at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrlab.optim.core import RuleOptimizer, apply_rule


def schedule_free_adamw_rule(y, g, z, v, step, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                             average_weight=1.0):  # fmt: skip
    """One step from y (where the gradient g was taken). average_weight is x's weight for the new z, c_{t+1}.
    Returns (y, z, v); x is never stored: y and z determine it."""
    v = beta2 * v + (1 - beta2) * (g * g)
    normalized = g / ((v / (1 - beta2**step)) ** 0.5 + eps) + weight_decay * y
    y = y + average_weight * (z - y) + lr * (beta1 * (1 - average_weight) - 1) * normalized
    return y, z - lr * normalized, v


class ScheduleFreeAdamW(RuleOptimizer):
    """Schedule-Free AdamW with a linear lr warm-up and the paper's lr^power weighting of the average.

    Args:
        params, impl, maximize: as lrlab.optim.SGD; lr (the schedulefree package's default 2.5e-3), betas
            (beta1 interpolates y between z and x), eps, weight_decay (at y, as in the paper); warmup_steps;
        r: polynomial weighting of the average; weight_lr_power: average weights are lr_max^power.

    Raises:
        ValueError: hyperparameters out of range, compile=True, or no parameters.
        RuntimeError: step() outside train mode."""

    rule = staticmethod(schedule_free_adamw_rule)
    one_path = True
    state_names = ("z", "exp_avg_sq")

    def __init__(self, params: Iterable, lr: float = 2.5e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2.0, impl: str = "foreach", compile: bool = False,
                 maximize: bool = False) -> None:  # fmt: skip
        if compile:
            raise ValueError("ScheduleFreeAdamW has no compiled path yet: leave compile=False")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps,
                        r=r, weight_lr_power=weight_lr_power, k=0, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0,
                        train_mode=True)  # fmt: skip
        super().__init__(params, defaults, impl, False, maximize)

    def initial_state(self, name: str, p: torch.Tensor, group: dict) -> torch.Tensor:
        return (
            p.detach().clone(memory_format=torch.preserve_format)
            if name == "z"
            else super().initial_state(name, p, group)
        )

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to y, where gradients are taken (a no-op if already training)."""
        self._move(train=True)

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to x, the average: the weights to evaluate and save."""
        self._move(train=False)

    def _move(self, train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == train:
                continue
            beta1 = group["betas"][0]
            for p in group["params"]:
                z = self.state[p].get("z")
                if z is not None:  # y = x + (1 - beta1)(z - x);  x = y + (1 - 1/beta1)(z - y)
                    p.lerp_(z, 1 - beta1 if train else 1 - 1 / beta1)
            group["train_mode"] = train

    @torch.no_grad()
    def step(self, closure=None):
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError("ScheduleFreeAdamW.step() in eval mode: call optimizer.train() before training")
        for group in self.param_groups:  # every group's clock moves, as in the paper's loop
            self._advance(group)
        return super().step(closure)

    @staticmethod
    def _advance(group: dict) -> None:
        """This step's warmed-up lr and the new z's weight in the average x (c_{t+1} = w_t / sum of w)."""
        k = group["k"]
        lr = group["lr"] * ((k + 1) / group["warmup_steps"] if k < group["warmup_steps"] else 1.0)
        group["scheduled_lr"] = lr
        group["lr_max"] = lr_max = max(lr, group["lr_max"])
        weight = (k + 1) ** group["r"] * lr_max ** group["weight_lr_power"]
        group["weight_sum"] += weight
        group["average_weight"] = weight / group["weight_sum"] if group["weight_sum"] else 0.0
        group["k"] = k + 1

    def foreach_update(self, group, params, grads, states, steps) -> None:
        beta1, beta2 = group["betas"]
        hypers = dict(lr=group["scheduled_lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                      weight_decay=group["weight_decay"], average_weight=group["average_weight"])  # fmt: skip
        apply_rule(schedule_free_adamw_rule, params, grads, [*states, [group["k"]] * len(params)], hypers)
