"""The lab's data: the workbook's 29 rows, any CSV of x,y, or a fresh seeded draw of y = a*x + b."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable
from pathlib import Path

# The 29 (x, y) rows pasted as values on every optimizer sheet of the lesson's graddesc workbook (y = 2x + 30).
WORKBOOK_ROWS: tuple[tuple[float, float], ...] = (
    (14, 58), (86, 202), (28, 86), (51, 132), (28, 86), (29, 88), (72, 174), (62, 154), (84, 198), (15, 60),
    (42, 114), (62, 154), (47, 124), (35, 100), (9, 48), (38, 106), (44, 118), (99, 228), (13, 56), (21, 72),
    (28, 86), (20, 70), (8, 46), (64, 158), (99, 228), (70, 170), (27, 84), (17, 64), (8, 46),
)  # fmt: skip


MAX_CSV_CHARS = 16 * 2**20  # about a million rows: more than any lab sheet runs in reasonable time


def _shown(record: list[str]) -> str:
    """A CSV line as an error quotes it: cut short, so a runaway line stays one readable line."""
    text = ",".join(record)
    return repr(text if len(text) <= 60 else text[:60] + "...")


def load_csv(path: str | Path) -> list[tuple[float, float]]:
    """Read x,y rows (a header line is allowed; Excel's UTF-8 byte-order mark too); a bad line is named in the
    error, and so is a line with more than two values (a third column is never silently dropped).

    Raises:
        ValueError: an unreadable file or line, or no rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read(MAX_CSV_CHARS + 1)  # bounded: a device such as /dev/zero never ends
    except OSError as e:
        raise ValueError(f"cannot read the CSV {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"cannot read the CSV {path}: not UTF-8 text (byte {e.start})") from None
    if len(text) > MAX_CSV_CHARS:
        raise ValueError(f"the CSV {path} is over {MAX_CSV_CHARS // 2**20} MB: the lab reads at most that much")
    return parse_csv(text.splitlines(), str(path))


def parse_csv(lines: Iterable[str], source: str) -> list[tuple[float, float]]:
    """load_csv's rules on lines of text (an upload, say); `source` names it in the errors.

    Raises:
        ValueError: a bad line, or no rows."""
    rows: list[tuple[float, float]] = []
    reader = csv.reader(lines)
    try:
        for line_no, record in enumerate(reader, start=1):
            _parse_record(record, line_no, source, rows)
    except csv.Error as e:  # a field over csv's size limit, a stray quote...
        raise ValueError(f"{source}, line {reader.line_num}: not CSV ({e})") from None
    if not rows:
        raise ValueError(f"{source} holds no x,y rows")
    return rows


def _parse_record(record: list[str], line_no: int, source: str, rows: list[tuple[float, float]]) -> None:
    """Add one CSV line's (x, y) to rows (skipping blank lines and a header), or raise naming the line."""
    if not record or all(not cell.strip() for cell in record):
        return
    if line_no == 1 and [c.strip().lower().lstrip("\ufeff") for c in record[:2]] == ["x", "y"]:
        return
    if len(record) != 2 or not record[0].strip() or not record[1].strip():
        raise ValueError(f"{source}, line {line_no}: expected two numbers x,y, got {_shown(record)}")
    try:
        x, y = float(record[0]), float(record[1])
    except ValueError:
        raise ValueError(f"{source}, line {line_no}: non-numeric value in {_shown(record)}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{source}, line {line_no}: values must be finite, got {_shown(record)}")
    rows.append((x, y))


def random_rows(n: int = 29, a: float = 2.0, b: float = 30.0, seed: int | None = None) -> list[tuple[float, float]]:
    """The data sheet's draw: x = RANDBETWEEN(1, 100), y = b + x*a, exactly (no noise)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = random.Random(seed)
    return [(float(x), b + x * a) for x in (rng.randint(1, 100) for _ in range(n))]
