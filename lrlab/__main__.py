from lrlab.cli import run

raise SystemExit(run())
