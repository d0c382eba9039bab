"""The browser lab's server as a local server must be: it answers only its own names, takes actions only as
JSON from its own page, computes a bounded amount per click, and sends a bounded view after any number of runs.
Each refusal is driven for real: through Flask's client, and one through a real socket."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from lrlab.lab.server import create_app
from lrlab.lab.session import HISTORY_WINDOW, MAX_HISTORY, MAX_WORK, LabSession


def strict_json(text: str | bytes):
    """JSON as the standard has it: Infinity and NaN are not numbers there."""

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def client():
    return create_app(LabSession()).test_client()


def epoch(client) -> int:
    return client.get("/api/state").json["epoch"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8000", "[::1]:8000", "localhost:5"])
def test_the_names_it_serves_are_answered(client, host):
    assert client.get("/api/state", headers={"Host": host}).status_code == 200
    assert client.post("/api/run", json={"epochs": 1}, headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[bad"])
def test_a_foreign_host_is_refused_as_a_dns_rebinding_page_would_send_it(client, host):
    for reply in (client.get("/", headers={"Host": host}), client.get("/api/state", headers={"Host": host}),
                  client.post("/api/run", json={"epochs": 3}, headers={"Host": host})):  # fmt: skip
        assert reply.status_code == 403 and "is not served here" in reply.json["error"]
    assert epoch(client) == 0


def test_cross_site_posts_are_refused_and_change_nothing(client):
    evil = {"Origin": "http://evil.example"}
    form = client.post("/api/reset", data={"epochs": "5"}, headers=evil)  # a form on another site
    assert form.status_code == 403 and "cross-origin request from 'http://evil.example'" in form.json["error"]
    plain = client.post("/api/run", data='{"epochs": 5}', content_type="text/plain", headers=evil)
    assert plain.status_code == 403
    as_json = client.post("/api/run", json={"epochs": 5}, headers=evil)  # a browser would preflight it; we refuse
    assert as_json.status_code == 403
    sneaky = client.post("/api/run", json={"epochs": 5}, headers={"Sec-Fetch-Site": "cross-site"})
    assert sneaky.status_code == 403
    no_origin_text = client.post("/api/run", data='{"epochs": 5}', content_type="text/plain")
    assert no_origin_text.status_code == 415 and "application/json, not 'text/plain'" in no_origin_text.json["error"]
    assert epoch(client) == 0
    own = client.post("/api/run", json={"epochs": 5}, headers={"Origin": "http://localhost"})
    assert own.status_code == 200 and own.json["epoch"] == 5


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"epochs": 5', "the request body is not JSON (Expecting ',' delimiter"),
        ("[1, 2]", "the request body must be a JSON object, got list"),
        ('"run"', "the request body must be a JSON object, got str"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_one_line_and_runs_nothing(client, body, message):
    reply = client.post("/api/run", data=body, content_type="application/json")
    assert reply.status_code == 400 and reply.json["error"].startswith(message) and "\n" not in reply.json["error"]
    assert reply.json["epoch"] == 0


@pytest.mark.parametrize(
    "action, body, message",
    [
        ("sheet", {"name": "adam", "textbook": "no"}, "textbook must be true or false, got 'no'"),
        ("sheet", {"name": 3}, "name must be a string, got 3"),
        ("upload", {"text": ["1,2"]}, "text must be a string, got ['1,2']"),
        ("data", {"source": True}, "source must be a string, got True"),
        ("run", {"epochs": 1e9}, "epochs must be an integer from 1 to 10000, got 1000000000.0"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused_not_read_loosely(client, action, body, message):
    reply = client.post(f"/api/{action}", json=body)
    assert reply.status_code == 400 and reply.json["error"] == message
    assert reply.json["sheet"] == "basic" and reply.json["textbook"] is False


def test_the_surface_is_strict_json_even_when_the_error_overflows(client):
    rows = "x,y\n1,1e200\n2,-1e200\n3,1e200\n"
    assert client.post("/api/upload", json={"text": rows, "filename": "huge.csv"}).status_code == 200
    reply = client.get("/api/surface")
    surface = strict_json(reply.data)
    assert "inf" in json.dumps(surface["z"])
    strict_json(client.get("/api/state").data)


def test_one_click_computes_a_bounded_amount(client):
    rows = "x,y\n" + "\n".join(f"{i % 100 + 1},{2 * (i % 100) + 32}" for i in range(10_000))
    assert client.post("/api/upload", json={"text": rows}).json["data"]["rows"] == 10_000
    run = client.post("/api/run", json={"epochs": 10_000})
    assert run.status_code == 400 and run.json["error"] == (
        f"Run: 10,000 epochs x 10,000 rows is 100,000,000 row updates; one click computes at most {MAX_WORK:,} "
        "(at most 30 epochs on these rows)"
    )
    ok = client.post("/api/run", json={"epochs": 30})
    assert ok.json["error"] is None and ok.json["epoch"] == 30
    race = client.post("/api/race", json={"epochs": 100_000})
    assert race.status_code == 400 and race.json["error"].startswith("the race: 100,000 epochs x 10,000 rows x 11")
    assert race.json["race"] is None and race.json["epoch"] == 30


def test_the_view_stays_bounded_after_any_number_of_runs_and_the_csv_has_it_all(client):
    sizes = []
    for _ in range(MAX_HISTORY // 10_000):
        reply = client.post("/api/run", json={"epochs": 10_000})
        assert reply.status_code == 200
        sizes.append(len(reply.data))
        assert (
            len(reply.json["history"]) == HISTORY_WINDOW and reply.json["history"][-1]["epoch"] == reply.json["epoch"]
        )
    full = client.post("/api/run", json={"epochs": 1})
    assert full.status_code == 400 and full.json["error"].startswith(f"the sheet keeps at most {MAX_HISTORY:,} epochs")
    assert full.json["history_epochs"] == MAX_HISTORY
    assert max(sizes) < 250_000 and abs(sizes[-1] - sizes[0]) < 0.05 * sizes[0]
    lines = client.get("/api/history.csv").data.decode().splitlines()
    assert lines[0] == "epoch,b,a,lr,rmse" and len(lines) == MAX_HISTORY + 1 and lines[-1].startswith("20000,")
    assert client.post("/api/reset", json={}).json["history_epochs"] == 0
    assert client.post("/api/run", json={"epochs": 3}).json["path"][0] == [1.0, 1.0]


def test_a_real_server_refuses_a_foreign_host_and_a_cross_site_form():
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(LabSession()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_port

        def ask(method: str, path: str, headers: dict, body: str | None = None) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            out = reply.status, json.loads(reply.read())
            conn.close()
            return out

        status, body = ask("GET", "/api/state", {"Host": f"attacker.example:{port}"})
        assert status == 403 and body["error"].startswith(f"host 'attacker.example:{port}' is not served here")
        form = {"Host": f"127.0.0.1:{port}", "Origin": "http://attacker.example",
                "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        assert ask("POST", "/api/race", form, "epochs=100")[0] == 403
        status, view = ask("GET", "/api/state", {"Host": f"127.0.0.1:{port}"})
        assert status == 200 and view["race"] is None
    finally:
        server.shutdown()
