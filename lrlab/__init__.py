"""lrlab: see and automate how neural networks are optimized.

The names a user types most are here, loaded on first use (so ``import lrlab.optim`` loads no Learner):
``from lrlab import Learner, MetricsCB, AutoLRCB, lr_find``. The families have their own front doors:
``lrlab.optim``, ``lrlab.schedules``, ``lrlab.tuning``, ``lrlab.data``.
"""

from __future__ import annotations

import importlib
from typing import Any

from lrlab import _moved

_moved.install()

__version__ = "0.2.0"

_LEARNER = ("Callback", "CancelBatchException", "CancelEpochException", "CancelFitException", "Learner")
_ELSEWHERE = {**dict.fromkeys(_LEARNER, "lrlab.train.learner"), "AutoLR": "lrlab.tuning"}
_CALLBACKS = "lrlab.train.callbacks"  # every name its __all__ lists: MetricsCB, AutoLRCB, lr_find, ...


def _public() -> list[str]:
    return sorted([*_ELSEWHERE, *importlib.import_module(_CALLBACKS).__all__])


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for (PEP 562); `__all__` too, so
    that `import lrlab` alone loads nothing."""
    if name == "__all__":
        return _public()
    if name in _ELSEWHERE:
        module = importlib.import_module(_ELSEWHERE[name])
    elif not name.startswith("_") and name in importlib.import_module(_CALLBACKS).__all__:
        module = importlib.import_module(_CALLBACKS)
    else:
        raise AttributeError(f"module 'lrlab' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})
