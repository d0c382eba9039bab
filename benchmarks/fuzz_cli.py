"""The CLI fuzz test (tests/test_cli_fuzz.py) with a longer search than `make test` gives it (150 examples).

    .venv/bin/python benchmarks/fuzz_cli.py [EXAMPLES]     # default 3000: about two minutes here

It prints the number of examples run and how they exited; any traceback or multi-line refusal fails it with
the smallest command line that shows it (keep that one as a plain test in tests/test_faults_cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "3000"
    env = {**os.environ, "LRLAB_FUZZ_EXAMPLES": examples}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_fuzz.py"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
