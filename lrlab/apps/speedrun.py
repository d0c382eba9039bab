"""`lrlab speedrun`: the best Fashion-MNIST model a time budget buys on this CPU, measured like a record."""

from __future__ import annotations

import copy
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch.nn import functional as F

from lrlab.data.fashion_mnist import get_dls
from lrlab.models import get_model
from lrlab.optim.registry import lesson_opt_func
from lrlab.schedules.torch_schedules import sched_func
from lrlab.train.callbacks.schedule import DeadlineSchedCB
from lrlab.train.callbacks.speed import BatchAugmentCB, MixedPrecisionCB, tta_probs
from lrlab.train.learner import Callback, CancelFitException, Learner


@dataclass(frozen=True)
class Recipe:
    """Everything a budget's run uses; the number of epochs is planned from a short timing of the model."""

    model: str
    lr: float
    bs: int = 256
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    augment: dict = field(default_factory=dict)
    bf16: bool = True
    compile: bool = False  # torch.compile the model: faster batches after a warm-up paid inside the budget


RECIPES = {
    60: Recipe("cnn-wide", lr=1e-2, augment={"pad": 1, "flip": True}),
    300: Recipe("resnet-small", lr=1e-2, augment={"pad": 2, "flip": True}, compile=True),
    900: Recipe("resnet", lr=1e-2, augment={"pad": 2, "flip": True, "erase": 0.25}, compile=True),
}


Clock = Callable[[], float]


class _Timer(Callback):
    """After 3 warm-up batches, time at least 12 batches and at least 1 s: a fast model's few milliseconds
    per batch are too noisy to plan a budget on."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock

    def after_batch(self, learn: Learner) -> None:
        if learn.iter == 3:
            self.start = self.clock()
        elif learn.iter > 3:
            n, elapsed = learn.iter - 3, self.clock() - self.start
            if (n >= 12 and elapsed >= 1.0) or learn.iter == len(learn.dl) - 1:
                self.per_batch = elapsed / n
                raise CancelFitException()


def _loss_and_opt(recipe: Recipe) -> tuple[Callable, Callable]:
    """The recipe's loss and optimizer, the same for the timing and the real run."""
    loss = partial(F.cross_entropy, label_smoothing=recipe.label_smoothing)
    return loss, lesson_opt_func("adam", weight_decay=recipe.weight_decay)


def seconds_per_batch(recipe: Recipe, dls, model: torch.nn.Module, clock: Clock = time.perf_counter) -> float:
    """Time a few training batches of `model` (warm-up and compilation excluded), then restore its weights."""
    state = copy.deepcopy(model.state_dict())
    timer = _Timer(clock)
    cbs = [timer, BatchAugmentCB(**recipe.augment)] + ([MixedPrecisionCB()] if recipe.bf16 else [])
    loss, opt_func = _loss_and_opt(recipe)
    Learner(model, dls, loss_func=loss, lr=recipe.lr, cbs=cbs, opt_func=opt_func).fit(1, valid=False)
    model.load_state_dict(state)
    dls.train.epoch = 0
    return timer.per_batch


def evaluate(model: torch.nn.Module, dl, bf16: bool = False) -> tuple[float, float]:
    """Test accuracy without and with test-time augmentation (the image and its mirror, averaged)."""
    model.eval()
    hits = hits_tta = n = 0
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        for xb, yb in dl:
            p = model(xb).float().softmax(1)
            p_tta = tta_probs(model, xb, p)
            hits += int((p.argmax(1) == yb).sum())
            hits_tta += int((p_tta.argmax(1) == yb).sum())
            n += len(yb)
    return hits / n, hits_tta / n


def seconds_to_evaluate(model: torch.nn.Module, dl, bf16: bool = False, clock: Clock = time.perf_counter) -> float:
    """Time the final evaluation (with TTA) on a few test batches, scaled to the whole test set: the time
    the training must leave for it."""
    batches = list(itertools.islice(iter(dl), 4))
    evaluate(model, batches[:1], bf16)  # warm-up
    timed = batches[1:] or batches  # a one-batch test set: time that batch again
    start = clock()
    evaluate(model, timed, bf16)
    return (clock() - start) / len(timed) * len(dl)


def speedrun(
    budget: int,
    seed: int = 0,
    data_dir=None,
    log: Callable[[str], None] = print,
    recipe: Recipe | None = None,
    clock: Clock = time.perf_counter,
) -> dict:
    """Train within `budget` seconds (planning, data loading and evaluation included) and measure it.

    `clock` is the time source of the planning, the deadline and the report (tests inject one that advances by
    rule, so the planning logic is tested on any machine, however busy)."""
    if recipe is None and budget not in RECIPES:
        raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(map(str, RECIPES))} (seconds)")
    recipe = recipe or RECIPES[budget]
    wall0, cpu0 = clock(), time.process_time()
    torch.manual_seed(seed)
    dls = get_dls(recipe.bs, data_dir=data_dir, seed=seed)
    dls.train.drop_last = True  # every batch one shape: a compiled model would recompile for a short last batch
    model = get_model(recipe.model)
    run_model = torch.compile(model) if recipe.compile else model  # shares model's parameters
    per_batch = seconds_per_batch(recipe, dls, run_model, clock)
    eval_reserve = 1.25 * seconds_to_evaluate(model, dls.valid, recipe.bf16, clock) + 0.5
    spent = clock() - wall0
    train_seconds = budget - spent - eval_reserve
    steps = max(1, int(train_seconds / per_batch))  # the last epoch may be partial; if slower, see DeadlineSchedCB
    epochs = -(-steps // len(dls.train))
    log(f"budget {budget} s: {recipe.model}, {steps} batches = {steps / len(dls.train):.1f} epochs planned "
        f"({per_batch * 1e3:.0f} ms per batch)")  # fmt: skip
    torch.manual_seed(seed)
    make_sched, _ = sched_func("onecycle", recipe.lr)
    schedule = DeadlineSchedCB(make_sched, steps, seconds=train_seconds, clock=clock)  # ends the fit
    cbs = [BatchAugmentCB(**recipe.augment), schedule]
    if recipe.bf16:
        cbs.append(MixedPrecisionCB())
    loss, opt_func = _loss_and_opt(recipe)
    learn = Learner(run_model, dls, loss_func=loss, lr=recipe.lr, cbs=cbs, opt_func=opt_func)
    fit_start = clock()
    learn.fit(epochs, valid=False)
    fit_seconds = clock() - fit_start
    eval_start = clock()
    acc, acc_tta = evaluate(model, dls.valid, bf16=recipe.bf16)  # uncompiled: eval mode needs no new graph
    eval_seconds = clock() - eval_start
    wall, cpu = clock() - wall0, time.process_time() - cpu0
    share = cpu / ((os.cpu_count() or 1) * wall)
    result = {
        "budget": budget, "seed": seed, "recipe": recipe.__dict__, "steps": steps,
        "epochs": round(steps / len(dls.train), 1),
        "steps_trained": schedule.trained, "steps_skipped": schedule.skipped, "train_s_planned": train_seconds,
        "train_s": fit_seconds, "eval_s_reserved": eval_reserve, "eval_s": eval_seconds,
        "test_acc": acc, "test_acc_tta": acc_tta,
        "wall": wall, "machine_share": share, "shared_machine": share < 0.8,
    }  # fmt: skip
    flag = "  (SHARED MACHINE: not a record)" if result["shared_machine"] else ""
    if schedule.skipped:
        log(f"slower than planned: the schedule skipped {schedule.skipped} of {steps} batches to end on time")
    log(f"test accuracy {acc:.4f}, with TTA {acc_tta:.4f}, in {wall:.1f} s (machine share {share:.2f}){flag}")
    return result
