"""Training: the Learner (``learner``), its callbacks (``callbacks``), exact checkpoints (``checkpoint``),
torch.distributed's primitives (``distributed``) and run folders (``runs``).

The Learner knows no particular callback and no shell; callbacks know the Learner; nothing here imports the
apps or the command line. The documented imports are ``from lrlab import Learner, MetricsCB, ...``.
"""
