"""Sheets for the optimizers since Adam, on the lab's y = a*x + b rows. There is no workbook for them, so they
exist in textbook mode only: state from zero, eps 1e-8, true RMSE. Each row applies lrlab's own rule
(lrlab.optim_since_adam) to the intercept b and the slope a, exactly as the Adam sheet applies adam_rule.

A row function takes (x, y, b, a, state, step, lr, beta1, beta2) and returns (err^2, b', a', state', step');
the state is (mom_b, mom_a, sq_b, sq_a) as on the other sheets, plus NAdam's running product of its momentum
schedule.
"""

from __future__ import annotations

from lrlab.optim_since_adam import lion_rule, nadam_rule, radam_rule

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


ROWS = {"nadam": nadam_row, "radam": radam_row, "lion": lion_row}
# lr, beta1, beta2 after Reset: the betas of the Adam sheet (Lion: its paper's), the lr the best of a grid on the
# workbook's rows (epochs to a within 0.01 and b within 0.1 of the line, tests/test_lab_newer.py). RAdam's first
# steps are momentum SGD until its variance estimate is trusted, so its lr must suit SGD on gradients of ~1e4;
# Lion moves every coordinate by exactly lr per row, so its lr is a step length in the units of b and a.
DEFAULTS = {
    "nadam": {"lr": 0.1, "beta1": 0.9, "beta2": 0.9},
    "radam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.9},
    "lion": {"lr": 0.01, "beta1": 0.9, "beta2": 0.99},
}
INITIAL_STATE = {"nadam": (0.0, 0.0, 0.0, 0.0, 1.0), "radam": (0.0, 0.0, 0.0, 0.0), "lion": (0.0, 0.0, 0.0, 0.0)}
