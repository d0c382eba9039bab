"""The comparison grid (a short real one), its report, learning-rate-free baselines and Schedule-Free's callback."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from lrlab.apps.compare import CONFIGS, PRESETS, Config, get_configs, run_grid, summarize, write_report
from lrlab.cli.main import main
from lrlab.data import get_dls
from lrlab.models import lesson_cnn
from lrlab.optim import SGD
from lrlab.optim.registry import lrfree_opt_func
from lrlab.train.callbacks import MetricsCB
from lrlab.train.callbacks.lrfree import ScheduleFreeCB
from lrlab.train.learner import Callback, Learner


@pytest.fixture(scope="module")
def small_dls(data_dir):
    return get_dls(256, data_dir=data_dir, n_train=3072, n_valid=1000)


def make(small_dls):
    def make_dls(seed):
        small_dls.train.seed, small_dls.train.epoch = seed, 0
        return small_dls

    return make_dls


def test_short_grid_runs_every_preset_config_and_reports_divergence(small_dls, tmp_path):
    boom = Config("boom", "SGD at lr 1e6 (diverges)", opt_func=partial(SGD), lr=1e6)
    configs = [*get_configs(PRESETS["lesson"]), CONFIGS["autolr"], boom, CONFIGS["dadapt"]]
    lines = []
    with pytest.warns(UserWarning, match="AutoLR: a run of 12 steps is too short to search an lr"):
        results = run_grid(configs, [0], 1, make(small_dls), lesson_cnn, log=lines.append)
    assert len(results) == len(configs) and len(lines) == len(configs)
    by_name = {r["config"]: r for r in results}
    assert by_name["boom"]["diverged"] and by_name["boom"]["test_acc"] is None
    for name in PRESETS["lesson"]:
        assert not by_name[name]["diverged"] and by_name[name]["test_acc"] > 0.3, name
    assert not by_name["autolr"]["diverged"]  # 12 steps: too few to search, and it says so (above)
    assert by_name["onecycle"]["lr"] != "find" and 1e-4 < by_name["onecycle"]["lr"] < 1
    assert "diverged" in lines[-2]
    report = write_report(results, tmp_path, "test grid", "short")
    text = report.read_text()
    assert "| boom |" in text and "diverged" in text and "report-valid_acc.png" in text
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "<table>" in html
    saved = json.loads((tmp_path / "report-results.json").read_text())
    assert {r["config"] for r in saved} == set(by_name)


def test_summary_statistics():
    results = [
        {"config": "constant", "seed": s, "lr": 0.01, "diverged": False, "test_acc": a, "train_loss": 1.0,
         "valid_loss": 1.0, "wall": 1.0}
        for s, a in ((0, 0.8), (1, 0.9))
    ]  # fmt: skip
    row = summarize(results)[0]
    assert row["acc_mean"] == pytest.approx(0.85) and row["acc_std"] == pytest.approx(0.0707, abs=1e-4)


def test_unknown_config_lists_valid_ones(capsys):
    with pytest.raises(ValueError, match="unknown config 'x'; choose from constant, cosine"):
        get_configs(["x"])
    assert main(["compare", "--configs", "constant,x"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_cli_compare(data_dir, tmp_path, capsys):
    args = ["compare", "--configs", "constant,autoanneal", "--seeds", "1", "--epochs", "1", "--n-train", "2048"]
    assert main([*args, "--n-valid", "500", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| autoanneal |" in out and (tmp_path / "report.html").exists()


@pytest.mark.slow
def test_schedule_free_evaluates_at_averaged_weights_with_recomputed_bn(data_dir):
    """The same Schedule-Free run three ways: with ScheduleFreeCB (averaged weights, BatchNorm statistics
    recomputed for them), without the BN recompute, and with the eval switch forgotten (the training
    sequence's weights are evaluated)."""
    dls = get_dls(256, data_dir=data_dir, n_train=10240, n_valid=1000)

    def run(cbs):
        torch.manual_seed(0)
        dls.train.epoch = 0
        metrics = MetricsCB()
        opt_func = lrfree_opt_func("schedulefree", warmup_steps=5)
        learn = Learner(lesson_cnn(), dls, lr=5e-2, cbs=[metrics, *cbs], opt_func=opt_func).fit(2)
        return learn, metrics.history[-1]["valid_loss"]

    learn, with_cb = run([ScheduleFreeCB()])
    assert not learn.opt.param_groups[0]["train_mode"]  # left at the averaged weights
    _, stale_bn = run([ScheduleFreeCB(recompute_bn=False)])

    class TrainModeOnly(Callback):  # what a user writes who forgets the eval switch
        def before_fit(self, learn):
            learn.opt.train()

    _, forgot = run([TrainModeOnly()])
    assert with_cb < forgot - 5e-3, (with_cb, stale_bn, forgot)
    assert abs(with_cb - stale_bn) > 1e-4, (with_cb, stale_bn, forgot)


def test_lrfree_opt_func_errors():
    with pytest.raises(ValueError, match="unknown learning-rate-free optimizer 'adam'"):
        lrfree_opt_func("adam")
    opt = lrfree_opt_func("prodigy")([torch.zeros(2, requires_grad=True)], 1.0)
    assert type(opt).__name__ == "Prodigy"
