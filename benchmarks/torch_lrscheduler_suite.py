"""Run PyTorch's own lr_scheduler test suite with lrlab's SGD and Adam in place of torch's.

The suite is pytorch/pytorch's `test/optim/test_lrscheduler.py` (not shipped in the wheel, and not copied
here). Fetch the one matching your torch, then give its path:

    git clone --depth 1 --branch v2.13.0 --filter=blob:none --sparse https://github.com/pytorch/pytorch
    (cd pytorch && git sparse-checkout set test/optim)
    .venv/bin/python benchmarks/torch_lrscheduler_suite.py pytorch/test/optim/test_lrscheduler.py

It runs the suite twice in this process, with torch's optimizers and with lrlab's (the module's
`from torch.optim import Adam, Rprop, SGD` picks up whatever torch.optim holds when it is imported), and
prints each outcome. A test that fails only with lrlab's is either a bug or one of DELIBERATE, whose reason
is printed; anything else makes the exit status 1. Needs pytest and expecttest (the dev extra).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest
import torch

import lrlab.optim

# tests that fail with lrlab's optimizers by design, and why (see the README's "torch's Optimizer contract")
DELIBERATE = {
    "momentum": (
        "lrlab's SGD has no `momentum` key (plain SGD, as the lesson writes it; `lrlab.optim.Momentum` is SGD "
        "with momentum), so CyclicLR/OneCycleLR with cycle_momentum=True refuse it; torch's SGD accepts the "
        "cycle and silently trains with momentum 0.85-0.95"
    ),
}


def deliberate_reason(nodeid: str, message: str) -> str | None:
    """The DELIBERATE key a failure belongs to, judged from the error it raised."""
    if "momentum" in message and ("cycle_momentum" in message or message.startswith("KeyError: 'momentum")):
        return "momentum"
    return None


class Outcomes:
    """A pytest plugin that keeps each test's outcome and, for failures, the last line of the error."""

    def __init__(self) -> None:
        self.results: dict[str, tuple[str, str]] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or report.outcome != "passed":
            message = ""
            if report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                message = (crash.message if crash else str(report.longrepr)).strip().splitlines()[0][:300]
            if report.nodeid not in self.results or report.outcome != "passed":
                self.results[report.nodeid] = (report.outcome, message)


def run_suite(path: Path, use_lrlab: bool) -> dict[str, tuple[str, str]]:
    saved = torch.optim.SGD, torch.optim.Adam
    if use_lrlab:
        torch.optim.SGD, torch.optim.Adam = lrlab.optim.SGD, lrlab.optim.Adam
    sys.modules.pop(path.stem, None)  # imported afresh, so it binds the optimizers of this run
    importlib.invalidate_caches()
    outcomes = Outcomes()
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(path)], plugins=[outcomes])
    finally:
        torch.optim.SGD, torch.optim.Adam = saved
    return outcomes.results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="path to pytorch's test/optim/test_lrscheduler.py")
    args = parser.parse_args(argv)
    if not args.suite.is_file():
        parser.error(f"no such file: {args.suite} (see this script's docstring for how to fetch it)")
    torch_results = run_suite(args.suite, use_lrlab=False)
    lrlab_results = run_suite(args.suite, use_lrlab=True)
    passed = [n for n, (o, _) in lrlab_results.items() if o == "passed"]
    failed = {n: m for n, (o, m) in lrlab_results.items() if o != "passed"}
    by_reason: dict[str, list[str]] = {}
    for nodeid, message in failed.items():
        by_reason.setdefault(deliberate_reason(nodeid, message) or "unexplained", []).append(nodeid)
    torch_passed = sum(o == "passed" for o, _ in torch_results.values())
    print(f"\ntorch {torch.__version__}: {torch_passed}/{len(torch_results)} pass with torch's SGD and Adam")
    print(f"with lrlab's SGD and Adam: {len(passed)} pass, {len(failed)} fail")
    for reason, nodeids in sorted(by_reason.items()):
        print(f"\n{len(nodeids)} fail: {DELIBERATE.get(reason, 'UNEXPLAINED: a bug to fix')}")
        for nodeid in sorted(nodeids):
            print(f"  {nodeid.split('::')[-1]}: {failed[nodeid]}")
    return 1 if "unexplained" in by_reason else 0


if __name__ == "__main__":
    raise SystemExit(main())
