"""`lrlab lab serve`: the lab as a local web page (Flask), its charts drawn by plotly.js served from the
installed `plotly` package, so the page works with no network. One LabSession answers every browser tab.

The page posts an action (reset, run, step, hypers, sheet, data, upload, race) and draws the view it gets back;
a refused action answers 400 with the lab's one-line error and the unchanged view.

The server trusts no other page the browser shows, as Jupyter does: it answers only requests addressed to the
names it serves (a DNS-rebinding page's Host is another name: 403), takes actions only as JSON from its own
origin (a cross-site form or text/plain POST needs no CORS preflight, so it is refused by its Origin: 403;
without JSON: 415), and each action's work is capped by the session (MAX_WORK) so one request cannot hold
the lock for minutes.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
import webbrowser
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, request, send_file, send_from_directory
from werkzeug.exceptions import HTTPException

from lrlab.lab.engine import LabError
from lrlab.lab.session import LabSession

STATIC = Path(__file__).with_name("static")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_BODY_BYTES = 4 * 1024 * 1024  # an upload of the most rows the lab takes is well under 1 MB


def plotly_js() -> Path:
    """plotly.min.js as the `plotly` Python package installs it (for offline pages).

    Raises:
        RuntimeError: plotly is not installed, or ships no plotly.min.js."""
    try:
        import plotly
    except ImportError:
        raise RuntimeError("the browser lab needs plotly: pip install 'lrlab[web]'") from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise RuntimeError(f"plotly {plotly.__version__} ships no {path}")
    return path


def hostname(value: str) -> str | None:
    """The name part of a Host header or an origin's netloc ('[::1]:8000' -> '::1'); None if malformed."""
    try:
        return urlsplit("//" + value).hostname
    except ValueError:
        return None


def refusal(request_host: str, origin: str | None, fetch_site: str | None, allowed: set[str]) -> str | None:
    """Why a state-changing request is refused (None if it may act): a foreign Host, or another site's page."""
    if hostname(request_host) not in allowed:
        return f"host {request_host!r} is not served here (only {', '.join(sorted(allowed))})"
    if origin is not None and origin != f"http://{request_host}":
        return f"cross-origin request from {origin!r} refused: the lab takes actions only from its own page"
    if fetch_site == "cross-site":
        return "cross-site request refused: the lab takes actions only from its own page"
    return None


def json_body(raw: bytes) -> dict:
    """An action's arguments: a JSON object (an empty body is no arguments).

    Raises:
        LabError: the body is not JSON, or JSON that is not an object."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as e:  # includes bytes that are not UTF-8
        raise LabError(f"the request body is not JSON ({e})") from None
    if not isinstance(body, dict):
        raise LabError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _field(body: dict, name: str, kind: type, default=None):
    """body[name] if it has the JSON type an action expects (missing: default).

    Raises:
        LabError: the value has another type (a string for a flag, a number for a name...)."""
    value = body.get(name, default)
    if value is None or value is default:
        return value
    wrong = isinstance(value, bool) != (kind is bool) or not isinstance(value, kind)
    if wrong:
        expected = {bool: "true or false", str: "a string", int: "an integer"}[kind]
        raise LabError(f"{name} must be {expected}, got {value!r}")
    return value


def _dispatch(session: LabSession, action: str, body: dict) -> None:
    """Apply one action from the page (its JSON body as keyword arguments)."""
    if action == "reset":
        session.reset()
    elif action == "run":
        session.run(body.get("epochs", 5))
    elif action == "step":
        session.step()
    elif action == "hypers":
        session.set_hypers(body.get("lr"), body.get("beta1"), body.get("beta2"))
    elif action == "sheet":
        session.select(_field(body, "name", str, ""), _field(body, "textbook", bool))
    elif action == "data":
        if _field(body, "source", str) == "random":
            session.draw(body.get("seed"))
        else:
            session.use_workbook_rows()
    elif action == "upload":
        session.upload(_field(body, "text", str, ""), _field(body, "filename", str) or "upload.csv")
    elif action == "race":
        session.race(body.get("epochs", 50))
    else:
        raise LabError(f"unknown action {action!r}")


def create_app(session: LabSession | None = None, host: str = "127.0.0.1") -> Flask:
    """The Flask app over one session (a new one on the workbook's rows if none is given), answering requests
    addressed to localhost, 127.0.0.1, ::1 or `host` (the address it is bound to)."""
    session = session or LabSession()
    plotly_path = plotly_js()
    lock = threading.Lock()  # Flask serves requests on threads; the session is one spreadsheet
    allowed = {*LOCAL_NAMES, host.strip("[]").lower()}
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.before_request
    def guard() -> tuple[Response, int] | None:
        posted = request.method not in ("GET", "HEAD", "OPTIONS")
        why = refusal(
            request.host,
            request.headers.get("Origin") if posted else None,
            request.headers.get("Sec-Fetch-Site") if posted else None,
            allowed,
        )
        if why:
            return jsonify(error=why), 403
        if posted and request.mimetype != "application/json":
            return jsonify(error=f"send the action as application/json, not {request.mimetype or 'no type'!r}"), 415
        return None

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> tuple[Response, int]:
        return jsonify(error=f"{e.code} {e.name}: {e.description}"), e.code or 500

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name)

    @app.get("/vendor/plotly.min.js")
    def plotly_file() -> Response:
        return send_file(plotly_path, mimetype="text/javascript", max_age=3600)

    @app.get("/api/state")
    def state() -> Response:
        with lock:
            return jsonify(session.view())

    @app.get("/api/surface")
    def surface() -> Response:
        with lock:
            return jsonify(session.surface())

    @app.get("/api/history.csv")
    def history() -> Response:
        with lock:
            records, name = session.sheet.history, session.key[0]
            out = io.StringIO()
            columns = list(records[0]) if records else ["epoch", "b", "a", "lr", "rmse"]
            writer = csv.DictWriter(out, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
        return Response(
            out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={name}.csv"}
        )

    @app.post("/api/<action>")
    def act(action: str) -> tuple[Response, int]:
        with lock:
            started = time.perf_counter()
            try:
                _dispatch(session, action, json_body(request.get_data()))
                error, code = None, 200
            except LabError as e:
                error, code = str(e), 400
            view = session.view()
            view["error"], view["server_ms"] = error, (time.perf_counter() - started) * 1000
            return jsonify(view), code

    @app.get("/api/export.xlsx")
    def export() -> Response:
        with lock:
            payload = session.export()
        return Response(
            payload,
            mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": "attachment; filename=lrlab-lab.xlsx"},
        )

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False, ready=print) -> None:
    """Serve the lab until Ctrl-C; `ready` gets the address once the port is bound (port 0 picks a free one).

    Raises:
        OSError: the port cannot be bound (in use, or not allowed)."""
    from werkzeug.serving import make_server

    app = create_app(host=host)
    # Bind here, so a taken port is an OSError to report (werkzeug would print its own and exit the process).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(64)
    except OSError:
        listener.close()
        raise
    server = make_server(host, port, app, threaded=True, fd=listener.fileno())
    url = f"http://{host}:{listener.getsockname()[1]}/"
    ready(f"lrlab lab: serving on {url} (Ctrl-C stops)")
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        listener.close()
