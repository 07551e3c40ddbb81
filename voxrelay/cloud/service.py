"""The gRPC servicer: maps calls onto the service core and errors onto status codes (one place)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from voxrelay import __version__
from voxrelay.cloud import parallelism
from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.security import client_identity, peer_host, principal_of
from voxrelay.cloud.session import StreamSession
from voxrelay.cloud.unary import check_length, recognize_utterance
from voxrelay.cloud.watch import monitoring_info
from voxrelay.cloud.wire import decode_options, inference_info, limits, model_info, wire_format
from voxrelay.errors import InvalidArgument, Overloaded, Unavailable, VoxrelayError
from voxrelay.protos import pb, pb_grpc

log = logging.getLogger(__name__)

RETRY_PUSHBACK_MS = "2000"


async def abort(context: grpc.aio.ServicerContext, err: VoxrelayError, metrics: CloudMetrics | None = None) -> None:
    """End the call with the error's status (counted by code and reason). Over-limit refusals carry a
    retry hint."""
    if metrics is not None:
        metrics.invalid_input(err)
    # Only refusals that a retry can cure carry the hint (a too-long segment stays too long).
    if isinstance(err, Overloaded):
        context.set_trailing_metadata((("grpc-retry-pushback-ms", str(round(err.retry_after * 1000))),))
    elif isinstance(err, Unavailable):
        context.set_trailing_metadata((("grpc-retry-pushback-ms", RETRY_PUSHBACK_MS),))
    await context.abort(err.grpc_code, err.message)


class RecognizerService(pb_grpc.RecognizerServicer):
    def __init__(self, core: ServiceCore) -> None:
        self.core = core

    async def Stream(
        self, request_iterator: AsyncIterator[pb.StreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResponse]:
        core = self.core
        client = client_identity(context, core.tokens)
        # Without a trustworthy identity the config's device id names the client; until it comes,
        # the stream counts against the peer's address.
        provisional = client if client is not None else peer_host(context)
        try:
            core.admit_stream(provisional)
        except VoxrelayError as err:
            await abort(context, err, core.metrics)
        core.active_streams += 1
        session = StreamSession(core, context.peer(), principal_of(context), client, provisional)
        try:
            async for response in session.responses(request_iterator):
                yield response
        except VoxrelayError as err:
            log.info("stream %s refused: %s: %s", context.peer(), err.grpc_code.name, err.message)
            await abort(context, err, core.metrics)
        except Exception as err:
            log.exception("stream %s failed", context.peer())
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}: {err}")
        finally:
            core.active_streams -= 1

    async def Recognize(self, request: pb.RecognizeRequest, context: grpc.aio.ServicerContext) -> pb.RecognitionResult:
        core = self.core
        client = client_identity(context, core.tokens) or peer_host(context)
        try:
            try:
                engine = core.engine_for("options.model", request.options.model, client)
                fmt = wire_format("format", request.format, core.settings)
                options = decode_options("options", request.options, core.settings, engine.model, engine.count_tokens)
                if not request.audio:
                    raise InvalidArgument("audio: empty; a Recognize request carries the utterance's audio bytes")
                seconds = fmt.seconds(len(request.audio))
                check_length(core, "audio", seconds, "use Stream with shorter segments")
                if len(request.audio) % fmt.frame_bytes:
                    raise InvalidArgument(
                        f"audio: {len(request.audio)} bytes is not a whole number of frames "
                        f"({fmt.frame_bytes} bytes per frame for {fmt.describe()})"
                    )
            except VoxrelayError as err:
                core.metrics.request("grpc", err.grpc_code.name)
                raise
            _, result = await recognize_utterance(
                core, engine, seconds, lambda: fmt.decode("audio", request.audio), options, front="grpc", client=client
            )
        except VoxrelayError as err:
            log.info("Recognize from %s refused: %s: %s", context.peer(), err.grpc_code.name, err.message)
            await abort(context, err, core.metrics)
            raise  # unreachable: abort raises
        return result

    def _served(self) -> list[Any]:
        """The engines of the deployments, the stable first (the default model)."""
        engines = self.core.engines
        stable = self.core.default_model
        return [engines[stable], *(e for name, e in engines.items() if name != stable)] if stable in engines else []

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.ServerInfo:
        return pb.ServerInfo(
            server_version=__version__,
            models=[model_info(engine.model) for engine in self._served()],
            limits=limits(self.core.settings),
            encodings=[pb.LINEAR16, pb.FLOAT32],
            monitoring=monitoring_info(self.core.monitor),
            inference=inference_info(
                self.core.settings, self.core.engines[self.core.default_model], parallelism.available_cores()
            ),
        )
