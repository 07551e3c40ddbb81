"""The review web page, served by the recognizer (``voxrelay serve --review-port PORT``).

aiohttp on the recognizer's own event loop. The page and its script are public; every ``/api/`` call
needs an admin token (``Authorization: Bearer``), whose name is recorded as the reviewer. The page asks
for the token once and keeps it in the tab's session storage (or takes it from the URL's ``#token=``
fragment, which never reaches the server or its logs). Audio is fetched with the token and played from
a blob URL. Nothing of an item (audio, text) is logged.

    GET  /                         the page
    GET  /api/items?status=pending the queue (and the figures: pending, live WER per deployment)
    GET  /api/items/{id}           one item
    GET  /api/items/{id}/audio     its audio (WAV)
    POST /api/items/{id}           {"action": "accept" | "correct" | "skip", "text": "..."}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from voxrelay.cloud.security import TokenSet
from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.review.queue import ReviewQueue

log = logging.getLogger(__name__)

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/review.js": ("review.js", "text/javascript; charset=utf-8"),
    "/static/review.css": ("review.css", "text/css; charset=utf-8"),
}
STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
}


class QueueSource(Protocol):
    def review_queue(self) -> ReviewQueue: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReviewPage:
    def __init__(self, source: QueueSource, tokens: TokenSet | None, registry: CollectorRegistry | None = None) -> None:
        self.source = source
        self.tokens = tokens
        self.registry = registry
        self._files = {
            path: (resources.files("voxrelay.review").joinpath("static", name).read_bytes(), kind)
            for path, (name, kind) in STATIC.items()
        }
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        for path in self._files:
            app.router.add_get(path, self._static)
        app.router.add_get("/api/items", self._guard(self._list))
        app.router.add_get("/api/items/{id}", self._guard(self._get))
        app.router.add_get("/api/items/{id}/audio", self._guard(self._audio))
        app.router.add_post("/api/items/{id}", self._guard(self._act))
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Plumbing.

    async def _static(self, request: web.Request) -> web.Response:
        body, kind = self._files[request.path]
        return web.Response(body=body, content_type=kind.split(";")[0], charset="utf-8", headers=_NO_CACHE)

    def _who(self, request: web.Request) -> str:
        if self.tokens is None:
            raise _Refused(403, "this server has no admin tokens: start it with --admin-token-file to review")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(401, "an admin token is needed (from the server's --admin-token-file)")
        name = self.tokens.principal([("authorization", header)])
        if name is None:
            raise _Refused(401, "the admin token is not accepted by this server")
        return name

    def _guard(self, handler: Callable[[web.Request, str, ReviewQueue], Awaitable[web.StreamResponse]]) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                who = self._who(request)
                return await handler(request, who, self.source.review_queue())
            except _Refused as err:
                return _error(err.status, err.message)
            except VoxrelayError as err:
                return _error(STATUS.get(err.code.name, 500), err.message)

        return guarded

    # The API.

    async def _list(self, request: web.Request, who: str, queue: ReviewQueue) -> web.Response:
        status = request.query.get("status", "pending")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            raise InvalidArgument("limit: not a whole number") from None
        items = await asyncio.to_thread(queue.items, status, request.query.get("deployment", ""), limit)
        stats = await asyncio.to_thread(queue.stats)
        pending = await asyncio.to_thread(queue.pending)
        body = {
            "reviewer": who,
            "pending": pending,
            "items": [i.to_json() for i in items],
            "stats": [
                {
                    "deployment": s.deployment,
                    "pending": s.pending,
                    "accepted": s.accepted,
                    "corrected": s.corrected,
                    "wer": s.wer,
                    "redo_ratio": s.redo_ratio,
                    "words": s.words,
                }
                for s in stats
            ],
        }
        return _json(body)

    async def _get(self, request: web.Request, who: str, queue: ReviewQueue) -> web.Response:
        item = await asyncio.to_thread(queue.get, request.match_info["id"])
        return _json(item.to_json())

    async def _audio(self, request: web.Request, who: str, queue: ReviewQueue) -> web.Response:
        item = await asyncio.to_thread(queue.get, request.match_info["id"], True)
        return web.Response(body=item.audio or b"", content_type="audio/wav", headers=_NO_CACHE)

    async def _act(self, request: web.Request, who: str, queue: ReviewQueue) -> web.Response:
        try:
            data: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidArgument('the request body is not JSON: send {"action": ..., "text": ...}') from None
        if not isinstance(data, dict):
            raise InvalidArgument("the request body must be a JSON object")
        action, text = data.get("action"), data.get("text", "")
        item_id = request.match_info["id"]
        if action == "accept":
            item = await asyncio.to_thread(queue.accept, item_id, who)
        elif action == "correct":
            if not isinstance(text, str) or not text.strip():
                raise InvalidArgument("text: empty; type the right text to correct the segment")
            item = await asyncio.to_thread(queue.correct, item_id, text, who)
        elif action == "skip":
            item = await asyncio.to_thread(queue.skip, item_id, who)
        else:
            raise InvalidArgument(f"action: {str(action)[:20]!r} is not one of accept, correct, skip")
        log.info("review item %s %s by %s", item_id, item.status if action != "skip" else "skipped", who)
        return _json(item.to_json())


_NO_CACHE = {"Cache-Control": "no-store"}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: Any) -> web.Response:
    return web.json_response(body, headers=_NO_CACHE, dumps=lambda v: json.dumps(v, allow_nan=False, default=str))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_NO_CACHE)
