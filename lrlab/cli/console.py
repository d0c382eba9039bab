"""The terminal side of the command line: option types that refuse bad values in one line, which options a
command line gave (the standard output a closed pipe cannot stop is lrlab.files.guard_stdout)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def _number(text: str, kind: type, ok: Callable[[float], bool], allowed: str) -> float:
    """Parse an option value as `kind` and check it, or raise argparse's error naming the value."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, lambda v: 0 < v < float("inf"), "a finite number > 0")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, ">= 1")


def seed_number(text: str) -> int:
    """argparse type: a seed, an integer from 0 to 1,000,000."""
    return _number(text, int, lambda v: 0 <= v <= 10**6, "an integer from 0 to 1,000,000")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 (any free one) to 65535."""
    return _number(text, int, lambda v: 0 <= v <= 65535, "a port from 0 (any free one) to 65535")


def hyper_ramp(text: str) -> str:
    """argparse type: NAME=START:END[:linear|cosine] (a HyperScheduler ramp), checked and kept as text (run
    folders save their options as JSON)."""
    from lrlab.schedules.phased import parse_ramp

    try:
        parse_ramp(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1) (label smoothing)."""
    return _number(text, float, lambda v: 0 <= v < 1, "in [0, 1)")


def bounded_int(most: int) -> Callable[[str], int]:
    """argparse type: an integer from 1 to `most`."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {value:,}")
        return value

    return parse


class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong, and where help is) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def given_options(parser: argparse.ArgumentParser, command: str, argv: Sequence[str]) -> list[str]:
    """The options of a subcommand that the command line sets explicitly (even to their default value)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparser = sub.choices[command]
    defaults = {action: action.default for action in subparser._actions}
    for action in defaults:
        action.default = argparse.SUPPRESS
    try:
        return sorted(vars(subparser.parse_args(list(argv)[list(argv).index(command) + 1 :])))
    finally:
        for action, default in defaults.items():
            action.default = default
