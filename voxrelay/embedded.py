"""An in-process recognizer on an ephemeral loopback port, so the edge commands work with no server.

This is the only module outside ``cloud`` that starts the cloud side; the edge itself still talks to
it over gRPC like to any remote server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from voxrelay.errors import MissingDependency

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@contextlib.asynccontextmanager
async def embedded_recognizer(
    model: str = "tiny.en",
    backend: str = "faster-whisper",
    compute_type: str = "int8",
    beam_size: int = 5,
    inference_workers: int = 1,
    metrics_registry: CollectorRegistry | None = None,
    cpu_threads: int = 0,
    temperature: tuple[float, ...] | None = None,
    context_seconds: float = 0.0,
    speculate: bool = True,
) -> AsyncIterator[str]:
    """Start the recognizer service on 127.0.0.1:0; yields its address, stops it on exit.

    ``cpu_threads``: threads per inference worker (0: the cores divided among the workers);
    ``temperature``: Whisper's fallback temperatures (None: the server's default).

    ``metrics_registry``: record the service's metrics there (with the edge's, for one metrics file).

    ``inference_workers``: segments recognised at once (several streams keep several workers busy).
    """
    try:
        from voxrelay.cloud.metrics import CloudMetrics
        from voxrelay.cloud.server import create_server
        from voxrelay.cloud.settings import ServerSettings
    except ImportError as err:  # pragma: no cover - depends on the install
        raise MissingDependency("running without --server (the embedded recognizer)", err.name or "?", "cloud") from err
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        models=(model,),
        backend=backend,
        compute_type=compute_type,
        beam_size=beam_size,
        temperature=ServerSettings.temperature if temperature is None else temperature,
        context_seconds=context_seconds,
        speculate=speculate,
        inference_workers=inference_workers,
        cpu_threads=cpu_threads,
        # One user on this machine: every stream is theirs.
        max_client_streams=ServerSettings.max_concurrent_streams,
        max_client_queued_work_seconds=ServerSettings.max_queued_work_seconds,
    )
    metrics = CloudMetrics(metrics_registry) if metrics_registry is not None else None
    server, port = await create_server(settings, metrics=metrics)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=5.0)
