"""Optimizers by name: the registry the CLI's --opt and `lrlab optimizers` list, the lesson's recipe, and the
third-party learning-rate-free optimizers (Prodigy, Schedule-Free, D-Adaptation) by name."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch

from lrlab.optim.classic import SGD, Adam, Momentum, RMSProp
from lrlab.optim.core import RuleOptimizer
from lrlab.optim.muon import Muon
from lrlab.optim.schedule_free import ScheduleFreeAdamW
from lrlab.optim.since_adam import AdEMAMix, Lion, NAdam, RAdam

# The order is the CLI's: the lesson's four, then those since Adam.
OPTIMIZERS: dict[str, type[RuleOptimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "rmsprop": RMSProp,
    "adam": Adam,
    "nadam": NAdam,
    "radam": RAdam,
    "lion": Lion,
    "ademamix": AdEMAMix,
    "muon": Muon,
    "schedulefree_adamw": ScheduleFreeAdamW,
}


def get_opt_func(name: str, **kwargs: Any) -> Callable[..., torch.optim.Optimizer]:
    """An opt_func (params, lr -> optimizer) for a registered name; extra keywords fixed.

    Raises:
        ValueError: an unknown name (the message lists the registered ones)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return functools.partial(OPTIMIZERS[name], **kwargs)


LESSON_EPS = 1e-5  # the lesson's eps for adaptive optimizers
# The lesson's recipe, defined once: its eps for adaptive optimizers; Adam also gets AdamW's weight decay.
LESSON_RECIPES: dict[str, dict[str, float]] = {
    "adam": {"eps": LESSON_EPS, "weight_decay": 1e-2},
    "rmsprop": {"eps": LESSON_EPS},
}
# The course's (miniai's) own rules, exactly: RMSProp's average starts at grad^2; Adam puts eps inside the
# root, with beta2 0.99; both eps 1e-5. lrlab's defaults follow torch instead (compare them side by side).
COURSE_RULES: dict[str, dict] = {
    "rmsprop": {"alpha": 0.99, "eps": LESSON_EPS, "init_grad_sq": True},
    "adam": {"betas": (0.9, 0.99), "eps": LESSON_EPS, "eps_root": True},
}


def lesson_recipe(name: str) -> dict[str, float]:
    """The lesson's keywords for a registered optimizer (a fresh dict; empty where the defaults are the lesson's)."""
    return dict(LESSON_RECIPES.get(name, {}))


def lesson_opt_func(name: str = "adam", **overrides: Any) -> Callable[..., torch.optim.Optimizer]:
    """get_opt_func with the lesson's recipe, any keyword overridden."""
    return get_opt_func(name, **{**lesson_recipe(name), **overrides})


TORCH_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "nadam": "NAdam"}


def named_opt_func(spec: str, **kwargs: Any) -> Callable[..., torch.optim.Optimizer]:
    """An opt_func for "impl:name": "torch:sgd" (torch.optim's SGD, Adam, AdamW, RMSprop, NAdam) or
    "lrlab:momentum" (a registered name of OPTIMIZERS); extra keywords fixed.

    Raises:
        ValueError: an unknown implementation or name (the message lists the choices)."""
    impl, _, name = spec.partition(":")
    if impl == "lrlab":
        return get_opt_func(name, **kwargs)
    if impl == "torch" and name in TORCH_OPTIMIZERS:
        return functools.partial(getattr(torch.optim, TORCH_OPTIMIZERS[name]), **kwargs)
    raise ValueError(f"optimizer must be lrlab:NAME ({', '.join(OPTIMIZERS)}) or torch:NAME "
                     f"({', '.join(TORCH_OPTIMIZERS)}), got {spec!r}")  # fmt: skip


# The learning-rate-free baselines of other packages (optional: pip install lrlab[lrfree]): name -> (module, class).
LRFREE = {
    "prodigy": ("prodigyopt", "Prodigy"),
    "schedulefree": ("schedulefree", "AdamWScheduleFree"),
    "dadapt": ("dadaptation", "DAdaptAdam"),
    "dog": ("dog", "DoG"),
    "prodigy_sf": ("prodigyplus.prodigy_plus_schedulefree", "ProdigyPlusScheduleFree"),
}
PACKAGES = {"prodigy_sf": "prodigy-plus-schedule-free", "dog": "dog-optimizer"}  # pip's name, where it differs


def lrfree_opt_func(name: str, **kwargs) -> Callable[..., torch.optim.Optimizer]:
    """An opt_func for Prodigy, Schedule-Free AdamW or D-Adaptation Adam, with a clear error if not installed."""
    if name not in LRFREE:
        raise ValueError(f"unknown learning-rate-free optimizer {name!r}; choose one of {', '.join(LRFREE)}")
    module_name, cls_name = LRFREE[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = PACKAGES.get(name, module_name)
        raise ImportError(f"{name} needs the package {package}: pip install 'lrlab[lrfree]'") from None
    return functools.partial(getattr(module, cls_name), **kwargs)


def mechanized_opt_func(base: Callable[..., torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """Mechanic (the package mechanic-pytorch) around an opt_func's optimizer class: it learns the scale of
    the lr it is given.

    Raises:
        ImportError: mechanic-pytorch is not installed (pip install 'lrlab[lrfree]')."""
    try:
        from mechanic_pytorch import mechanize
    except ImportError:
        raise ImportError("mechanic needs the package mechanic-pytorch: pip install 'lrlab[lrfree]'") from None
    cls, keywords = (base.func, base.keywords) if isinstance(base, functools.partial) else (base, {})
    return functools.partial(mechanize(cls), **keywords)
