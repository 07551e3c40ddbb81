"""The Admin gRPC service: deployments, rollouts and the review queue, for holders of an admin token.

Admin tokens come from ``--admin-token-file`` (the device-token file's format) and must differ from
every device token. :class:`AdminTokenInterceptor` refuses an Admin call without one before its request
is read, and the device-token interceptor lets Admin calls through to it; device tokens are not admin
tokens, nor the reverse. Every change names the token's name as *who* in the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from voxrelay.cloud.handlers import safe_deserializer
from voxrelay.cloud.rollout.controller import RolloutController
from voxrelay.cloud.rollout.state import Change
from voxrelay.cloud.rollout.status import audit_pb, item_pb, spec_from_pb, status_pb
from voxrelay.cloud.security import TokenSet, bearer_token
from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.protos import ADMIN_SERVICE_NAME, admin_pb
from voxrelay.review.queue import ReviewQueue

log = logging.getLogger(__name__)

PREFIX = f"/{ADMIN_SERVICE_NAME}/"
MAX_REQUEST_BYTES = 64 * 1024
NO_REASON = "(no reason given)"


def check_distinct(admin: TokenSet, devices: TokenSet | None) -> None:
    if devices is not None and set(admin.names) & set(devices.names):
        raise InvalidArgument(
            "--admin-token-file: a token in it is also a device token (--auth-token-file); admin tokens must be "
            "distinct from every device token"
        )


def _refusal(message: str) -> grpc.RpcMethodHandler:
    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_unary_rpc_method_handler(refuse)


class AdminTokenInterceptor(grpc.aio.ServerInterceptor):
    """Admin calls need an admin token; nothing else is this interceptor's business."""

    def __init__(self, admin: TokenSet | None, devices: TokenSet | None) -> None:
        self.admin = admin
        self.devices = devices

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method or ""
        if not method.startswith(PREFIX):
            return await continuation(details)
        metadata = details.invocation_metadata
        if self.admin is None:
            return _refusal(
                "this server has no admin tokens: start it with --admin-token-file to use the admin service"
            )
        if self.admin.principal(metadata) is not None:
            return await continuation(details)
        if bearer_token(metadata) is None:
            message = (
                "the admin service needs an admin token: `authorization: Bearer <token>` (voxrelay: --admin-token-file)"
            )
        elif self.devices is not None and self.devices.principal(metadata) is not None:
            message = "a device token is not an admin token; use one from the server's --admin-token-file"
        else:
            message = "the admin token is not accepted by this server; check --admin-token-file"
        log.info("refused %s: %s", method[:80], message)
        return _refusal(message)


class AdminService:
    def __init__(self, controller: RolloutController, tokens: TokenSet | None, default_compute: str) -> None:
        self.controller = controller
        self.tokens = tokens
        self.default_compute = default_compute

    def _who(self, context: grpc.aio.ServicerContext) -> str:
        if self.tokens is None:
            return "unknown"
        return self.tokens.principal(context.invocation_metadata()) or "unknown"

    async def _reply(self, change: Change) -> admin_pb.ChangeReply:
        return admin_pb.ChangeReply(changes=list(change.lines), status=status_pb(self.controller))

    # Deployments and rollouts.

    async def GetStatus(self, request: admin_pb.StatusRequest, context: grpc.aio.ServicerContext) -> Any:
        return status_pb(self.controller)

    async def AddDeployment(self, request: admin_pb.AddDeploymentRequest, context: grpc.aio.ServicerContext) -> Any:
        spec = spec_from_pb(request.spec, self.default_compute)
        change = await self.controller.add(spec, self._who(context), request.reason or NO_REASON)
        return await self._reply(change)

    async def RemoveDeployment(
        self, request: admin_pb.RemoveDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        name = _name(request.name)
        change = await self.controller.change(
            lambda s, now: s.remove(name), self._who(context), request.reason or NO_REASON, name
        )
        return await self._reply(change)

    async def Shadow(self, request: admin_pb.ShadowRequest, context: grpc.aio.ServicerContext) -> Any:
        name = _name(request.name)
        mirror = request.mirror_percent
        change = await self.controller.change(
            lambda s, now: s.shadow(name, mirror, now), self._who(context), request.reason or NO_REASON, name
        )
        return await self._reply(change)

    async def Canary(self, request: admin_pb.CanaryRequest, context: grpc.aio.ServicerContext) -> Any:
        name = _name(request.name)
        steps = tuple(request.steps) or None
        weight = request.weight if request.HasField("weight") else None
        settings = self.controller.analysis
        change = await self.controller.change(
            lambda s, now: s.canary(name, now, settings, steps=steps, weight=weight),
            self._who(context),
            request.reason or NO_REASON,
            name,
        )
        return await self._reply(change)

    async def Promote(self, request: admin_pb.PromoteRequest, context: grpc.aio.ServicerContext) -> Any:
        c = self.controller
        name = request.name or None
        switch = request.switch
        change = await c.change(
            lambda s, now: s.promote(now, c.config.grace_seconds, c.analysis, name=name, switch=switch),
            self._who(context),
            request.reason or NO_REASON,
            name or "",
        )
        return await self._reply(change)

    async def Rollback(self, request: admin_pb.RollbackRequest, context: grpc.aio.ServicerContext) -> Any:
        change = await self.controller.change(
            lambda s, now: s.rollback(now), self._who(context), request.reason or NO_REASON
        )
        return await self._reply(change)

    async def GetAudit(self, request: admin_pb.AuditRequest, context: grpc.aio.ServicerContext) -> Any:
        entries = self.controller.audit.recent(min(request.limit or 20, 200))
        return admin_pb.AuditReply(entries=[audit_pb(e) for e in entries])

    # The review queue.

    def _queue(self) -> ReviewQueue:
        return self.controller.review_queue()

    async def ListReview(self, request: admin_pb.ReviewListRequest, context: grpc.aio.ServicerContext) -> Any:
        queue = self._queue()
        items = await asyncio.to_thread(
            queue.items, request.status or "pending", request.deployment, request.limit or 50
        )
        pending = await asyncio.to_thread(queue.pending)
        return admin_pb.ReviewList(items=[item_pb(i) for i in items], pending=pending)

    async def GetReviewItem(self, request: admin_pb.ReviewItemRequest, context: grpc.aio.ServicerContext) -> Any:
        item = await asyncio.to_thread(self._queue().get, request.id, request.with_audio)
        return item_pb(item)

    async def Review(self, request: admin_pb.ReviewActionRequest, context: grpc.aio.ServicerContext) -> Any:
        queue, who = self._queue(), self._who(context)
        if request.action == "accept":
            item = await asyncio.to_thread(queue.accept, request.id, who)
        elif request.action == "correct":
            if not request.text.strip():
                raise InvalidArgument("text: empty; give the right text of the segment to correct it")
            item = await asyncio.to_thread(queue.correct, request.id, request.text, who)
        elif request.action == "skip":
            item = await asyncio.to_thread(queue.skip, request.id, who)
        else:
            raise InvalidArgument(f"action: {request.action!r} is not one of accept, correct, skip")
        return item_pb(item)

    async def ExportReview(
        self, request: admin_pb.ExportReviewRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        queue = self._queue()
        items = await asyncio.to_thread(lambda: list(queue.reviewed()))
        for item in items:
            yield item_pb(item)


def _name(name: str) -> str:
    if not name:
        raise InvalidArgument("name: which deployment? (empty)")
    return name


def _wrap_unary(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        from voxrelay.cloud.handlers import Malformed

        if isinstance(request, Malformed):
            error = request.error()
            await context.abort(error.grpc_code, error.message)
        try:
            return await method(request, context)
        except VoxrelayError as err:
            log.info("admin %s refused: %s", method.__name__, err.message)
            await context.abort(err.grpc_code, err.message)

    return call


def _wrap_stream(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in method(request, context):
                yield item
        except VoxrelayError as err:
            await context.abort(err.grpc_code, err.message)

    return call


UNARY: dict[str, tuple[Any, Any]] = {
    "GetStatus": (admin_pb.StatusRequest, admin_pb.RolloutStatus),
    "AddDeployment": (admin_pb.AddDeploymentRequest, admin_pb.ChangeReply),
    "RemoveDeployment": (admin_pb.RemoveDeploymentRequest, admin_pb.ChangeReply),
    "Shadow": (admin_pb.ShadowRequest, admin_pb.ChangeReply),
    "Canary": (admin_pb.CanaryRequest, admin_pb.ChangeReply),
    "Promote": (admin_pb.PromoteRequest, admin_pb.ChangeReply),
    "Rollback": (admin_pb.RollbackRequest, admin_pb.ChangeReply),
    "GetAudit": (admin_pb.AuditRequest, admin_pb.AuditReply),
    "ListReview": (admin_pb.ReviewListRequest, admin_pb.ReviewList),
    "GetReviewItem": (admin_pb.ReviewItemRequest, admin_pb.ReviewItem),
    "Review": (admin_pb.ReviewActionRequest, admin_pb.ReviewItem),
}


def add_admin(service: AdminService, server: grpc.aio.Server) -> None:
    """Register the Admin service with deserializers that never raise (like the Recognizer's)."""
    handlers: dict[str, grpc.RpcMethodHandler] = {
        name: grpc.unary_unary_rpc_method_handler(
            _wrap_unary(getattr(service, name)),
            request_deserializer=safe_deserializer(request, MAX_REQUEST_BYTES),
            response_serializer=reply.SerializeToString,
        )
        for name, (request, reply) in UNARY.items()
    }
    handlers["ExportReview"] = grpc.unary_stream_rpc_method_handler(
        _wrap_stream(service.ExportReview),
        request_deserializer=safe_deserializer(admin_pb.ExportReviewRequest, MAX_REQUEST_BYTES),
        response_serializer=admin_pb.ReviewItem.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADMIN_SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(ADMIN_SERVICE_NAME, handlers)
