"""The OpenAI audio API's response formats and error shape, from the service's plain results.

``json`` → ``{"text"}``; ``text`` → the text; ``srt``/``vtt`` → subtitles, one cue per phrase;
``verbose_json`` → task, language, duration, text, ``segments`` (with Whisper's confidence signals) and,
with the ``word`` timestamp granularity, ``words``. Errors are ``{"error": {"message", "type", "param",
"code"}}`` with the HTTP status that matches the service error's gRPC code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc

from voxrelay.cloud.backends.base import Transcript
from voxrelay.errors import Overloaded, VoxrelayError

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("segment", "word")
CONTENT_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}

_PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_\[\]]{0,40}):\s")

# gRPC code of a service error → (HTTP status, OpenAI error type, OpenAI error code).
_HTTP: dict[grpc.StatusCode, tuple[int, str, str | None]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", None),
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_request_error", "invalid_api_key"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "invalid_request_error", None),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error", "model_not_found"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (413, "invalid_request_error", "request_too_large"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error", "unavailable"),
}


@dataclass(frozen=True)
class HttpError:
    """An error response: status, body, and headers such as Retry-After."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def error_response(err: VoxrelayError, param: str | None = None) -> HttpError:
    """OpenAI's error shape for a service error; ``param`` defaults to the field the message names."""
    code: str | None
    if isinstance(err, Overloaded):
        status, kind, code = 429, "rate_limit_error", "server_busy"
        headers: tuple[tuple[str, str], ...] = (("Retry-After", str(max(1, round(err.retry_after)))),)
    else:
        status, kind, code = _HTTP.get(err.grpc_code, (500, "server_error", None))
        headers = (("Retry-After", "2"),) if status == 503 else ()
    if param is None:
        match = _PARAM.match(err.message)
        param = match.group(1) if match else None
    body: dict[str, Any] = {"error": {"message": err.message, "type": kind, "param": param, "code": code}}
    return HttpError(status, body, headers)


def _srt_time(seconds: float) -> timedelta:
    return timedelta(seconds=max(0.0, seconds))


def _vtt_time(seconds: float) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    cues = [(p.start, max(p.end, p.start + 0.001), p.text) for p in transcript.phrases if p.text.strip()]
    return cues


def render(
    fmt: str,
    transcript: Transcript,
    *,
    task: str,
    duration: float,
    granularities: Sequence[str],
) -> str:
    """The response body of ``fmt`` for one transcript."""
    if fmt == "json":
        return json.dumps({"text": transcript.text}, ensure_ascii=False)
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "srt":
        import srt

        subtitles = [
            srt.Subtitle(index=i, start=_srt_time(a), end=_srt_time(b), content=text)
            for i, (a, b, text) in enumerate(_cues(transcript), 1)
        ]
        return str(srt.compose(subtitles))
    if fmt == "vtt":
        import webvtt

        captions = [webvtt.Caption(_vtt_time(a), _vtt_time(b), text) for a, b, text in _cues(transcript)]
        return str(webvtt.WebVTT(captions=captions).content)
    body: dict[str, object] = {
        "task": task,
        "language": transcript.language,
        "duration": round(duration, 3),
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": round(p.start, 3),
                "end": round(p.end, 3),
                "text": p.text,
                "tokens": [],
                "temperature": p.temperature,
                "avg_logprob": p.avg_logprob,
                "compression_ratio": p.compression_ratio,
                "no_speech_prob": p.no_speech_prob,
            }
            for i, p in enumerate(transcript.phrases)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for w in transcript.words
        ]
    return json.dumps(body, ensure_ascii=False)
