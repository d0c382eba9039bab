"""The lab's sheets for the optimizers since Adam: each is torch's optimizer (or the paper's rule) run on the
workbook's rows one row at a time, in textbook mode."""

from __future__ import annotations

import math

import pytest
import torch

from lrlab.lab import SHEETS, LabError, Sheet, compare
from lrlab.lab.data import WORKBOOK_ROWS
from lrlab.lab.engine import TEXTBOOK_ONLY, WORKBOOK_SHEETS
from lrlab.lab.notes import NOTES


def torch_online_fit(opt_cls, epochs: int, **hypers) -> tuple[float, float, list[float]]:
    """Online least squares on the workbook's rows with a torch optimizer in float64: (b, a, epoch rmses)."""
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = opt_cls([b, a], **hypers)
    rmses = []
    for _ in range(epochs):
        sse = 0.0
        for x, y in WORKBOOK_ROWS:
            opt.zero_grad()
            loss = (y - (a * x + b)) ** 2
            loss.sum().backward()
            opt.step()
            sse += loss.item()
        rmses.append(math.sqrt(sse / len(WORKBOOK_ROWS)))
    return b.item(), a.item(), rmses


@pytest.mark.parametrize(
    "name, opt_cls, extra",
    [("nadam", torch.optim.NAdam, {}), ("radam", torch.optim.RAdam, {})],
)
def test_nadam_and_radam_sheets_are_torchs_optimizers_row_by_row(name, opt_cls, extra):
    sheet = Sheet(name).run(3)
    lr = sheet.lr
    b, a, _ = torch_online_fit(opt_cls, 4, lr=lr, betas=(sheet.beta1, sheet.beta2), eps=1e-8, **extra)
    # The sheet's Run carries 3 epochs and displays the 4th: its last row's new b, a are torch's after 4 epochs.
    last = sheet.rows[-1]
    assert last["new_b"] == pytest.approx(b, rel=1e-9) and last["new_a"] == pytest.approx(a, rel=1e-9)
    assert sheet.state["step"] == 3 * len(WORKBOOK_ROWS)


def test_ademamix_sheet_is_lrlabs_optimizer_row_by_row():
    from lrlab.optim.since_adam import AdEMAMix

    sheet = Sheet("ademamix").run(2)
    b, a, _ = torch_online_fit(AdEMAMix, 3, lr=sheet.lr, betas=(sheet.beta1, sheet.beta2), beta3=0.9999, alpha=5.0)
    assert (sheet.rows[-1]["new_b"], sheet.rows[-1]["new_a"]) == pytest.approx((b, a), rel=1e-9)


def test_schedule_free_sheet_is_the_schedulefree_package_row_by_row():
    import schedulefree

    sheet = Sheet("schedulefree_adamw").run(2)

    def make(params, **hp):
        opt = schedulefree.AdamWScheduleFree(params, **hp)
        opt.train()
        return opt

    b, a, _ = torch_online_fit(make, 3, lr=sheet.lr, betas=(sheet.beta1, sheet.beta2), eps=1e-8)
    assert (sheet.rows[-1]["new_b"], sheet.rows[-1]["new_a"]) == pytest.approx((b, a), rel=1e-9)
    assert sheet.rows[-1]["z_b"] != sheet.rows[-1]["new_b"]  # z runs ahead of y


def test_muon_sheet_moves_by_the_same_distance_along_the_momentum_every_row():
    sheet = Sheet("muon")
    lengths = {round(math.hypot(r["new_b"] - r["b"], r["new_a"] - r["a"]) / sheet.lr, 12) for r in sheet.rows}
    assert len(lengths) == 1 and 0.6 < lengths.pop() < 0.8
    # torch's Muon on the 1x2 weight [[b, a]]: the first row's step agrees to bfloat16 precision (its five
    # Newton-Schulz steps run in bfloat16, 8 bits of mantissa: a few percent of the step)
    weight = torch.tensor([[1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    x, y = WORKBOOK_ROWS[0]
    opt = torch.optim.Muon([weight], lr=sheet.lr, weight_decay=0.0, momentum=sheet.beta1)
    ((y - weight @ torch.tensor([1.0, x], dtype=torch.float64)) ** 2).sum().backward()
    opt.step()
    first = sheet.rows[0]
    step = [w - 1.0 for w in weight[0].tolist()]
    assert step == pytest.approx([first["new_b"] - 1.0, first["new_a"] - 1.0], rel=3e-2)


def test_lion_sheet_moves_every_parameter_by_exactly_lr_per_row():
    sheet = Sheet("lion")
    for row in sheet.rows:
        assert abs(row["new_b"] - row["b"]) == pytest.approx(sheet.lr, rel=1e-12)
        assert abs(row["new_a"] - row["a"]) == pytest.approx(sheet.lr, rel=1e-12)
    # by hand for the first row: both gradients negative, so both parameters rise by lr; m = (1-beta2) g
    first = sheet.rows[0]
    assert (first["new_b"], first["new_a"]) == pytest.approx((1.01, 1.01))
    assert (first["mom_b"], first["mom_a"]) == pytest.approx((0.01 * -86, 0.01 * -1204))


def test_newer_sheets_race_in_compare_with_their_defaults():
    results = {r["sheet"]: r for r in compare(cap=4000)}
    assert set(results) == set(SHEETS)
    assert all(results[n]["textbook"] for n in TEXTBOOK_ONLY)
    assert not any(results[n]["textbook"] for n in WORKBOOK_SHEETS)
    # measured on the workbook's rows with each sheet's Reset lr
    assert {n: results[n]["epochs"] for n in TEXTBOOK_ONLY} == {
        "nadam": 53, "radam": 1813, "lion": 135, "ademamix": 239, "muon": 767, "schedulefree_adamw": 24}  # fmt: skip


def test_radam_at_adams_lr_diverges_in_its_sgd_warm_up():
    # Its first rows are momentum-SGD steps: at the Adam sheet's lr 1 they throw a and b far away.
    sheet = Sheet("radam", lr=1.0).run(1)
    assert abs(sheet.a) > 1e3


def test_newer_sheets_have_no_workbook_mode_and_every_sheet_a_note():
    with pytest.raises(LabError, match="nadam has no workbook sheet.*textbook mode"):
        Sheet("nadam", textbook=False)
    assert set(NOTES) == set(SHEETS) and all(len(NOTES[n]) > 80 for n in SHEETS)


def test_cli_runs_a_newer_sheet_with_its_note(tmp_path, capsys):
    from lrlab.cli.main import main

    assert main(["lab", "radam", "--runs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("radam: Rectified Adam") and "radam (textbook)" in out
    assert (tmp_path / "rmse-radam.png").exists()
