"""Registers the Recognizer servicer so that bytes which do not parse get INVALID_ARGUMENT.

The generated ``add_RecognizerServicer_to_server`` deserializes with ``FromString``: a request that
is not a valid protobuf then fails deep inside gRPC (UNKNOWN for a unary call, and a Stream hangs
until its deadline). Here the deserializers never raise; they return :class:`Malformed`, which the
wrappers turn into INVALID_ARGUMENT naming the message type, before the servicer sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from voxrelay.errors import InvalidArgument
from voxrelay.protos import SERVICE_NAME, pb


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of ``type_name``."""

    type_name: str
    size: int
    reason: str

    def error(self) -> InvalidArgument:
        return InvalidArgument(
            f"{self.type_name}: {self.size} bytes that do not parse as voxrelay.v1.{self.type_name} "
            f"({self.reason}); send a message of the published contract"
        )


def safe_deserializer(message_type: type[Message]) -> Callable[[bytes], Any]:
    name = message_type.DESCRIPTOR.name

    def deserialize(data: bytes) -> Any:
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
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error().message)
        return await behaviour(request, context)

    return call


def add_recognizer(servicer: Any, server: grpc.aio.Server) -> None:
    """Like the generated ``add_RecognizerServicer_to_server``, with deserializers that never raise."""

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
            request_deserializer=safe_deserializer(pb.StreamRequest),
            response_serializer=pb.StreamResponse.SerializeToString,
        ),
        "Recognize": grpc.unary_unary_rpc_method_handler(
            _unary(servicer.Recognize),
            request_deserializer=safe_deserializer(pb.RecognizeRequest),
            response_serializer=pb.RecognitionResult.SerializeToString,
        ),
        "GetInfo": grpc.unary_unary_rpc_method_handler(
            _unary(servicer.GetInfo),
            request_deserializer=safe_deserializer(pb.GetInfoRequest),
            response_serializer=pb.ServerInfo.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
