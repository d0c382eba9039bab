"""What each sheet's update does, in a few lines: shown beside the sheet by `lrlab lab` and the browser lab."""

from __future__ import annotations

NOTES: dict[str, str] = {
    "basic": (
        "Plain SGD, one row at a time: each parameter moves against its gradient times lr. The sheet also "
        "estimates each derivative by bumping the parameter 0.01 (finite differences) beside the exact one."
    ),
    "momentum": (
        "SGD on a moving average of the gradients, m = beta*m + (1-beta)*g: noise from row to row averages "
        "out and steps build up along directions the gradients agree on."
    ),
    "rmsprop": (
        "Each gradient divided by the root of a moving average of its squares: the slope a, whose gradient "
        "is about x times larger, gets a step of the same size as the intercept b."
    ),
    "adam": (
        "RMSprop of the momentum: the moving average of gradients divided by the root of the moving "
        "average of their squares (the workbook's has no eps and no bias correction)."
    ),
    "adam_ann": (
        "Adam with the lesson's automatic annealer: after each epoch, when the gradient measure "
        "sqrt(sq_b)+sqrt(sq_a) rises above twice its best, the lr is divided by 4."
    ),
    "nadam": (
        "Adam with Nesterov momentum (Dozat 2016): the step already includes the next step's share of the "
        "momentum, so it looks ahead; torch's momentum schedule warms beta1 up over the first steps."
    ),
    "radam": (
        "Rectified Adam (Liu et al. 2020): while the average of squares rests on too few gradients to trust "
        "(the first 4-5 rows here), it takes plain momentum-SGD steps, then Adam steps scaled by a "
        "rectification term that grows to 1. Its lr must therefore suit SGD at first."
    ),
    "lion": (
        "Lion (Chen et al. 2023), found by program search: the sign of a blend of momentum and gradient, so "
        "every parameter moves by exactly lr each row; near the optimum it oscillates by about lr, so a "
        "constant lr can only get within about lr of the line."
    ),
    "ademamix": (
        "AdEMAMix (Pagliardini et al. 2024): Adam's step plus 5 times a second, very slow moving average of the "
        "gradients (beta3 0.9999, a memory of ~10,000 rows), over the same root of squares: old gradients keep "
        "pushing long after Adam's momentum has forgotten them."
    ),
    "muon": (
        "Muon (Jordan et al. 2024): momentum whose update matrix is orthogonalized by a Newton-Schulz iteration. "
        "Here (b, a) is the single row of a layer [1, x] -> y, and orthogonalizing one row only normalizes it: "
        "every row moves (b, a) by the same distance (about 0.7 lr) along the momentum."
    ),
    "schedulefree_adamw": (
        "Schedule-Free AdamW (Defazio et al. 2024): AdamW-normalized steps on a sequence z, a running average x "
        "of the z's, and gradients taken at y = 0.9 x + 0.1 z (b and a here). Averaging does what annealing "
        "does, with a constant lr and no schedule."
    ),
}
