"""An in-process recognizer on an ephemeral loopback port, so the edge commands work with no server.

This is the only module outside ``cloud`` that starts the cloud side; the edge itself still talks to
it over gRPC like to any remote server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from voxrelay.errors import MissingDependency


@contextlib.asynccontextmanager
async def embedded_recognizer(
    model: str = "tiny.en", backend: str = "faster-whisper", compute_type: str = "int8", beam_size: int = 5
) -> AsyncIterator[str]:
    """Start the recognizer service on 127.0.0.1:0; yields its address, stops it on exit."""
    try:
        from voxrelay.cloud.server import create_server
        from voxrelay.cloud.settings import ServerSettings
    except ImportError as err:  # pragma: no cover - depends on the install
        raise MissingDependency(
            "running without --server (the embedded recognizer)", err.name or "?", "cloud"
        ) from err
    settings = ServerSettings(
        host="127.0.0.1",
        port=0,
        models=(model,),
        backend=backend,
        compute_type=compute_type,
        beam_size=beam_size,
    )
    server, port = await create_server(settings)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=5.0)
