"""Registers the Recognizer servicer so that bytes which do not parse get INVALID_ARGUMENT, and a
message larger than its method allows gets RESOURCE_EXHAUSTED without being parsed.

The generated ``add_RecognizerServicer_to_server`` deserializes with ``FromString``: a request that
is not a valid protobuf then fails deep inside gRPC (UNKNOWN for a unary call, and a Stream hangs
until its deadline). Here the deserializers never raise; they return :class:`Malformed`, which the
wrappers turn into an error status naming the message type, before the servicer sees it.

gRPC's own receive limit is one number for the whole server (sized for the largest message of the
contract, a ``Recognize`` of ``max_segment_seconds`` in the widest format); :func:`receive_limits`
sizes each method's bound from the contract, and the deserializers hold every message to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument, LimitExceeded, VoxrelayError
from voxrelay.protos import SERVICE_NAME, pb

# Room for a message's fields besides its audio (ids, options, a prompt at Whisper's limit in UTF-8).
ENVELOPE_BYTES = 16 * 1024


def receive_limits(settings: ServerSettings) -> dict[str, int]:
    """The largest message each method accepts: a Stream message is at most one chunk (or a config),
    a Recognize request ``max_segment_seconds`` of the widest format (stereo float32 at the top rate)."""
    widest = int(settings.max_segment_seconds * settings.max_sample_rate_hz * 2 * 4)
    return {
        "Stream": settings.max_chunk_bytes + ENVELOPE_BYTES,
        "Recognize": widest + ENVELOPE_BYTES,
        "GetInfo": 1024,
    }


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of ``type_name`` (or more than ``limit`` bytes)."""

    type_name: str
    size: int
    reason: str
    limit: int | None = None

    def error(self) -> VoxrelayError:
        if self.limit is not None:
            return LimitExceeded(
                f"{self.type_name}: a message of {self.size} bytes is over this method's limit of {self.limit} "
                "bytes (audio goes in chunks of at most Limits.max_chunk_bytes)"
            )
        return InvalidArgument(
            f"{self.type_name}: {self.size} bytes that do not parse as voxrelay.v1.{self.type_name} "
            f"({self.reason}); send a message of the published contract"
        )


def safe_deserializer(message_type: type[Message], max_bytes: int | None = None) -> Callable[[bytes], Any]:
    name = message_type.DESCRIPTOR.name

    def deserialize(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            return Malformed(name, len(data), "too large", max_bytes)
        try:
            return message_type.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as err:
            return Malformed(name, len(data), str(err).split(": ")[-1] or type(err).__name__)

    return deserialize


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error()
        yield request


def _unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            error = request.error()
            await context.abort(error.grpc_code, error.message)
        return await behaviour(request, context)

    return call


def add_recognizer(servicer: Any, server: grpc.aio.Server, limits: dict[str, int] | None = None) -> None:
    """Like the generated ``add_RecognizerServicer_to_server``, with deserializers that never raise and
    hold each method to its bound in ``limits`` (see :func:`receive_limits`)."""
    limits = limits or {}

    async def stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        responses = servicer.Stream(_checked(requests), context)
        try:
            async for response in responses:
                yield response
        finally:
            await responses.aclose()  # now, not whenever the garbage collector gets to it

    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            stream,
            request_deserializer=safe_deserializer(pb.StreamRequest, limits.get("Stream")),
            response_serializer=pb.StreamResponse.SerializeToString,
        ),
        "Recognize": grpc.unary_unary_rpc_method_handler(
            _unary(servicer.Recognize),
            request_deserializer=safe_deserializer(pb.RecognizeRequest, limits.get("Recognize")),
            response_serializer=pb.RecognitionResult.SerializeToString,
        ),
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            _unary(servicer.GetInfo),
            request_deserializer=safe_deserializer(pb.GetInfoRequest, limits.get("GetInfo")),
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
