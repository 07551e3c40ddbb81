"""The OpenAI-compatible HTTP API on the recognizer: ``POST /v1/audio/transcriptions`` and ``/translations``.

Served by aiohttp on the recognizer's own event loop (the one grpc.aio runs on), so a request goes
straight into the same unary path as gRPC ``Recognize`` (:func:`voxrelay.cloud.unary.recognize_utterance`):
the same device tokens (``Authorization: Bearer``), admission control, limits and metrics. The upload
is read as a stream and refused past ``http_max_upload_bytes``; it is decoded with FFmpeg (PyAV) off
the loop. Also ``GET /v1/models`` (the served models, for clients that list them) and ``GET /healthz``
(200 while serving, 503 while draining: for load balancers).

``model`` may be a served model's name or version, or ``whisper-1`` (and empty) for the default one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from aiohttp import BodyPartReader, web

from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.fronts.responses import (
    CONTENT_TYPES,
    GRANULARITIES,
    RESPONSE_FORMATS,
    HttpError,
    error_response,
    render,
)
from voxrelay.cloud.fronts.uploads import decode_upload
from voxrelay.cloud.security import TokenSet
from voxrelay.cloud.unary import recognize_utterance
from voxrelay.cloud.wire import decode_options
from voxrelay.errors import InvalidArgument, LimitExceeded, Unauthenticated, Unavailable, VoxrelayError
from voxrelay.protos import pb

log = logging.getLogger(__name__)

DEFAULT_MODEL_ALIASES = ("", "whisper-1")
TEXT_FIELDS = ("model", "language", "prompt", "response_format", "temperature")
LIST_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
MAX_FIELD_BYTES = 16 * 1024
READ_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class AudioRequest:
    """The form of one transcription or translation request, checked."""

    data: bytes
    filename: str
    model: str = ""
    language: str = ""
    prompt: str = ""
    response_format: str = "json"
    temperature: float | None = None
    granularities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.response_format not in RESPONSE_FORMATS:
            raise InvalidArgument(
                f"response_format: {self.response_format!r} is not supported (accepted: {', '.join(RESPONSE_FORMATS)})"
            )
        for value in self.granularities:
            if value not in GRANULARITIES:
                raise InvalidArgument(f"timestamp_granularities[]: {value!r} is not one of {', '.join(GRANULARITIES)}")
        if self.granularities and self.response_format != "verbose_json":
            raise InvalidArgument(
                f"timestamp_granularities[]: timestamps need response_format verbose_json (got {self.response_format})"
            )


async def _read_field(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(READ_BYTES):
        data += chunk
        if len(data) > limit:
            raise LimitExceeded(what)
    return bytes(data)


async def read_form(request: web.Request, max_upload: int) -> AudioRequest:
    """Parse the multipart form, refusing an unknown field, a missing file or a file over ``max_upload``."""
    if not request.content_type.startswith("multipart/"):
        raise InvalidArgument(
            f"file: the request is {request.content_type or 'without a body'}; send multipart/form-data "
            "with the audio in a `file` field (curl -F file=@audio.wav)"
        )
    reader = await request.multipart()
    fields: dict[str, str] = {}
    granularities: list[str] = []
    data: bytes | None = None
    filename = ""
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidArgument("file: nested multipart bodies are not supported")
        name = part.name or ""
        if name == "file":
            mib = max_upload / (1 << 20)
            data = await _read_field(
                part,
                max_upload,
                f"file: the upload is over the limit of {mib:g} MiB (the server's --http-max-upload-mb)",
            )
            filename = part.filename or "upload"
        elif name in TEXT_FIELDS or name in LIST_FIELDS:
            raw = await _read_field(part, MAX_FIELD_BYTES, f"{name}: over {MAX_FIELD_BYTES} bytes")
            value = raw.decode("utf-8", errors="replace").strip()
            if name in LIST_FIELDS:
                granularities.append(value)
            else:
                fields[name] = value
        else:
            raise InvalidArgument(f"{name or 'unnamed'}: unrecognized request argument")
    if data is None:
        raise InvalidArgument("file: missing; upload the audio in a `file` field of multipart/form-data")
    temperature = None
    if fields.get("temperature"):
        try:
            temperature = float(fields["temperature"])
        except ValueError:
            raise InvalidArgument(f"temperature: {fields['temperature']!r} is not a number (0..1)") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidArgument(f"temperature: {temperature:g} is out of range (0..1)")
    return AudioRequest(
        data=data,
        filename=filename,
        model=fields.get("model", ""),
        language=fields.get("language", ""),
        prompt=fields.get("prompt", ""),
        response_format=fields.get("response_format") or "json",
        temperature=temperature,
        granularities=tuple(dict.fromkeys(granularities)),
    )


class OpenAIHttpFront:
    """The HTTP server; ``start`` binds it, ``stop`` finishes requests in flight within the grace time."""

    name = "http"

    def __init__(self, core: ServiceCore, tokens: TokenSet | None) -> None:
        self.core = core
        self.tokens = tokens
        self._runner: web.AppRunner | None = None
        self._port = 0
        app = web.Application(client_max_size=core.settings.http_max_upload_bytes + (1 << 20))
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/translations", self._translations)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/healthz", self._health)
        self.app = app

    @property
    def port(self) -> int:
        return self._port

    async def start(self, host: str, port: int) -> int:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.core.settings.grace_seconds)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise VoxrelayError(f"--http-port: cannot listen on {host}:{port}: {err.strerror or err}") from err
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self._port = sockets[0].getsockname()[1] if sockets else port
        return self._port

    async def stop(self, grace: float) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(runner.cleanup(), timeout=max(0.5, grace))

    # Handlers.

    async def _health(self, request: web.Request) -> web.Response:
        serving = not self.core.draining
        return web.json_response({"status": "SERVING" if serving else "NOT_SERVING"}, status=200 if serving else 503)

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return self._error(refused)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "voxrelay", "version": e.model.version}
            for name, e in self.core.engines.items()
        ]
        return web.json_response({"object": "list", "data": data})

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._audio(request, "transcribe")

    async def _translations(self, request: web.Request) -> web.StreamResponse:
        return await self._audio(request, "translate")

    def _refused(self, request: web.Request) -> VoxrelayError | None:
        if self.tokens is None:
            return None
        header = request.headers.get("Authorization")
        if self.tokens.principal([("authorization", header)] if header else None) is not None:
            return None
        if header:
            return Unauthenticated("the API key (bearer token) is not accepted by this server; check --auth-token-file")
        return Unauthenticated("this server needs an API key: send `Authorization: Bearer <token>`")

    def _client(self, request: web.Request) -> str:
        """Who fair share counts: the token's name, else the caller's address."""
        if self.tokens is not None:
            header = request.headers.get("Authorization")
            name = self.tokens.principal([("authorization", header)] if header else None)
            if name is not None:
                return f"token:{name}"
        return f"peer:{request.remote or 'unknown'}"

    def _error(self, err: VoxrelayError) -> web.Response:
        self.core.metrics.invalid_input(err)
        response = error_response(err)
        return self._json_error(response)

    @staticmethod
    def _json_error(response: HttpError) -> web.Response:
        return web.json_response(response.body, status=response.status, headers=dict(response.headers))

    async def _audio(self, request: web.Request, task: str) -> web.StreamResponse:
        core = self.core
        try:
            try:
                refused = self._refused(request)
                if refused is not None:
                    raise refused
                if core.draining:
                    raise Unavailable("the server is draining; send the request to another replica or retry later")
                form = await read_form(request, core.settings.http_max_upload_bytes)
                name = "" if form.model in DEFAULT_MODEL_ALIASES else form.model
                engine = core.engine_for("model", name)
                wire_options = pb.RecognitionOptions(
                    language="" if task == "translate" else form.language,
                    task=pb.TRANSLATE if task == "translate" else pb.TRANSCRIBE,
                    initial_prompt=form.prompt,
                    word_timestamps="word" in form.granularities,
                )
                options = decode_options("", wire_options, core.settings, engine.model, engine.count_tokens)
                options = dataclasses.replace(options, temperature=form.temperature)
                audio = await asyncio.to_thread(
                    decode_upload, "file", form.data, form.filename, core.settings.max_segment_seconds
                )
            except VoxrelayError as err:
                core.metrics.request(self.name, err.grpc_code.name)
                raise
            seconds = audio.size / 16000
            recognition, _ = await recognize_utterance(
                core, engine, seconds, lambda: audio, options, front=self.name, client=self._client(request)
            )
        except VoxrelayError as err:
            log.info("%s from %s refused: %s: %s", request.path, request.remote, err.grpc_code.name, err.message)
            return self._error(err)
        body = render(
            form.response_format,
            recognition.transcript,
            task=task,
            duration=seconds,
            granularities=form.granularities,
        )
        return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPES[form.response_format]})
