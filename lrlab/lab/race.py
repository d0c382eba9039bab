"""Races between sheets: every optimizer from Reset, towards the least-squares line of the data."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lrlab.lab.engine import SHEETS, TEXTBOOK_ONLY, LabError, Sheet


def least_squares(data: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The (a, b) of the straight line y = a*x + b closest to the rows: where every optimizer should end up."""
    n = len(data)
    try:
        mean_x = sum(x for x, _ in data) / n
        mean_y = sum(y for _, y in data) / n
        sxx = sum((x - mean_x) ** 2 for x, _ in data)
        if sxx == 0:
            raise LabError("all rows have the same x: no single line fits them best")
        a = sum((x - mean_x) * (y - mean_y) for x, y in data) / sxx
        b = mean_y - a * mean_x
    except OverflowError:
        a = b = math.inf
    if not (math.isfinite(a) and math.isfinite(b)):
        raise LabError("the data's values are too large for the best line (their squares overflow): scale them down")
    return a, b


def epochs_to_reach(
    sheet: Sheet,
    a_tol: float = 0.01,
    b_tol: float = 0.1,
    cap: int = 10_000,
    true_a: float | None = None,
    true_b: float | None = None,
) -> int | None:
    """Run (from the sheet's current state) until |a-a*| < a_tol and |b-b*| < b_tol, where (a*, b*) is the
    least-squares line of the sheet's data unless given (2, 30 for the workbook's rows); None past the cap."""
    if true_a is None or true_b is None:
        fit_a, fit_b = least_squares(sheet.data)
        true_a = fit_a if true_a is None else true_a
        true_b = fit_b if true_b is None else true_b
    for _ in range(cap):
        if abs(sheet.a - true_a) < a_tol and abs(sheet.b - true_b) < b_tol:
            return sheet.epoch
        try:
            sheet.run(1)
        except LabError:
            return None
    return sheet.epoch if abs(sheet.a - true_a) < a_tol and abs(sheet.b - true_b) < b_tol else None


def compare(names: Sequence[str] = SHEETS, cap: int = 10_000, data=None, textbook: bool = False) -> list[dict]:
    """Every sheet from Reset: epochs needed to come within 0.01 of the best line's a and 0.1 of its b (the
    least-squares fit of the data: a=2, b=30 for the workbook's rows), None past the cap. The sheets since
    Adam run in textbook mode whatever `textbook` says (they have no workbook); each result names its mode."""
    results = []
    for name in names:
        sheet = Sheet(name, data=data, textbook=textbook or name in TEXTBOOK_ONLY)
        target_a, target_b = least_squares(sheet.data)
        n = epochs_to_reach(sheet, cap=cap, true_a=target_a, true_b=target_b)
        results.append(
            {
                "sheet": name,
                "epochs": n,
                "a": sheet.a,
                "b": sheet.b,
                "lr": sheet.lr,
                "history": sheet.history,
                "target": (target_a, target_b),
                "textbook": sheet.textbook,
            }  # fmt: skip
        )
    return results


def race(names: Sequence[str] = SHEETS, epochs: int = 50, data=None, textbook: bool = False) -> list[dict]:
    """Every sheet from Reset for the same number of epochs (the sheets since Adam in textbook mode). A sheet
    that overflows stops there, keeps its last finite state and carries the error in "stopped"."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 100_000:
        raise LabError(f"the race's epochs must be an integer from 1 to 100000, got {epochs!r}")
    results = []
    for name in names:
        sheet = Sheet(name, data=data, textbook=textbook or name in TEXTBOOK_ONLY)
        stopped = None
        try:
            sheet.run(epochs)
        except LabError as e:
            stopped = str(e)
        results.append(
            {
                "sheet": name,
                "textbook": sheet.textbook,
                "history": sheet.history,
                "a": sheet.a,
                "b": sheet.b,
                "lr": sheet.lr,
                "stopped": stopped,
            }  # fmt: skip
        )
    return results
