"""The sampled workload space: draws that depend on their seed alone, cover the declared space, build and
train; the field's grid grows past its edges; the report's counts are the runs'; `lrlab bench --sample`."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch

from lrlab.apps.bench import opt_func_for, parse_config, run_one, workload_opt_func
from lrlab.apps.space import AUTOLR, SINGLE_RUN, base_jobs, close_jobs, compact, edge_jobs, grid_config, report
from lrlab.data.workloads import get_workload
from lrlab.data.workloads.space import (
    DATA,
    MAX_STEPS,
    MIN_STEPS,
    MODELS,
    OPTIMIZERS,
    build_model,
    draw,
    parse_name,
    sample,
)
from lrlab.optim.classic import Momentum
from lrlab.optim.registry import named_opt_func
from lrlab.train.callbacks import AveragedEvalCB, MetricsCB
from lrlab.train.learner import Learner
from tests.conftest import tiny_dls, tiny_model

CHEAP = 173  # a space whose first draw is a 60-step MLP on wine with torch's SGD: the CLI test runs its field


def test_a_draw_depends_on_its_space_seed_and_index_alone():
    assert draw(3, 5) == draw(3, 5)
    assert sample(5, 1) == sample(12, 1)[:5]
    assert draw(3, 5) != draw(4, 5)
    assert parse_name(draw(3, 5).name) == (3, 5)
    assert parse_name("fmnist-cnn") is None and parse_name("space-1") is None
    # the generator is string-seeded: the same draw on every machine (pinned so a change of the space is seen)
    assert draw(0, 1).describe() == ("classification n=3000 split 273, mlp depth 1 width 256 tanh norm none, "
                                     "lrlab adam, batch 64, 10 epochs")  # fmt: skip
    with pytest.raises(ValueError, match="index must be an integer >= 0, got -1"):
        draw(0, -1)
    with pytest.raises(ValueError, match="sample size"):
        sample(0, 1)


def test_draws_cover_the_declared_space_within_its_step_bounds():
    draws = sample(300, 0)
    assert {d.data for d in draws} == set(DATA)
    assert {d.optimizer for d in draws} == set(OPTIMIZERS)
    assert {d.model for d in draws} == {m for models in MODELS.values() for m in models}
    assert {(d.optimizer, d.impl) for d in draws} >= {("sgd", "torch"), ("sgd", "lrlab"), ("adam", "torch")}
    assert Counter(d.norm for d in draws if d.model == "mlp").keys() == {"none", "batch", "layer"}
    for d in draws:
        assert d.model in MODELS[d.kind]
        steps = -(-d.n_train // d.batch_size) * d.epochs
        assert steps >= MIN_STEPS
        assert steps <= MAX_STEPS or d.epochs == 1, d
        assert d.weight_decay in OPTIMIZERS[d.optimizer][1]


def test_the_lr_grid_doubles_over_the_optimizers_usual_range():
    d = draw(CHEAP, 0)
    grid = d.lr_grid()
    assert len(grid) == 7 and all(b == pytest.approx(2 * a) for a, b in zip(grid, grid[1:]))
    assert grid[0] == 5e-3  # torch's SGD with momentum 0.9
    lrlab_sgd = next(x for x in sample(100, 0) if (x.optimizer, x.impl) == ("sgd", "lrlab"))
    assert lrlab_sgd.lr_grid()[0] == pytest.approx(5e-2)  # lrlab's damped momentum takes 10x the lr


def test_a_sampled_name_is_a_workload_with_its_own_optimizer():
    w = get_workload(f"space{CHEAP}-0")
    assert w.about == draw(CHEAP, 0).describe() and w.metric == "accuracy"
    opt = workload_opt_func(w)([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9
    assert opt.defaults["nesterov"] is draw(CHEAP, 0).nesterov
    mechanic = opt_func_for(parse_config("mechanic@mid"), 100, w)([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert isinstance(mechanic, torch.optim.SGD) and type(mechanic).__name__ == "MechanizedSGD"
    assert isinstance(named_opt_func("lrlab:momentum")([torch.nn.Parameter(torch.zeros(2))], lr=0.1), Momentum)
    with pytest.raises(ValueError, match="torch:NAME"):
        named_opt_func("torch:lamb")
    with pytest.raises(ValueError, match="space\\{S\\}-\\{i\\}"):
        get_workload("spacex-1")


@pytest.mark.parametrize("kind", ["image28", "image8", "sequence", "tabular-class", "tabular-reg", "text"])
def test_a_draw_of_each_kind_builds_its_data_and_model(kind, data_dir, monkeypatch):
    monkeypatch.setenv("LRLAB_DATA", str(data_dir))
    d = next(x for x in sample(300, 0) if x.kind == kind)
    w = get_workload(d.name)
    dls = w.loaders(0)
    assert len(dls.train.ds) == d.n_train and len(dls.valid.ds) > 0
    x, y = next(iter(dls.train))
    torch.manual_seed(0)
    out = build_model(d)(x)
    assert math.isfinite(float(w.loss_func(out, y).detach()))
    trivial = w.baseline(dls)
    assert (0 < trivial < 1) if w.metric == "accuracy" else trivial > 0


def test_the_field_is_autolr_the_single_run_peers_and_the_grid():
    jobs = base_jobs([f"space{CHEAP}-0"], 2)
    configs = [c for _, c, s in jobs if s == 0]
    assert configs[0] == AUTOLR and configs[1 : 1 + len(SINGLE_RUN)] == list(SINGLE_RUN)
    assert configs[-7:] == [grid_config(lr) for lr in draw(CHEAP, 0).lr_grid()]
    assert {"prodigy_cos@1", "dadapt_cos@1", "schedulefree@2.5e-3", "prodigy_sf@1", "dog@1", "mechanic@mid",
            "onecycle@find"} <= set(configs)  # fmt: skip


def fake(workload: str, config: str, seed: int, final: float | None, metric: str = "accuracy", **extra) -> dict:
    return {"workload": workload, "config": config, "seed": seed, "final": final, "diverged": final is None,
            "metric": metric, **extra}  # fmt: skip


def test_the_grid_grows_past_the_edge_where_its_best_lies():
    name = f"space{CHEAP}-0"
    grid = draw(CHEAP, 0).lr_grid()
    runs = [fake(name, grid_config(lr), s, 0.5 + k / 100) for k, lr in enumerate(grid) for s in range(2)]
    assert edge_jobs(runs, [name], 2) == [(name, grid_config(grid[-1] * 2), 0), (name, grid_config(grid[-1] * 2), 1)]
    runs += [fake(name, grid_config(grid[-1] * 2), s, 0.9) for s in range(2)]
    runs += [fake(name, grid_config(grid[-1] * 4), s, 0.95) for s in range(2)]
    assert edge_jobs(runs, [name], 2) == []  # two points past the grid: the limit
    middle = [fake(name, grid_config(lr), 0, 0.9 if k == 3 else 0.5) for k, lr in enumerate(grid)]
    assert edge_jobs(middle, [name], 1) == []
    low = [fake(name, grid_config(lr), 0, 0.9 if k == 0 else 0.5) for k, lr in enumerate(grid)]
    assert edge_jobs(low, [name], 1) == [(name, grid_config(grid[0] / 2), 0)]


def test_entrants_within_a_point_of_autolr_get_five_seeds():
    name = f"space{CHEAP}-0"
    grid = draw(CHEAP, 0).lr_grid()
    runs = [fake(name, AUTOLR, s, v) for s, v in enumerate((0.80, 0.81))]
    runs += [fake(name, "dog@1", s, 0.805) for s in range(2)] + [fake(name, "prodigy_sf@1", s, 0.6) for s in range(2)]
    runs += [fake(name, grid_config(lr), s, 0.5) for lr in grid for s in range(2)]
    assert close_jobs(runs, [name]) == [(name, c, s) for c in (AUTOLR, "dog@1") for s in range(5)]
    far = [r if r["config"] != "dog@1" else {**r, "final": 0.79} for r in runs]  # 1.5 points behind: not close
    assert close_jobs(far, [name]) == []


def test_the_report_counts_wins_and_runs_below_the_trivial_predictor():
    grid = [grid_config(lr) for lr in (1e-3, 2e-3)]
    runs = [fake("a", AUTOLR, 0, 0.80, found_lr=0.01, restores=0), fake("a", AUTOLR, 1, 0.82),
            fake("a", "dog@1", 0, 0.70), fake("a", "dog@1", 1, 0.70), fake("a", grid[0], 0, 0.85),
            fake("a", grid[1], 0, 0.60),
            fake("b", AUTOLR, 0, 0.20), fake("b", AUTOLR, 1, None), fake("b", "dog@1", 0, 0.6),
            fake("b", "dog@1", 1, 0.6), fake("b", grid[0], 0, 0.5)]  # fmt: skip
    data = {"workloads": {"a": {"about": "A", "metric": "accuracy", "trivial": 0.3},
                          "b": {"about": "B", "metric": "accuracy", "trivial": 0.3}}, "runs": runs}  # fmt: skip
    md = report(data, "T")
    assert "first among single-run methods**: 1 of 2 workloads (50%" in md
    assert "at or above tuned one-cycle** (mean of seeds): 0 of 2 (0%" in md
    assert "below the trivial predictor**: 2 of 4" in md  # b: one seed at 0.20, one diverged
    assert "| `dog@1` | DoG, lr 1, at its polynomial-decay average | 1 of 2 |" in md
    assert (
        "| a | A | accuracy | 0.3000 | 0.8100 |" in md
        and "0.8500 (0.001, 2 points, at the grid's edge) | -4.00 pt" in md
    )
    assert compact({**runs[0], "lrs": [1] * 100, "events": [{"event": "search done", "lr": 0.01}]})["found_lr"] == 0.01


def test_dog_is_validated_at_its_average_and_trains_on_from_its_own_weights():
    torch.manual_seed(0)
    cb = AveragedEvalCB()
    learn = Learner(tiny_model(), tiny_dls(), lr=1.0, cbs=[MetricsCB(), cb],
                    opt_func=opt_func_for(parse_config("dog@1"), 8))  # fmt: skip
    learn.fit(2)
    average = cb.averager.av_model.state_dict()
    assert all(torch.equal(v, average[k]) for k, v in learn.model.state_dict().items())
    assert not all(torch.equal(v, cb.live[k]) for k, v in average.items())  # the live weights differ, kept aside


@pytest.mark.parametrize("config", [AUTOLR, *SINGLE_RUN, "onecycle@0.02"])
def test_every_entrant_of_the_field_trains_a_sampled_workload(config):
    w = get_workload(f"space{CHEAP}-0")
    record = run_one(w, parse_config(config), seed=0)
    assert not record["diverged"], record["stopped"]
    assert record["final"] > w.baseline(w.loaders(0)) + 0.2, record["final"]  # wine: chance is about 0.4


def test_lrlab_bench_sample_runs_the_field_and_writes_the_report(tmp_path):
    out = tmp_path / "space"
    cmd = [sys.executable, "-m", "lrlab", "bench", "--sample", "1", "--space-seed", str(CHEAP), "--seeds", "1",
           "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((out / "space.json").read_text())
    assert data["space_seed"] == CHEAP and len(data["workloads"]) == 1
    n_runs = len(data["runs"])
    assert n_runs >= 1 + len(SINGLE_RUN) + 7 and all("lrs" not in r for r in data["runs"])
    md = (out / "space.md").read_text()
    assert f"space{CHEAP}-0" in md and "goal 90%" in md
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a rerun skips what is done
    counts = re.findall(r"(\d+) runs in this shard, (\d+) already done", again.stdout)
    assert again.returncode == 0 and counts and all(total == done for total, done in counts), again.stdout
    bad = subprocess.run([*cmd, "--configs", "autolr@1e-3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "leave out --workloads and --configs" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_algoperfs_schedule_warms_up_over_two_percent_then_cosines_to_zero():
    from lrlab.apps.peers import ALGOPERF, warmup_cosine

    factor = warmup_cosine(1000, ALGOPERF["warmup"])
    assert [factor(s) for s in (0, 9, 19)] == [pytest.approx(1 / 20), pytest.approx(0.5), 1.0]
    assert factor(20 + 490) == pytest.approx(0.5) and factor(999) == pytest.approx(0.0, abs=1e-4)
    opt = opt_func_for(parse_config("algoperf@0.001749"), 1000)([torch.nn.Parameter(torch.zeros(2))], lr=ALGOPERF["lr"])
    assert type(opt) is torch.optim.NAdam and opt.defaults["decoupled_weight_decay"] is True
    assert opt.defaults["betas"] == pytest.approx((0.93266, 0.99552), abs=1e-5)


def test_the_committed_space_report_is_rebuilt_from_its_committed_runs():
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "docs" / "results"
    data = json.loads((results / "space-seed3.json").read_text())
    assert len(data["workloads"]) >= 40 and data["space_seed"] == 3
    assert (results / "space.md").read_text() == report(data, "AutoLR on sampled workloads", data["notes"])
