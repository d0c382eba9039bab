"""The lab in a notebook: Reset and Run buttons, a learning-rate box, the RMSE chart and the rows.

The engine does the work; this class only wires ipywidgets to Sheet.reset, Sheet.run and Sheet.lr."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lrlab.lab.engine import LabError, Sheet
from lrlab.lab.report import history_table, plot_rmse, rows_table


class SheetWidget:
    """Buttons and views for one Sheet; the handlers can be called directly (as the tests do)."""

    def __init__(self, sheet: Sheet, epochs: int = 5, folder: str | Path | None = None) -> None:
        import ipywidgets as w

        self.sheet, self.epochs = sheet, epochs
        self.folder = Path(folder or tempfile.mkdtemp(prefix="lrlab-lab-"))
        self.reset_button = w.Button(description="Reset")
        self.run_button = w.Button(description=f"Run ({epochs} epochs)")
        self.lr_box = w.FloatText(value=sheet.lr, description="lr", step=None)
        self.message = w.HTML()
        self.chart, self.table = w.Output(), w.Output()
        self.reset_button.on_click(self.on_reset)
        self.run_button.on_click(self.on_run)
        self.lr_box.observe(self.on_lr, names="value")
        self.box = w.VBox([w.HBox([self.reset_button, self.run_button, self.lr_box]), self.message, self.chart,
                           self.table])  # fmt: skip
        self.refresh()

    def on_reset(self, _button=None) -> None:
        self.sheet.reset()
        self._show_lr()
        self.refresh()

    def on_run(self, _button=None) -> None:
        try:
            self.sheet.run(self.epochs)
            self.message.value = ""
        except LabError as e:  # overflow: the sheet kept its last finite state
            self.message.value = f"<b>{e}</b>"
        self._show_lr()  # the annealer may have changed it
        self.refresh()

    def on_lr(self, change: dict) -> None:
        try:
            self.sheet.lr = change["new"]
            self.message.value = ""
        except LabError as e:
            self.message.value = f"<b>{e}</b>"

    def _show_lr(self) -> None:
        if self.lr_box.value != self.sheet.lr:
            self.lr_box.value = self.sheet.lr

    def refresh(self) -> None:
        """Redraw the chart and the tables in place."""
        from IPython.display import Image, display

        with self.chart:
            self.chart.clear_output(wait=True)
            if self.sheet.history:
                path = self.folder / f"rmse-{self.sheet.name}.png"
                plot_rmse(self.sheet, path)
                display(Image(filename=str(path)))
        with self.table:
            self.table.clear_output(wait=True)
            print(f"a = {self.sheet.a:.6g}, b = {self.sheet.b:.6g}, lr = {self.sheet.lr:g}")
            if self.sheet.history:
                print(history_table(self.sheet, last=10))
            print(rows_table(self.sheet))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)
