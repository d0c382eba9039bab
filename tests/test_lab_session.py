"""The browser lab's session and server without a browser: each action's view equals the engine's numbers for
the same actions, a refused action changes nothing, and the command line's serve answers and stops."""

from __future__ import annotations

import io
import json
import math
import signal
import socket
import subprocess
import sys

import pytest
from openpyxl import load_workbook

from lrlab.lab import LabError, Sheet, race
from lrlab.lab.data import WORKBOOK_ROWS
from lrlab.lab.server import create_app, plotly_js
from lrlab.lab.session import LabSession, formulas, jsonable


def test_run_step_and_hypers_equal_the_engines():
    session = LabSession()
    session.run(5)
    session.set_hypers(lr=2e-4)
    session.run(3)
    sheet = Sheet("basic").run(5)
    sheet.lr = 2e-4
    sheet.run(3)
    view = session.view()
    assert (view["a"], view["b"], view["epoch"]) == (sheet.a, sheet.b, 8)
    assert view["history"] == sheet.history and view["rows"] == sheet.rows
    for _ in range(3):
        session.step()
    view = session.view()
    assert view["cursor"] == 3 and view["rows"][3] == sheet.rows[3]
    assert view["path"][-3:] == [[r["new_b"], r["new_a"]] for r in sheet.rows[:3]]


def test_stepping_past_the_last_row_is_one_run():
    session = LabSession("momentum")
    for _ in range(len(WORKBOOK_ROWS)):
        session.step()
    sheet = Sheet("momentum").run(1)
    view = session.view()
    assert view["cursor"] == 0 and view["epoch"] == 1 and (view["a"], view["b"]) == (sheet.a, sheet.b)


def test_sheets_keep_their_state_and_modes_are_separate_sheets():
    session = LabSession()
    session.run(5)
    session.select("adam", textbook=True)
    session.set_hypers(beta1=0.8, beta2=0.99)
    session.run(2)
    adam = Sheet("adam", textbook=True)
    adam.beta1, adam.beta2 = 0.8, 0.99
    adam.run(2)
    assert (session.sheet.a, session.sheet.b) == (adam.a, adam.b)
    session.select("basic", textbook=False)
    assert session.sheet.epoch == 5
    session.select("lion")
    assert session.key == ("lion", True)


@pytest.mark.parametrize(
    "action, match",
    [
        (lambda s: s.set_hypers(lr=-1.0), "learning rate must be a finite number > 0, got -1.0"),
        (lambda s: s.set_hypers(lr=0.1, beta1=1.0), r"beta1 must be a number in \[0, 1\), got 1.0"),
        (lambda s: s.set_hypers(beta2=0.9), "the momentum sheet has no beta2"),
        (lambda s: s.run(0), "epochs must be an integer from 1 to 10000, got 0"),
        (lambda s: s.select("adamw"), "unknown sheet 'adamw'"),
        (lambda s: s.select("nadam", textbook=False), "nadam has no workbook sheet"),
        (lambda s: s.upload("x,y\n1,2\n3,abc\n", "bad.csv"), r"bad.csv, line 3: non-numeric value in '3,abc'"),
        (lambda s: s.upload("x,y\n5,1\n5,2\n", "flat.csv"), "all rows have the same x"),
        (lambda s: s.draw(seed="one"), "the seed must be an integer, got 'one'"),
    ],
)
def test_a_refused_action_changes_nothing(action, match):
    session = LabSession("momentum")
    session.run(3)
    before = session.view()
    with pytest.raises(LabError, match=match):
        action(session)
    assert session.view() == before


def test_data_draw_upload_and_the_surface():
    session = LabSession()
    session.run(2)
    session.draw(seed=3)
    view = session.view()
    assert view["epoch"] == 0 and view["data"]["source"] == "random draw (seed 3)" and view["data"]["version"] == 1
    assert session.data == Sheet.random("basic", seed=3).data
    session.upload("x,y\n1,5\n2,7\n4,11\n", "mine.csv")
    assert session.data == [(1.0, 5.0), (2.0, 7.0), (4.0, 11.0)] and session.view()["target"] == pytest.approx([2, 3])
    surface = session.surface()
    assert len(surface["z"]) == len(surface["a"]) and len(surface["z"][0]) == len(surface["b"])
    i, j = min(range(len(surface["a"])), key=lambda k: abs(surface["a"][k] - 2)), 0
    j = min(range(len(surface["b"])), key=lambda k: abs(surface["b"][k] - 3))
    expected = sum((y - (surface["a"][i] * x + surface["b"][j])) ** 2 for x, y in session.data)
    assert surface["z"][i][j] == pytest.approx(math.log10(expected + 1e-12))
    assert surface["b"][0] < 1 < 3 < surface["b"][-1] and surface["a"][0] < 1 < 2 < surface["a"][-1]


def test_race_is_every_sheet_from_reset():
    session = LabSession()
    session.run(7)
    session.race(20)
    view = session.view()
    expected = race(epochs=20)
    assert [r["sheet"] for r in view["race"]["results"]] == [r["sheet"] for r in expected]
    assert [(r["a"], r["b"]) for r in view["race"]["results"]] == [(r["a"], r["b"]) for r in expected]
    assert view["epoch"] == 7  # the race does not touch the sheet on show


def test_formulas_and_jsonable():
    assert formulas("adam_ann", False)["new_a"] == "a − lr·mom_a / √sq_a (no ε, no bias correction)"
    assert formulas("lion", True)["mom_b"].startswith("β2·mom_b'")
    assert jsonable({"v": [math.inf, -math.inf, math.nan, 1.5]}) == {"v": ["inf", "-inf", "NaN", 1.5]}


def test_overflow_keeps_the_last_finite_state_and_the_view_stays_json():
    session = LabSession("basic")
    session.set_hypers(lr=0.01)
    with pytest.raises(LabError, match="overflowed"):
        session.run(50)
    view = session.view()
    json.dumps(view, allow_nan=False)
    assert math.isfinite(view["a"]) and math.isfinite(view["b"]) and view["epoch"] == 4
    assert "inf" in json.dumps(view["rows"]) or "NaN" in json.dumps(view["rows"]) or view["rows"] == []


def test_server_routes():
    client = create_app(LabSession()).test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"/vendor/plotly.min.js" in page.data
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.data) == plotly_js().stat().st_size
    js.close()
    assert client.get("/static/lab.js").status_code == 200
    ok = client.post("/api/run", json={"epochs": 2})
    assert ok.status_code == 200 and ok.json["epoch"] == 2 and ok.json["error"] is None
    bad = client.post("/api/hypers", json={"lr": "abc"})
    assert bad.status_code == 400 and bad.json["error"] == "the learning rate must be a finite number > 0, got 'abc'"
    assert bad.json["epoch"] == 2
    assert client.post("/api/jump", json={}).json["error"] == "unknown action 'jump'"
    client.post("/api/hypers", json={"lr": 3e-4})
    xlsx = client.get("/api/export.xlsx")
    wb = load_workbook(io.BytesIO(xlsx.data))
    assert "basic" in wb.sheetnames and wb["basic"]["F1"].value == 3e-4


def test_cli_serve_answers_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrlab", "lab", "serve", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("lrlab lab: serving on http://127.0.0.1:")
        url = line.split()[4]
        import urllib.request

        with urllib.request.urlopen(url + "api/state", timeout=60) as reply:
            assert json.load(reply)["sheet"] == "basic"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_cli_serve_refuses_bad_ports_in_one_line(capsys):
    from lrlab.cli.main import main

    with pytest.raises(SystemExit):
        main(["lab", "serve", "--port", "70000"])
    assert "a port from 0 (any free one) to 65535, got 70000" in capsys.readouterr().err
    assert main(["lab", "basic", "--port", "8000"]) == 2
    assert "--port and --open belong to lrlab lab serve" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["lab", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lrlab: error: cannot serve on port {port}: ") and err.count("\n") == 1
