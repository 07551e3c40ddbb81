"""Other protocols onto the same engines: the OpenAI-compatible HTTP API and the Wyoming protocol.

Each front runs on the recognizer's own event loop next to the gRPC server and goes through the
same unary path as ``Recognize`` (:mod:`voxrelay.cloud.unary`): the same tokens, limits and metrics.
"""

from __future__ import annotations

from typing import Protocol


class Front(Protocol):
    """A started front: what it is, where it listens, and how it stops."""

    name: str

    @property
    def port(self) -> int: ...

    async def stop(self, grace: float) -> None: ...
