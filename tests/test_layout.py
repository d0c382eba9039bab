"""The package's shape: layers checked by import-linter, a short top level, one front door per family, the old
0.1 paths resolving to the moved modules themselves, and lazy imports that load no more than a layer needs."""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import lrlab
from lrlab import _moved

PACKAGE = Path(lrlab.__file__).parent


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 kept, 0 broken" in done.stdout


def test_at_most_eight_modules_sit_directly_in_the_package():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 8, modules
    families = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"optim", "schedules", "tuning", "data", "train", "apps", "cli", "lab"} <= families


def test_each_family_lives_in_one_package():
    optim_files = {p.stem for p in (PACKAGE / "optim").glob("*.py")}
    assert {"core", "classic", "since_adam", "muon", "schedule_free", "flat", "registry"} <= optim_files
    tuning_files = {p.stem for p in (PACKAGE / "tuning").glob("*.py")}
    assert {"anneal_rule", "auto_anneal", "auto_lr", "lr_range"} <= tuning_files
    assert not list(PACKAGE.glob("optim_*.py")) and not list(PACKAGE.glob("*anneal*.py"))


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_paths_are_the_moved_modules_and_warn(old):
    new = _moved.MOVED[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # its own spec back: reload and pickling see the real module


def test_old_submodule_paths_follow_their_package():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import lrlab.callbacks.schedule as old
    from lrlab.train.callbacks import schedule

    assert old is schedule
    assert _moved.new_path("lrlab.workloads.text") == "lrlab.data.workloads.text"
    assert _moved.new_path("lrlab.optim") is None  # the package kept its path


@pytest.mark.parametrize(
    "module, must_not_load",
    [
        ("lrlab.optim", "lrlab.schedules"),
        ("lrlab.optim", "lrlab.train.learner"),
        ("lrlab.tuning", "lrlab.train.learner"),
        ("lrlab.schedules", "lrlab.train.learner"),
        ("lrlab.lightning", "lrlab.train.learner"),
        ("lrlab.lab", "lrlab.train.learner"),
        ("lrlab.train.learner", "lrlab.train.callbacks"),
        ("lrlab", "torch"),
    ],
)
def test_an_import_loads_no_layer_above_it(module, must_not_load):
    code = f"import sys, {module}; print({must_not_load!r} in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_short_public_paths():
    from lrlab import AutoLR, AutoLRCB, Learner, MetricsCB, lr_find
    from lrlab.train.callbacks import MetricsCB as metrics_cb
    from lrlab.train.callbacks.lr_finder import lr_find as finder
    from lrlab.train.learner import Learner as learner
    from lrlab.tuning.auto_lr import AutoLR as auto_lr

    assert (Learner, MetricsCB, lr_find, AutoLR) == (learner, metrics_cb, finder, auto_lr)
    assert AutoLRCB.__module__ == "lrlab.train.callbacks.anneal"
    for name in lrlab.__all__:
        assert getattr(lrlab, name) is not None
    assert set(lrlab.__all__) <= set(dir(lrlab))
    with pytest.raises(AttributeError, match="no attribute 'Lerner'"):
        lrlab.Lerner  # noqa: B018


def test_family_front_doors_export_what_their_modules_define():
    import lrlab.data
    import lrlab.optim
    import lrlab.schedules
    import lrlab.tuning

    for package in (lrlab.optim, lrlab.schedules, lrlab.tuning, lrlab.data):
        for name in package.__all__:
            assert hasattr(package, name), (package.__name__, name)
    assert list(lrlab.optim.OPTIMIZERS) == [
        "sgd", "momentum", "rmsprop", "adam", "nadam", "radam", "lion", "ademamix", "muon", "schedulefree_adamw",
    ]  # fmt: skip


def _trained(opt_factory, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    opt = opt_factory(model.parameters())
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    for _ in range(steps):
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def test_adam_impl_flat_is_flat_adam_and_the_same_adam():
    from lrlab.optim import Adam, FlatAdam

    flat = Adam([torch.zeros(3, requires_grad=True)], lr=0.1, impl="flat")
    assert type(flat) is FlatAdam and isinstance(flat, Adam)
    assert type(Adam([torch.zeros(3, requires_grad=True)])) is Adam
    per_tensor = _trained(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1))
    in_buffers = _trained(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1, impl="flat"))
    for a, b in zip(per_tensor, in_buffers):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_adam_impl_flat_refuses_what_only_the_per_tensor_adam_has():
    from lrlab.optim import Adam, FlatAdam

    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="eps_root, bias_correction=False need impl='foreach'"):
        Adam(p, impl="flat", eps_root=True)
    with pytest.raises(ValueError, match="eps_root, bias_correction=False"):
        Adam(p, impl="flat", bias_correction=False)
    with pytest.raises(ValueError, match="FlatAdam's impl is 'flat', got 'reference'"):
        FlatAdam(p, impl="reference")
    with pytest.raises(ValueError, match="impl must be"):
        Adam(p, impl="fused")
