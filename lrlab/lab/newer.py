"""Sheets for the optimizers since Adam, on the lab's y = a*x + b rows. There is no workbook for them, so they
exist in textbook mode only: state from zero, eps 1e-8, true RMSE. Each row applies lrlab's own rule
(lrlab.optim.since_adam) to the intercept b and the slope a, exactly as the Adam sheet applies adam_rule.

A row function takes (x, y, b, a, state, step, lr, beta1, beta2) and returns (err^2, b', a', state', step');
the state is (mom_b, mom_a, sq_b, sq_a) as on the other sheets, then what a sheet needs more (EXTRA_STATE names
the displayed ones): NAdam's running product of its momentum schedule, AdEMAMix's slow EMA, Schedule-Free's z.
"""

from __future__ import annotations

from lrlab.optim.muon import orthogonalize_row
from lrlab.optim.schedule_free import schedule_free_adamw_rule
from lrlab.optim.since_adam import ademamix_rule, lion_rule, nadam_rule, radam_rule

EPS = 1e-8


def _gradients(x: float, y: float, b: float, a: float) -> tuple[float, float, float]:
    """(err^2, d err^2/db, d err^2/da) of one row."""
    pred = b + a * x
    db = 2 * (pred - y)
    return (y - pred) * (y - pred), db, db * x


def nadam_row(x, y, b, a, s, step, lr, beta1, beta2):
    err2, db, da = _gradients(x, y, b, a)
    step += 1
    hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=EPS)
    b2, mb, sb, mu_product = nadam_rule(b, db, s[0], s[2], s[4], step, **hp)
    a2, ma, sa, _ = nadam_rule(a, da, s[1], s[3], s[4], step, **hp)
    return err2, b2, a2, (mb, ma, sb, sa, mu_product), step


def radam_row(x, y, b, a, s, step, lr, beta1, beta2):
    err2, db, da = _gradients(x, y, b, a)
    step += 1
    hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=EPS)
    b2, mb, sb = radam_rule(b, db, s[0], s[2], step, **hp)
    a2, ma, sa = radam_rule(a, da, s[1], s[3], step, **hp)
    return err2, b2, a2, (mb, ma, sb, sa), step


def lion_row(x, y, b, a, s, step, lr, beta1, beta2):
    err2, db, da = _gradients(x, y, b, a)
    b2, mb = lion_rule(b, db, s[0], lr=lr, beta1=beta1, beta2=beta2)
    a2, ma = lion_rule(a, da, s[1], lr=lr, beta1=beta1, beta2=beta2)
    return err2, b2, a2, (mb, ma, 0.0, 0.0), step + 1


ADEMAMIX_BETA3, ADEMAMIX_ALPHA = 0.9999, 5.0  # the paper's; no warm-up on the sheet


def ademamix_row(x, y, b, a, s, step, lr, beta1, beta2):
    err2, db, da = _gradients(x, y, b, a)
    step += 1
    hp = dict(lr=lr, beta1=beta1, beta2=beta2, beta3=ADEMAMIX_BETA3, alpha=ADEMAMIX_ALPHA, eps=EPS)
    b2, mb, slow_b, sb = ademamix_rule(b, db, s[0], s[4], s[2], step, **hp)
    a2, ma, slow_a, sa = ademamix_rule(a, da, s[1], s[5], s[3], step, **hp)
    return err2, b2, a2, (mb, ma, sb, sa, slow_b, slow_a), step


def muon_row(x, y, b, a, s, step, lr, beta1, beta2):
    """(b, a) is the one row of a layer [1, x] -> y: Muon's Nesterov momentum, orthogonalized as that row."""
    err2, db, da = _gradients(x, y, b, a)
    mb, ma = s[0] + (1 - beta1) * (db - s[0]), s[1] + (1 - beta1) * (da - s[1])
    ub, ua = orthogonalize_row([db + beta1 * (mb - db), da + beta1 * (ma - da)])
    return err2, b - lr * ub, a - lr * ua, (mb, ma, 0.0, 0.0), step + 1  # lr scale sqrt(max(1, 1/2)) = 1


def schedule_free_row(x, y, b, a, s, step, lr, beta1, beta2):
    """b, a hold y (where the gradient is taken); the average x uses equal weights (a constant lr's)."""
    err2, db, da = _gradients(x, y, b, a)
    step += 1
    hp = dict(lr=lr, beta1=beta1, beta2=beta2, eps=EPS, average_weight=1 / step)
    b2, zb, sb = schedule_free_adamw_rule(b, db, s[4], s[2], step, **hp)
    a2, za, sa = schedule_free_adamw_rule(a, da, s[5], s[3], step, **hp)
    return err2, b2, a2, (0.0, 0.0, sb, sa, zb, za), step


ROWS = {"nadam": nadam_row, "radam": radam_row, "lion": lion_row, "ademamix": ademamix_row, "muon": muon_row,
        "schedulefree_adamw": schedule_free_row}  # fmt: skip
HAS_MOM = {"nadam", "radam", "lion", "ademamix", "muon"}
HAS_SQ = {"nadam", "radam", "ademamix", "schedulefree_adamw"}
EXTRA_STATE = {"ademamix": ("slow_b", "slow_a"), "schedulefree_adamw": ("z_b", "z_a")}
HAS_STEP = {"nadam", "radam", "ademamix", "schedulefree_adamw"}
# lr, beta1, beta2 after Reset: the betas of the Adam sheet (Lion: its paper's), the lr the best of a grid on the
# workbook's rows (epochs to a within 0.01 and b within 0.1 of the line, tests/test_lab_newer.py). RAdam's first
# steps are momentum SGD until its variance estimate is trusted, so its lr must suit SGD on gradients of ~1e4;
# Lion moves every coordinate by exactly lr per row, so its lr is a step length in the units of b and a.
DEFAULTS = {
    "nadam": {"lr": 0.1, "beta1": 0.9, "beta2": 0.9},
    "radam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.9},
    "lion": {"lr": 0.01, "beta1": 0.9, "beta2": 0.99},
    "ademamix": {"lr": 0.01, "beta1": 0.9, "beta2": 0.9},
    "muon": {"lr": 0.01, "beta1": 0.95},
    "schedulefree_adamw": {"lr": 0.3, "beta1": 0.9, "beta2": 0.9},
}
ZERO = (0.0, 0.0, 0.0, 0.0)
# z starts at the weights after Reset (a = b = 1)
INITIAL_STATE = {"nadam": (*ZERO, 1.0), "ademamix": (*ZERO, 0.0, 0.0), "schedulefree_adamw": (*ZERO, 1.0, 1.0)}
