"""The module paths of lrlab 0.1, kept for one release (0.2): each old path is the moved module itself, not a
copy, so ``lrlab.learner is lrlab.train.learner`` and a monkeypatch of an old path patches the real module.

Importing an old path warns (DeprecationWarning) with the new one; lrlab's own code, tests, notebooks and
examples use the new paths only. The table goes in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# old dotted path -> new dotted path; a package's submodules follow it (lrlab.callbacks.core too)
MOVED = {
    "lrlab.anneal": "lrlab.tuning.anneal_rule",
    "lrlab.annealer": "lrlab.tuning.auto_anneal",
    "lrlab.autolr": "lrlab.tuning.auto_lr",
    "lrlab.lr_range": "lrlab.tuning.lr_range",
    "lrlab.optim_since_adam": "lrlab.optim.since_adam",
    "lrlab.optim_muon": "lrlab.optim.muon",
    "lrlab.optim_schedule_free": "lrlab.optim.schedule_free",
    "lrlab.optim_flat": "lrlab.optim.flat",
    "lrlab.phased_schedules": "lrlab.schedules.phased",
    "lrlab.hyperparams": "lrlab.schedules.hyperparams",
    "lrlab.loaders": "lrlab.data.loaders",
    "lrlab.workloads": "lrlab.data.workloads",
    "lrlab.learner": "lrlab.train.learner",
    "lrlab.checkpoint": "lrlab.train.checkpoint",
    "lrlab.distributed": "lrlab.train.distributed",
    "lrlab.callbacks": "lrlab.train.callbacks",
    "lrlab.runs": "lrlab.train.runs",
    "lrlab.run": "lrlab.apps.fit",
    "lrlab.compare": "lrlab.apps.compare",
    "lrlab.bench": "lrlab.apps.bench",
    "lrlab.bench_report": "lrlab.apps.bench_report",
    "lrlab.speedrun": "lrlab.apps.speedrun",
    "lrlab.cli_lab": "lrlab.cli.lab",
    "lrlab.console": "lrlab.cli.console",
}


def new_path(old: str) -> str | None:
    """Where an old dotted module path lives now (None: it did not move)."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # the import system has just set the alias's spec on the real module: give it back its own
        module.__spec__ = self.own_spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        new = new_path(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new} (the old path goes in lrlab 0.3)", DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on sys.meta_path (before the path finder, which would load a second copy)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
