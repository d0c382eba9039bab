"""`lrlab lab serve`: the lab as a local web page (Flask), its charts drawn by plotly.js served from the
installed `plotly` package, so the page works with no network. One LabSession answers every browser tab.

The page posts an action (reset, run, step, hypers, sheet, data, upload, race) and draws the view it gets back;
a refused action answers 400 with the lab's one-line error and the unchanged view.
"""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file, send_from_directory

from lrlab.lab.engine import LabError
from lrlab.lab.session import LabSession

STATIC = Path(__file__).with_name("static")


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
        session.select(body.get("name", ""), body.get("textbook"))
    elif action == "data":
        if body.get("source") == "random":
            session.draw(body.get("seed"))
        else:
            session.use_workbook_rows()
    elif action == "upload":
        session.upload(str(body.get("text", "")), str(body.get("filename") or "upload.csv"))
    elif action == "race":
        session.race(body.get("epochs", 50))
    else:
        raise LabError(f"unknown action {action!r}")


def create_app(session: LabSession | None = None) -> Flask:
    """The Flask app over one session (a new one on the workbook's rows if none is given)."""
    session = session or LabSession()
    plotly_path = plotly_js()
    lock = threading.Lock()  # Flask serves requests on threads; the session is one spreadsheet
    app = Flask(__name__, static_folder=None)

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

    @app.post("/api/<action>")
    def act(action: str) -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        with lock:
            started = time.perf_counter()
            try:
                _dispatch(session, action, body)
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

    app = create_app()
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
