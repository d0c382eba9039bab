"""The optimizer lab: the lesson's gradient-descent spreadsheet, as a program and as a workbook."""

from lrlab.lab.engine import SHEETS, LabError, Sheet
from lrlab.lab.race import compare, epochs_to_reach, least_squares, race

__all__ = ["SHEETS", "LabError", "Sheet", "compare", "epochs_to_reach", "least_squares", "race"]
