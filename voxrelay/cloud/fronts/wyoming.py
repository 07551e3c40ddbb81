"""A Wyoming protocol server (speech to text), so that Home Assistant can use the recognizer.

Home Assistant's Wyoming integration connects to ``tcp://HOST:PORT`` and speaks JSON-line events:
``describe`` → ``info`` (the served models and their languages); ``transcribe`` (optional: model name,
language) then ``audio-start`` / ``audio-chunk``… / ``audio-stop`` → ``transcript``. The audio of one
utterance goes through the same unary path as gRPC ``Recognize`` (admission, limits, metrics).

Bad input never closes the connection: audio before ``audio-start``, a format the server cannot
take, or an utterance over the length limit gets an ``error`` event (with a code) and the server goes on
with the next event. Wyoming carries no token; see ``ServerSettings.wyoming_trusted``.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from voxrelay import __version__
from voxrelay.cloud.audio import WireFormat
from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.unary import check_length, recognize_utterance
from voxrelay.cloud.wire import decode_options
from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.protos import pb

log = logging.getLogger(__name__)

WHISPER = Attribution(name="OpenAI Whisper", url="https://github.com/openai/whisper")
VOXRELAY = Attribution(name="voxrelay", url="https://github.com/voxrelay/voxrelay")
WIDTHS = {2: "LINEAR16"}  # bytes per sample → wire encoding


def languages(model: ModelDescriptor) -> list[str]:
    """Languages a model can recognise: English for .en models, Whisper's list for multilingual ones."""
    if not model.multilingual:
        return ["en"]
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:  # pragma: no cover - the cloud extra brings faster-whisper
        return []
    return list(_LANGUAGE_CODES)


def describe(core: ServiceCore) -> Info:
    models = [
        AsrModel(
            name=name,
            attribution=WHISPER,
            installed=True,
            description=f"Whisper {engine.model.name} ({engine.model.backend}, {engine.model.compute})",
            version=engine.model.version,
            languages=languages(engine.model),
        )
        for name, engine in core.engines.items()
    ]
    program = AsrProgram(
        name="voxrelay",
        attribution=VOXRELAY,
        installed=True,
        description="voxrelay recognizer (Whisper)",
        version=__version__,
        models=models,
    )
    return Info(asr=[program])


class _Utterance:
    """The audio of one ``audio-start`` … ``audio-stop``."""

    def __init__(self, fmt: WireFormat) -> None:
        self.fmt = fmt
        self.audio = bytearray()


class WyomingHandler(AsyncEventHandler):
    """One client connection: its requested model and language, and the utterance being received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, core: ServiceCore) -> None:
        super().__init__(reader, writer)
        self.core = core
        self.model = ""
        self.language = ""
        self.utterance: _Utterance | None = None
        self.peer = str(writer.get_extra_info("peername"))
        peername = writer.get_extra_info("peername")
        # Wyoming has no identity of its own: one address is one client for fair share.
        self.client = f"peer:{peername[0] if isinstance(peername, tuple) and peername else 'unknown'}"

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._handle(event)
        except VoxrelayError as err:
            self.core.metrics.invalid_input(err)
            log.info("wyoming %s: %s: %s", self.peer, err.grpc_code.name, err.message)
            await self.write_event(Error(text=err.message, code=err.grpc_code.name.lower()).event())
        return True  # bad input never ends the connection

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(describe(self.core).event())
        elif Transcribe.is_type(event.type):
            request = Transcribe.from_event(event)
            self.model = request.name or ""
            self.language = request.language or ""
            self.core.engine_for("transcribe.name", self.model)  # an unknown model is refused now
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self.utterance = None
            self.utterance = _Utterance(self._format("audio-start", start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            self._chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            utterance, self.utterance = self.utterance, None
            if utterance is None:
                self._refuse("audio-stop: no audio-start before it; send audio-start, audio-chunk…, audio-stop")
            assert utterance is not None
            await self._recognize(utterance)
        else:
            log.debug("wyoming %s: ignoring a %s event", self.peer, event.type)

    def _refuse(self, message: str) -> None:
        self.core.metrics.request("wyoming", "INVALID_ARGUMENT")
        raise InvalidArgument(message)

    def _format(self, field: str, rate: int, width: int, channels: int) -> WireFormat:
        encoding = WIDTHS.get(width)
        if encoding is None:
            self._refuse(f"{field}.width: {width} bytes per sample is not supported (accepted: 2, 16-bit PCM)")
        assert encoding is not None
        settings = self.core.settings
        try:
            return WireFormat.validate(
                field, encoding, rate, channels, settings.min_sample_rate_hz, settings.max_sample_rate_hz
            )
        except VoxrelayError:
            self.core.metrics.request("wyoming", "INVALID_ARGUMENT")
            raise

    def _chunk(self, chunk: AudioChunk) -> None:
        utterance = self.utterance
        if utterance is None:
            self._refuse("audio-chunk: audio before audio-start; send audio-start first (this chunk is dropped)")
        assert utterance is not None
        fmt = self._format("audio-chunk", chunk.rate, chunk.width, chunk.channels)
        if fmt != utterance.fmt:
            self.utterance = None
            self._refuse(
                f"audio-chunk: {fmt.describe()} differs from audio-start's {utterance.fmt.describe()}; "
                "the utterance is dropped"
            )
        if len(chunk.audio) % fmt.frame_bytes:
            self._refuse(f"audio-chunk: {len(chunk.audio)} bytes is not a whole number of frames ({fmt.describe()})")
        utterance.audio += chunk.audio
        seconds = fmt.seconds(len(utterance.audio))
        try:
            check_length(self.core, "audio-chunk", seconds, "the utterance is dropped; send shorter commands")
        except VoxrelayError as err:
            self.utterance = None
            self.core.metrics.request("wyoming", err.grpc_code.name)
            raise

    async def _recognize(self, utterance: _Utterance) -> None:
        core = self.core
        fmt = utterance.fmt
        data = bytes(utterance.audio)
        try:
            if not data:
                raise InvalidArgument("audio-stop: the utterance holds no audio; send audio-chunk events first")
            engine = core.engine_for("transcribe.name", self.model)
            options = decode_options(
                "transcribe", pb.RecognitionOptions(language=self.language), core.settings, engine.model
            )
        except VoxrelayError as err:
            core.metrics.request("wyoming", err.grpc_code.name)
            raise
        _, result = await recognize_utterance(
            core,
            engine,
            fmt.seconds(len(data)),
            lambda: fmt.decode("audio", data),
            options,
            front="wyoming",
            client=self.client,
        )
        await self.write_event(Transcript(text=result.text, language=result.language or None).event())


class WyomingFront:
    """The Wyoming TCP server; ``stop`` closes the listener and the connections."""

    name = "wyoming"

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self._server: AsyncTcpServer | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    async def start(self, host: str, port: int) -> int:
        server = AsyncTcpServer(host, port)
        try:
            await server.start(partial(WyomingHandler, core=self.core))
        except OSError as err:
            raise VoxrelayError(f"--wyoming-port: cannot listen on {host}:{port}: {err.strerror or err}") from err
        self._server = server
        listener: Any = server._server
        sockets = listener.sockets if listener is not None else ()
        self._port = sockets[0].getsockname()[1] if sockets else port
        return self._port

    async def stop(self, grace: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await server.stop()
        listener = server._server
        if listener is not None:
            listener.close()
            try:
                await asyncio.wait_for(listener.wait_closed(), timeout=max(0.5, grace))
            except asyncio.TimeoutError:
                log.warning("wyoming: connections still open after %.1f s", grace)
