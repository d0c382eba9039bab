"""`lrlab lab`: the spreadsheet lab from the command line (a sheet, compare, export, serve). Part of the CLI,
the one door that knows every part; kept apart so each file reads top to bottom."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lrlab.cli.console import bounded_int, port_number, positive_float, positive_int

MAX_LAB_EPOCHS = 1_000_000  # the lab runs about 80,000 epochs a second: a few seconds per sheet at most


def cmd_lab(args: argparse.Namespace) -> int:
    from lrlab.lab import SHEETS, Sheet, compare
    from lrlab.lab.report import compare_table, history_table, plot_compare, plot_paths, plot_rmse, rows_table

    out = Path(args.out)
    if args.target != "serve" and (args.port is not None or args.open):
        raise ValueError(f"--port and --open belong to lrlab lab serve, not lrlab lab {args.target}")
    if args.target == "serve":
        return _serve_lab(args)
    if args.file and args.target != "export":
        raise ValueError(f"lrlab lab {args.target} takes no file argument (got {args.file!r}); only export writes one")
    if (args.epochs or 5) * args.runs > MAX_LAB_EPOCHS:
        raise ValueError(f"--runs x --epochs is {(args.epochs or 5) * args.runs:,}; at most {MAX_LAB_EPOCHS:,} epochs")
    if args.target == "export":
        from lrlab.lab.export import export_workbook

        if not args.file:
            raise ValueError("lrlab lab export needs a file name, e.g. lrlab lab export graddesc.xlsx")
        cells = export_workbook(args.file, epochs=args.epochs or 10, data=args.data)
        link = Path(args.file).is_symlink()  # written through: the file it points to is replaced, the link stays
        where = f"{os.path.realpath(args.file)} (through the link {args.file})" if link else args.file
        print(
            f"wrote {where}: {len(SHEETS)} optimizer sheets, {args.epochs or 10} epochs each, "
            f"{len(cells):,} live formula cells"
        )
        return 0
    if args.target == "compare":
        results = compare(cap=args.cap, data=args.data, textbook=args.textbook)
        print(compare_table(results, args.cap))
        data = Sheet("basic", data=args.data).data
        for res in results:
            plot_rmse(_sheet_from(res, args), out / f"rmse-{res['sheet']}.png")
        plot_compare(results, out / "compare.png")
        plot_paths(results, data, out / "paths.png")
        print(f"wrote {out}/compare.png, paths.png, rmse-<sheet>.png")
        return 0
    from lrlab.lab.notes import NOTES

    sheet = Sheet(args.target, data=args.data, textbook=args.textbook or None)
    print(f"{sheet.name}: {NOTES[sheet.name]}")
    if args.lr is not None:
        sheet.lr = args.lr
    for _ in range(args.runs):
        sheet.run(args.epochs or 5)
    mode = "textbook" if sheet.textbook else "workbook"
    print(f"{sheet.name} ({mode}): Reset, then {args.runs} Run(s) of {args.epochs or 5} epochs")
    print(history_table(sheet))
    print(
        f"now: a = {sheet.a:.6g}, b = {sheet.b:.6g}, lr = {sheet.lr:g}"
        + "".join(
            f", {k} = {tuple(round(v, 6) for v in val)}" for k, val in sheet.state.items() if isinstance(val, tuple)
        )
    )
    if args.rows:
        print(rows_table(sheet))
    plot_rmse(sheet, out / f"rmse-{sheet.name}.png")
    print(f"wrote {out}/rmse-{sheet.name}.png")
    return 0


def _serve_lab(args: argparse.Namespace) -> int:
    """`lrlab lab serve`: the browser lab until Ctrl-C."""
    from lrlab.lab.server import serve

    port = 8000 if args.port is None else args.port
    try:
        serve(port=port, open_browser=args.open, ready=lambda line: print(line, flush=True))
    except OSError as e:
        reason = e.strerror or e
        hint = "choose another with --port (0: any free one)"
        raise ValueError(f"cannot serve on port {port}: {reason}; {hint}") from None
    except RuntimeError as e:  # plotly missing
        raise ValueError(str(e)) from None
    return 0


def _sheet_from(result: dict, args: argparse.Namespace):
    """A sheet holding a compare() result's history, for its chart."""
    from lrlab.lab import Sheet

    sheet = Sheet(result["sheet"], data=args.data, textbook=result["textbook"])
    sheet.history = result["history"]
    return sheet


def add_lab_parser(sub) -> None:
    """`lrlab lab` and its options."""
    lab = sub.add_parser("lab", help="the lesson's spreadsheet: run a sheet, compare them all, export a workbook")
    lab.add_argument(
        "target",
        help="a sheet (lrlab lab compare lists them: basic ... schedulefree_adamw) | compare | export | serve",
    )
    lab.add_argument("file", nargs="?", help="the .xlsx to write (export)")
    lab.add_argument("--runs", type=positive_int, default=1, help="how many times to press Run")
    lab.add_argument("--epochs", type=positive_int, default=None, help="epochs per Run (5) / exported (10)")
    lab.add_argument("--lr", type=positive_float, default=None, help="set the lr after Reset, as by hand")
    lab.add_argument("--textbook", action="store_true", help="the clean version instead of the workbook's")
    lab.add_argument("--rows", action="store_true", help="print the rows the sheet displays")
    lab.add_argument("--data", default=None, help="a CSV of x,y rows instead of the workbook's 29")
    lab.add_argument(
        "--cap", type=bounded_int(MAX_LAB_EPOCHS), default=10_000, help="compare: give up after this many epochs"
    )
    lab.add_argument("--out", default="runs/lab", help="folder for the charts")
    lab.add_argument("--port", type=port_number, default=None, help="serve: the port (8000; 0 picks a free one)")
    lab.add_argument("--open", action="store_true", help="serve: open the page in the default browser")
    lab.set_defaults(func=cmd_lab)
