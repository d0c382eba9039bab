"""The optimizer family: each optimizer is a pure update rule (state in, state out) and a small class that
adapts it to torch.optim.Optimizer, so every torch scheduler drives it.

The documented import is this package: ``from lrlab.optim import Adam``. Its files, one layer each way:

- ``core``: RuleOptimizer (the adapter) and the hyperparameter validation every constructor runs;
- ``classic``: the lesson's four (SGD, Momentum, RMSProp, Adam);
- ``since_adam``, ``muon``, ``schedule_free``: NAdam, RAdam, Lion, AdEMAMix; Muon; Schedule-Free AdamW;
- ``flat``: the flat-buffer implementation behind ``Adam(impl="flat")``;
- ``registry``: optimizers by name (the CLI's ``--opt``), the lesson's recipe, the third-party ones.

Nothing here imports the Learner, the schedules or anything above them.
"""

from lrlab.optim.classic import SGD, Adam, Momentum, RMSProp, adam_rule, momentum_rule, rmsprop_rule, sgd_rule
from lrlab.optim.core import (
    COURSE_KEYWORDS,
    MAX_LR,
    RuleOptimizer,
    _check,
    apply_rule,
    apply_rule_packed,
    as_number,
    check_hypers,
    check_lr,
    group_momentum,
    plain_hypers,
)
from lrlab.optim.flat import FlatAdam
from lrlab.optim.muon import Muon, muon_rule, newton_schulz, orthogonalize_row
from lrlab.optim.registry import (
    COURSE_RULES,
    LESSON_EPS,
    LESSON_RECIPES,
    LRFREE,
    OPTIMIZERS,
    get_opt_func,
    lesson_opt_func,
    lesson_recipe,
    lrfree_opt_func,
)
from lrlab.optim.schedule_free import ScheduleFreeAdamW, schedule_free_adamw_rule
from lrlab.optim.since_adam import (
    AdEMAMix,
    Lion,
    NAdam,
    RAdam,
    ademamix_rule,
    ademamix_warmup,
    lion_rule,
    nadam_rule,
    radam_rule,
)

__all__ = [
    "COURSE_KEYWORDS",
    "COURSE_RULES",
    "LESSON_EPS",
    "LESSON_RECIPES",
    "LRFREE",
    "MAX_LR",
    "OPTIMIZERS",
    "SGD",
    "AdEMAMix",
    "Adam",
    "FlatAdam",
    "Lion",
    "Momentum",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSProp",
    "RuleOptimizer",
    "ScheduleFreeAdamW",
    "_check",
    "adam_rule",
    "ademamix_rule",
    "ademamix_warmup",
    "apply_rule",
    "apply_rule_packed",
    "as_number",
    "check_hypers",
    "check_lr",
    "get_opt_func",
    "group_momentum",
    "lesson_opt_func",
    "lesson_recipe",
    "lion_rule",
    "lrfree_opt_func",
    "momentum_rule",
    "muon_rule",
    "nadam_rule",
    "newton_schulz",
    "orthogonalize_row",
    "plain_hypers",
    "radam_rule",
    "rmsprop_rule",
    "schedule_free_adamw_rule",
    "sgd_rule",
]
