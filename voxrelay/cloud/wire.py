"""Conversions between the protobuf messages and the service's plain dataclasses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voxrelay.cloud.audio import WireFormat
from voxrelay.cloud.backends.base import DecodeOptions, ModelDescriptor, Transcript
from voxrelay.cloud.engine import InferenceEngine, Recognition
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument, shown
from voxrelay.languages import LANGUAGE_CODES, unknown_language
from voxrelay.protos import pb


def _enum_name(enum: Any, value: int) -> str:
    """The name of an enum value; proto3 enums are open, so an unknown number arrives as itself."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return f"{value} (unknown)"


def wire_format(field: str, fmt: pb.AudioFormat, settings: ServerSettings) -> WireFormat:
    return WireFormat.validate(
        field,
        _enum_name(pb.AudioEncoding, fmt.encoding),
        fmt.sample_rate_hz,
        fmt.channels,
        settings.min_sample_rate_hz,
        settings.max_sample_rate_hz,
    )


# Whisper's decoder context is 448 tokens and the prompt gets at most half of it: the start-of-previous
# token and 223 tokens of text (faster-whisper and openai-whisper cut anything longer from the front).
MAX_PROMPT_TOKENS = 223
# Characters beyond which a prompt is refused without tokenizing it (no tokenizer makes fewer than 1
# token per 8 characters of text).
MAX_PROMPT_CHARACTERS = MAX_PROMPT_TOKENS * 8


def check_prompt(field: str, options: pb.RecognitionOptions, count_tokens: Callable[[str], int] | None) -> None:
    """initial_prompt and hotwords together within what Whisper's prompt can hold (``field``: the prefix
    of the names in messages, with its dot)."""
    given = [("initial_prompt", options.initial_prompt), ("hotwords", options.hotwords)]
    characters = sum(len(text) for _, text in given)
    if characters > MAX_PROMPT_CHARACTERS:
        raise InvalidArgument(
            f"{field}initial_prompt: {characters} characters of initial_prompt and hotwords are far over Whisper's "
            f"prompt of {MAX_PROMPT_TOKENS} tokens; shorten them"
        )
    if count_tokens is None or not characters:
        return
    counts = {name: count_tokens(text) for name, text in given if text}
    total = sum(counts.values())
    if total > MAX_PROMPT_TOKENS:
        parts = " + ".join(f"{name} {n}" for name, n in counts.items())
        raise InvalidArgument(
            f"{field}initial_prompt: {total} tokens ({parts}) is over Whisper's prompt limit of "
            f"{MAX_PROMPT_TOKENS} tokens for initial_prompt and hotwords together; the model would ignore the "
            "rest, so shorten them"
        )


def decode_options(
    field: str,
    options: pb.RecognitionOptions,
    settings: ServerSettings,
    model: ModelDescriptor,
    count_tokens: Callable[[str], int] | None = None,
) -> DecodeOptions:
    """Validate RecognitionOptions against the server's defaults and the chosen model (``count_tokens``:
    the model's tokenizer, to bound the prompt).

    ``field`` prefixes the names in error messages (``options`` → ``options.language: ...``; "" → ``language: ...``).
    """
    field = f"{field}." if field else ""
    language = options.language.strip().lower() or None
    if language is not None and not (2 <= len(language) <= 8 and language.isalpha()):
        raise InvalidArgument(f"{field}language: {shown(options.language)} is not a language code such as 'en'")
    if language is not None and language not in LANGUAGE_CODES:
        raise InvalidArgument(f"{field}language: {unknown_language(language)}")
    if language not in (None, "en") and not model.multilingual:
        raise InvalidArgument(
            f"{field}language: {language!r} cannot be recognised by {model.name}, which is English-only; "
            "use a multilingual model (e.g. base)"
        )
    if options.beam_size > 10:
        raise InvalidArgument(f"{field}beam_size: {options.beam_size} is out of range (1..10; 0 = default)")
    if options.task not in (pb.TASK_UNSPECIFIED, pb.TRANSCRIBE, pb.TRANSLATE):
        raise InvalidArgument(
            f"{field}task: {_enum_name(pb.Task, options.task)} is not a task (TRANSCRIBE or TRANSLATE)"
        )
    if options.task == pb.TRANSLATE and not model.multilingual:
        raise InvalidArgument(f"{field}task: TRANSLATE needs a multilingual model; {model.name} is English-only")
    check_prompt(field, options, count_tokens)
    return DecodeOptions(
        language=language,
        task="translate" if options.task == pb.TRANSLATE else "transcribe",
        beam_size=options.beam_size or settings.beam_size,
        word_timestamps=options.word_timestamps,
        initial_prompt=options.initial_prompt or None,
        hotwords=options.hotwords or None,
        temperature=settings.temperature,
        tail_guard=settings.tail_guard,
    )


def model_info(model: ModelDescriptor) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=model.name,
        version=model.version,
        backend=model.backend,
        multilingual=model.multilingual,
        compute=model.compute,
    )


def inference_info(settings: ServerSettings, engine: InferenceEngine, cores: int) -> pb.InferenceInfo:
    """How ``engine`` (the default model's) runs: workers × threads and batching."""
    return pb.InferenceInfo(
        workers=engine.workers,
        cpu_threads=engine.cpu_threads,
        max_batch=engine.max_batch,
        max_wait_ms=engine.max_wait * 1000,
        cores=cores,
    )


def limits(settings: ServerSettings) -> pb.Limits:
    return pb.Limits(
        max_segment_seconds=settings.max_segment_seconds,
        max_chunk_bytes=settings.max_chunk_bytes,
        max_concurrent_streams=settings.max_concurrent_streams,
        min_sample_rate_hz=settings.min_sample_rate_hz,
        max_sample_rate_hz=settings.max_sample_rate_hz,
        max_queued_audio_seconds=settings.max_queued_audio_seconds,
        max_pending_segments=settings.max_pending_segments,
        stream_idle_seconds=settings.stream_idle_seconds,
        max_client_streams=settings.max_client_streams,
        max_queued_work_seconds=settings.max_queued_work_seconds,
        max_client_queued_work_seconds=settings.max_client_queued_work_seconds,
        min_audio_rate=settings.min_audio_rate,
        max_prompt_tokens=MAX_PROMPT_TOKENS,
    )


def recognition_result(
    recognition: Recognition,
    *,
    segment_id: str,
    offset: float,
    audio_seconds: float,
    model: ModelDescriptor,
    slot: str,
    deployment: str = "",
) -> pb.RecognitionResult:
    """The result message of one segment; times are moved into the session's timeline and clamped to
    the segment's audio (``offset`` .. ``offset + audio_seconds``): Whisper may timestamp a phrase past
    the audio it was given, and such a time would make cues overlap the next segment's. ``slot``: the
    role of the ``deployment`` that produced it."""
    t: Transcript = recognition.transcript
    last = max(0.0, audio_seconds)

    def at(seconds: float) -> float:
        return offset + min(max(0.0, seconds), last)

    return pb.RecognitionResult(
        segment_id=segment_id,
        text=t.text,
        start_seconds=at(t.start),
        end_seconds=at(t.end),
        words=[
            pb.Word(
                word=w.word,
                start_seconds=at(w.start),
                end_seconds=at(w.end),
                probability=w.probability,
            )
            for w in t.words
        ],
        phrases=[
            pb.Phrase(
                text=p.text,
                start_seconds=at(p.start),
                end_seconds=at(p.end),
                avg_logprob=p.avg_logprob,
                no_speech_prob=p.no_speech_prob,
                compression_ratio=p.compression_ratio,
                temperature=p.temperature,
            )
            for p in t.phrases
        ],
        language=t.language,
        language_probability=t.language_probability,
        avg_logprob=t.avg_logprob,
        no_speech_prob=t.no_speech_prob,
        compression_ratio=t.compression_ratio,
        temperature=t.temperature,
        model=model_info(model),
        slot=slot,
        deployment=deployment,
        timings=pb.Timings(
            queue_wait_seconds=recognition.queue_wait,
            inference_seconds=recognition.inference,
            audio_seconds=audio_seconds,
            batch_size=recognition.batch_size,
        ),
    )
