"""Publishing a Prometheus registry: an HTTP ``/metrics`` endpoint and a node_exporter textfile.

Both sides use it: ``serve`` and ``listen`` expose their registry on ``--metrics-port``; ``transcribe``
writes it with ``--metrics-file`` (the node_exporter textfile-collector convention: the file is replaced
atomically, periodically while the command runs and once more at exit). A :class:`MetricsExporter` owns
the HTTP server thread and the writer thread, and :meth:`MetricsExporter.close` stops both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from prometheus_client import CollectorRegistry, ProcessCollector, write_to_textfile
from prometheus_client.exposition import start_http_server

from voxrelay.errors import InvalidArgument, VoxrelayError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportSettings:
    """Where a registry goes: an HTTP port (0 picks a free one), a textfile, both or neither."""

    port: int | None = None
    host: str = "127.0.0.1"
    textfile: str | None = None
    # Seconds between textfile rewrites while the command runs.
    interval_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise InvalidArgument(f"--metrics-port: {self.port} is not a TCP port (0..65535; 0 picks a free one)")
        if self.textfile is not None:
            if not self.textfile:
                raise InvalidArgument("--metrics-file: the path must not be empty")
            folder = Path(self.textfile).parent
            if not folder.is_dir():
                raise InvalidArgument(
                    f"--metrics-file: folder {str(folder)!r} does not exist; create it or choose another path"
                )
        if not self.interval_seconds > 0:
            raise InvalidArgument(f"metrics interval: {self.interval_seconds} must be positive")

    @property
    def enabled(self) -> bool:
        return self.port is not None or self.textfile is not None


def new_registry(process: bool = True) -> CollectorRegistry:
    """A fresh registry (never the global default), with process CPU/memory/file metrics if asked."""
    registry = CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
    return registry


class MetricsExporter:
    """Serves and/or writes ``registry`` as configured; a context manager that stops what it started."""

    def __init__(self, registry: CollectorRegistry, settings: ExportSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.port: int | None = None
        self._http: object | None = None
        self._http_thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> MetricsExporter:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        s = self.settings
        if s.port is not None:
            try:
                server, thread = start_http_server(s.port, addr=s.host, registry=self.registry)
            except OSError as err:
                raise VoxrelayError(
                    f"--metrics-port: cannot listen on {s.host}:{s.port} ({err.strerror or err}); choose another port"
                ) from err
            self._http, self._http_thread = server, thread
            self.port = int(server.server_port)
            log.info("metrics on http://%s:%d/metrics", s.host, self.port)
        if s.textfile is not None:
            self.write()  # fail early on an unwritable path
            self._writer = threading.Thread(target=self._write_periodically, name="voxrelay-metrics-file")
            self._writer.daemon = True
            self._writer.start()

    def write(self) -> None:
        """Replace the textfile atomically with the registry's current state."""
        path = self.settings.textfile
        if path is None:
            return
        try:
            write_to_textfile(path, self.registry)
        except OSError as err:
            raise VoxrelayError(f"--metrics-file: cannot write {path!r}: {err.strerror or err}") from err

    def _write_periodically(self) -> None:
        while not self._stop.wait(self.settings.interval_seconds):
            try:
                self.write()
            except VoxrelayError as err:
                log.warning("%s", err.message)

    def close(self) -> None:
        """Stop the writer (after one last write) and the HTTP server; idempotent."""
        self._stop.set()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
            self.write()
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]
            self._http.server_close()  # type: ignore[attr-defined]
            if self._http_thread is not None:
                self._http_thread.join(5)
            self._http = None

    def __enter__(self) -> MetricsExporter:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def exported(registry: CollectorRegistry, settings: ExportSettings) -> Iterator[MetricsExporter | None]:
    """``with exported(registry, settings):`` — publish while the block runs (nothing when disabled)."""
    if not settings.enabled:
        yield None
        return
    with MetricsExporter(registry, settings) as exporter:
        yield exporter


__all__ = ["ExportSettings", "MetricsExporter", "exported", "new_registry"]
