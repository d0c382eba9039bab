"""The experiments the command line runs: ``fit`` (a run folder from options), ``compare`` (a grid of lr
strategies on the lesson CNN), ``bench`` and ``bench_report`` (the workload suite and its report),
``speedrun`` (the best model a time budget buys). They use everything below; only ``lrlab.cli`` uses them."""
