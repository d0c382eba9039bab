"""The whole command line, fuzzed (hypothesis): every subcommand with options drawn from valid values, boundary
values, wrong types, huge and tiny numbers, NaN and inf, unknown names, and K=V pairs for every torch scheduler and
every optimizer. The property: exit status 0 or 2 (1 for the environment), a refusal is one line on stderr, no
traceback, no temporary file left behind.

Training is replaced by a stub (what is fuzzed is everything before it: parsing, checking, the run folder); the
lab and sched-plot run for real, on bounded sizes. The budget is fixed (a derandomized search of
LRLAB_FUZZ_EXAMPLES examples, 150 by default); `benchmarks/fuzz_cli.py` runs a longer search."""

from __future__ import annotations

import inspect
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler

from lrlab.cli.main import main
from lrlab.lab import SHEETS
from lrlab.optim.registry import OPTIMIZERS
from lrlab.schedules.torch_schedules import PRESETS, available_schedulers

EXAMPLES = int(os.environ.get("LRLAB_FUZZ_EXAMPLES", "150"))
NUMBERS = ["0", "-1", "1", "2", "3", "7", "10", "100", "0.5", "0.9", "1e-3", "3e-2", "-0.5", "nan", "inf", "-inf",
           "1e308", "1e-320", "1e999", "100000000000", "2.5", "", "abc", "True", "None", "[1, 2]", "0x10"]  # fmt: skip
SCHEDULERS = [*PRESETS, *available_schedulers(), "NoSuchLR", "lambda"]


def arguments_of(cls) -> list[str]:
    """The keyword names a class takes (its K=V keys), without params/optimizer."""
    try:
        names = list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []
    return [n for n in names if n not in ("self", "params", "optimizer", "args", "kwargs")]


def key_values(keys: list[str]) -> st.SearchStrategy[str]:
    """K=V with K a real keyword (or a junk one) and V any of NUMBERS, or text without '='."""
    key = st.sampled_from([*keys, "foo", "lr", ""]) if keys else st.sampled_from(["foo", "lr", ""])
    return st.one_of(st.builds(lambda k, v: f"{k}={v}", key, st.sampled_from(NUMBERS)), st.just("noequals"))


def number() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NUMBERS), st.integers(-3, 400).map(str))


def option(flag: str, values: st.SearchStrategy[str], chance: float = 0.4) -> st.SearchStrategy[list[str]]:
    """[flag, value] or nothing."""
    return st.one_of(st.just([]), st.builds(lambda v: [flag, v], values)) if chance else st.just([])


def flags(*options: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*options).map(lambda parts: [token for part in parts for token in part])


@st.composite
def fit_argv(draw) -> list[str]:
    opt = draw(st.sampled_from([*OPTIMIZERS, "adamax", ""]))
    sched = draw(st.sampled_from([*SCHEDULERS, None]))
    opt_keys = arguments_of(OPTIMIZERS.get(opt)) if opt in OPTIMIZERS else []
    sched_keys = arguments_of(getattr(lr_scheduler, sched, None)) if sched and hasattr(lr_scheduler, sched) else []
    argv = ["fit", "--opt", opt] + (["--sched", sched] if sched else [])
    argv += draw(flags(*(option(f, number()) for f in ("--lr", "--epochs", "--bs", "--n-train", "--n-valid",
                                                        "--label-smoothing", "--checkpoint-every", "--nproc",
                                                        "--threads", "--seed"))))  # fmt: skip
    argv += draw(flags(option("--sched-step", st.sampled_from(["batch", "epoch", "step"])),
                       option("--device", st.sampled_from(["cpu", "cuda", "gpu0", "meta", ""])),
                       option("--model", st.sampled_from(["cnn", "resnet-small", "vgg"])),
                       option("--hyper", st.sampled_from(["momentum=0.9:0.8", "weight_decay=0:0.1:linear",
                                                          "beta1=2:1", "foo=1:2", "nonsense"]))))  # fmt: skip
    argv += [t for kv in draw(st.lists(key_values(opt_keys), max_size=2)) for t in ("--opt-arg", kv)]
    argv += [t for kv in draw(st.lists(key_values(sched_keys), max_size=2)) for t in ("--sched-arg", kv)]
    argv += draw(st.lists(st.sampled_from(["--auto", "--bf16", "--augment", "--tta", "--no-norm", "--stats",
                                           "--compile"]), max_size=2, unique=True))  # fmt: skip
    return argv


@st.composite
def sched_plot_argv(draw) -> list[str]:
    name = draw(st.sampled_from(SCHEDULERS))
    keys = arguments_of(getattr(lr_scheduler, name, None)) if hasattr(lr_scheduler, name) else []
    steps = st.one_of(st.integers(1, 3000).map(str), st.sampled_from(["0", "-5", "1e9", "nan", "2000000", "x"]))
    argv = ["sched-plot", name] + draw(flags(option("--steps", steps), option("--lr", number())))
    argv += [t for kv in draw(st.lists(key_values(keys), max_size=3)) for t in ("--opt", kv)]
    argv += draw(option("--hyper", st.sampled_from(["momentum=0.95:0.85", "beta2=0.9:1.5", "x=1:2", "=:"])))
    argv += draw(option("--out", st.sampled_from(["plot.png", "sub/dir/p.png", ".", "/dev/null", "x.txt"])))
    return argv


@st.composite
def lab_argv(draw) -> list[str]:
    target = draw(st.sampled_from([*SHEETS, "export", "compare", "nosuch"]))
    epochs = st.one_of(st.integers(1, 300).map(str), st.sampled_from(["0", "-1", "101", "2000000", "nan", "x"]))
    argv = ["lab", target]
    if target == "export":
        argv.append(draw(st.sampled_from(["book.xlsx", "sub/book.xlsx", ".", "/dev/null", "book"])))
    argv += draw(flags(option("--epochs", epochs), option("--runs", st.sampled_from(["1", "2", "0", "x", "99999999"])),
                       option("--lr", number()), option("--cap", st.sampled_from(["10", "200", "0", "1e12", "x"])),
                       option("--data", st.sampled_from(["data.csv", "bad.csv", "missing.csv", "/dev/zero"])),
                       option("--port", st.sampled_from(["8000", "-1", "70000"]))))  # fmt: skip
    argv += draw(st.lists(st.sampled_from(["--textbook", "--rows", "--open"]), max_size=2, unique=True))
    return argv


@st.composite
def grid_argv(draw) -> list[str]:
    command = draw(st.sampled_from(["bench", "compare", "speedrun", "optimizers", "schedulers", "nosuch"]))
    argv = [command]
    if command == "bench":
        argv += draw(flags(option("--workloads", st.sampled_from(["linear", "linear,regression", "all", "nosuch", ""])),
                           option("--configs", st.sampled_from(["constant@1e-3", "baselines", "wsd@x", "x@1", ","])),
                           option("--seeds", number()), option("--shard", st.sampled_from(["1/1", "2/1", "0/3", "a"])),
                           option("--jobs", st.sampled_from(["1", "2", "0", "65"])),
                           option("--executor", st.sampled_from(["local", "ray", "slurm"]))))  # fmt: skip
    elif command == "compare":
        argv += draw(flags(option("--configs", st.sampled_from(["onecycle@6e-2", "nosuch", "onecycle,onecycle"])),
                           option("--seeds", number()), option("--epochs", number())))  # fmt: skip
    elif command == "speedrun":
        argv += draw(option("--budget", st.sampled_from(["60", "61", "x", "-1"])))
    return argv


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's refusals
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def stubbed(tmp_path, data_dir, monkeypatch):
    """A working folder with data files, and training, grids and speedruns replaced by stubs that return 0."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LRLAB_DATA", str(data_dir))
    (tmp_path / "data.csv").write_text("x,y\n1,32\n2,34\n5,40\n")
    (tmp_path / "bad.csv").write_text("x,y\n1,2,3\n")
    monkeypatch.setattr("lrlab.apps.fit.train", lambda args, run_dir: 0)
    monkeypatch.setattr("lrlab.train.distributed.launch", lambda *args, **kwargs: 0)
    monkeypatch.setattr("lrlab.apps.bench.run_bench", lambda *args, **kwargs: [])
    monkeypatch.setattr("lrlab.apps.compare.run_grid", lambda *args, **kwargs: None)
    monkeypatch.setattr("lrlab.apps.speedrun.speedrun", lambda *args, **kwargs: {})
    monkeypatch.setattr("lrlab.lab.server.serve", lambda *args, **kwargs: None)
    return tmp_path


def test_the_whole_command_line_fuzzed_is_one_line_or_success(stubbed, capsys, record_property):
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
    @given(st.one_of(fit_argv(), sched_plot_argv(), lab_argv(), grid_argv()))
    def check(argv: list[str]) -> None:
        code, err = run_cli(argv, capsys)
        seen[str(code)] = seen.get(str(code), 0) + 1
        assert code in (0, 1, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code:
            assert len(err.strip().splitlines()) == 1 and err.lstrip().startswith("lrlab"), (argv, err)
        assert not list(stubbed.rglob("*.tmp")), argv  # no half-written file left behind

    check()
    summary = ", ".join(f"exit {k}: {v}" for k, v in sorted(seen.items()))
    record_property("fuzz", f"CLI fuzz: {sum(seen.values())} examples (budget {EXAMPLES}, derandomized): {summary}")
    assert sum(seen.values()) >= min(EXAMPLES, 100) and seen.get("0") and seen.get("2")
