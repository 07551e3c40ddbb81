"""What the recognizer is fuzzed with, shared by tests/test_fuzz.py and scripts/fuzz_server.py.

Three kinds of case, each sent to a running server over a real channel:

* ``stream``: a sequence of StreamRequest messages built from the contract's grammar, in any order,
  with odd values (empty, huge, unprintable, NaN, negative, unsupported formats, wrong frame sizes);
* ``recognize``: a RecognizeRequest with any format, options and audio bytes;
* ``raw``: arbitrary bytes on each method path (``/voxrelay.v1.Recognizer/{Stream,Recognize,GetInfo}``),
  the Stream path with several raw messages.

:func:`run_case` sends one case and returns the status code name it ended with. The server must
answer every case with one of :data:`ACCEPTABLE` codes and a message, and keep answering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from hypothesis import strategies as st

from voxrelay.protos import SERVICE_NAME, pb

# What a fuzzed call may end with. INTERNAL and UNKNOWN would be bugs; UNAVAILABLE a dead server.
ACCEPTABLE = frozenset({"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "NOT_FOUND"})
METHODS = ("Stream", "Recognize", "GetInfo")
CALL_TIMEOUT = 60.0


def _text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.sampled_from(["", "en", "de", "tiny.en", "base", "dev", "s", "x" * 300, "a\x00b", "\u202e\u0301"]),
    )


_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 0.5, -1.0, 1e308, float("nan")]),
)
_rates = st.one_of(st.sampled_from([0, 8000, 16000, 44100, 48000]), st.integers(0, 2**32 - 1))
_any_formats = st.builds(
    pb.AudioFormat,
    encoding=st.integers(0, 3),
    sample_rate_hz=_rates,
    channels=st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)),
)
_valid_formats = st.builds(
    pb.AudioFormat,
    encoding=st.sampled_from([0, 1, 2]),
    sample_rate_hz=st.sampled_from([0, 8000, 16000, 44100]),
    channels=st.sampled_from([0, 1, 2]),
)
# Valid values more often than chance would give, so that the states behind validation get reached.
formats = st.one_of(st.just(pb.AudioFormat()), _valid_formats, _any_formats)
_any_options = st.builds(
    pb.RecognitionOptions,
    language=_text(10),
    model=st.sampled_from(["", "tiny.en", "nope", "x" * 200]),
    word_timestamps=st.booleans(),
    initial_prompt=st.one_of(st.just(""), _text(), st.just("p" * 2500)),
    hotwords=st.one_of(st.just(""), _text()),
    beam_size=st.one_of(st.integers(0, 12), st.integers(0, 2**32 - 1)),
    task=st.integers(0, 4),
)
_valid_options = st.builds(
    pb.RecognitionOptions,
    language=st.sampled_from(["", "en"]),
    beam_size=st.integers(0, 10),
    word_timestamps=st.booleans(),
    task=st.sampled_from([0, 1]),
)
options = st.one_of(st.just(pb.RecognitionOptions()), _valid_options, _any_options)
# Mostly small whole frames, sometimes not a whole frame, sometimes over the 256 KiB chunk limit.
audio = st.one_of(
    st.binary(max_size=1600).map(lambda b: b[: len(b) // 8 * 8]),
    st.binary(max_size=2000),
    st.binary(min_size=1, max_size=9).map(lambda b: b * 3),
    st.just(bytes(300_000)),
)
configs = st.one_of(
    st.builds(pb.SessionConfig, device_id=st.just("fuzz"), session_id=st.just("fuzz"), format=_valid_formats),
    st.builds(
        pb.SessionConfig,
        device_id=_text(),
        session_id=_text(),
        format=formats,
        options=options,
        client=_text(),
    ),
)
# A few segment ids only: a resent id is answered from the result cache, which keeps the fuzz fast.
_segment_ids = st.one_of(st.sampled_from(["fuzz/s/0", "fuzz/s/1", "fuzz/s/2"]), _text())
_start = st.builds(
    lambda s: pb.StreamRequest(start=s),
    st.builds(pb.SegmentStart, segment_id=_segment_ids, sequence=st.integers(0, 2**64 - 1), offset_seconds=_floats),
)
_chunk = st.builds(lambda a: pb.StreamRequest(audio=pb.AudioChunk(audio=a)), audio)
_end = st.builds(
    lambda e: pb.StreamRequest(end=e),
    st.builds(
        pb.SegmentEnd,
        segment_id=st.one_of(st.just(""), _segment_ids),
        vad=st.builds(pb.VadStats, vad=_text(8), speech_ratio=st.floats(width=32)),
    ),
)
stream_requests = st.one_of(
    st.builds(lambda c: pb.StreamRequest(config=c), configs), _start, _chunk, _end, st.just(pb.StreamRequest())
)
_segment = st.tuples(_start, st.lists(_chunk, max_size=3), _end).map(lambda t: [t[0], *t[1], t[2]])
_well_formed = st.tuples(st.builds(lambda c: pb.StreamRequest(config=c), configs), st.lists(_segment, max_size=3)).map(
    lambda t: [t[0], *(m for segment in t[1] for m in segment)]
)
streams = st.one_of(
    st.lists(stream_requests, min_size=1, max_size=10),
    _well_formed,
    # a well-formed stream with one message anywhere replaced by any other
    st.tuples(_well_formed, stream_requests, st.integers(0, 100)).map(
        lambda t: [*t[0][: t[2] % len(t[0])], t[1], *t[0][t[2] % len(t[0]) + 1 :]]
    ),
)
recognize_requests = st.builds(pb.RecognizeRequest, format=formats, options=options, audio=audio)
raw_cases = st.tuples(st.sampled_from(METHODS), st.lists(st.binary(max_size=600), min_size=1, max_size=4))


@dataclass(frozen=True)
class Outcome:
    kind: str
    code: str
    details: str


def _code(err: grpc.RpcError) -> tuple[str, str]:
    return err.code().name, err.details() or ""  # type: ignore[attr-defined]


def run_stream(channel: grpc.Channel, requests: Sequence[pb.StreamRequest]) -> Outcome:
    call = channel.stream_stream(
        f"/{SERVICE_NAME}/Stream",
        request_serializer=pb.StreamRequest.SerializeToString,
        response_deserializer=pb.StreamResponse.FromString,
    )
    try:
        for _ in call(iter(requests), timeout=CALL_TIMEOUT):
            pass
    except grpc.RpcError as err:
        return Outcome("stream", *_code(err))
    return Outcome("stream", "OK", "")


def run_recognize(channel: grpc.Channel, request: pb.RecognizeRequest) -> Outcome:
    call = channel.unary_unary(
        f"/{SERVICE_NAME}/Recognize",
        request_serializer=pb.RecognizeRequest.SerializeToString,
        response_deserializer=pb.RecognitionResult.FromString,
    )
    try:
        call(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as err:
        return Outcome("recognize", *_code(err))
    return Outcome("recognize", "OK", "")


def run_raw(channel: grpc.Channel, method: str, messages: Sequence[bytes]) -> Outcome:
    path = f"/{SERVICE_NAME}/{method}"
    try:
        if method == "Stream":
            for _ in channel.stream_stream(path)(iter(messages), timeout=CALL_TIMEOUT):
                pass
        else:
            channel.unary_unary(path)(messages[0], timeout=CALL_TIMEOUT)
    except grpc.RpcError as err:
        return Outcome(f"raw {method}", *_code(err))
    return Outcome(f"raw {method}", "OK", "")


def run_case(channel: grpc.Channel, kind: str, case: Any) -> Outcome:
    if kind == "stream":
        return run_stream(channel, case)
    if kind == "recognize":
        return run_recognize(channel, case)
    method, messages = case
    return run_raw(channel, method, messages)


def check(outcome: Outcome) -> None:
    """Raise AssertionError for an outcome that is a bug."""
    assert outcome.code in ACCEPTABLE, f"{outcome.kind}: {outcome.code}: {outcome.details}"
    if outcome.code != "OK":
        assert outcome.details.strip(), f"{outcome.kind}: {outcome.code} without a message"
