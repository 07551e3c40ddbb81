"""The built-in live page: ``voxrelay serve --dashboard-port PORT``.

A small HTTP server (stdlib ``ThreadingHTTPServer`` on its own thread, stopped by :meth:`LivePage.close`)
serves the page, its vendored charting library (uPlot, MIT, in ``static/`` with its licence: no CDN,
it works offline) and ``/api/state``, the :class:`~voxrelay.monitoring.board.Board`'s JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from voxrelay.errors import VoxrelayError
from voxrelay.monitoring.board import Board

log = logging.getLogger(__name__)

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
    "/static/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/static/uPlot.min.css": ("uPlot.min.css", "text/css; charset=utf-8"),
    "/static/uPlot.LICENSE": ("uPlot.LICENSE", "text/plain; charset=utf-8"),
}


def _static(name: str) -> bytes:
    return resources.files("voxrelay.monitoring").joinpath("static", name).read_bytes()


class LivePage:
    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 0) -> None:
        self.board = board
        files = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/api/state":
                    body = json.dumps(page.board.state(), allow_nan=False, default=_nan_free).encode()
                    self._send(HTTPStatus.OK, body, "application/json")
                elif path in files:
                    body, kind = files[path]
                    self._send(HTTPStatus.OK, body, kind)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

            def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("dashboard: " + format, *args)

        try:
            self._http = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            raise VoxrelayError(
                f"--dashboard-port: cannot listen on {host}:{port} ({err.strerror or err}); choose another port"
            ) from err
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="voxrelay-dashboard", daemon=True)

    def start(self) -> LivePage:
        self.board.start()
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)
        self.board.close()


def _nan_free(value: Any) -> Any:
    raise TypeError(f"not JSON: {type(value).__name__}")
