"""The edge's plain-data view of a recognizer result (protobuf stays in uplink.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class SegmentResult:
    """The final result of one segment as the edge sees it (or, ``final`` False, an interim one: the
    text of the segment's audio so far while it is spoken). Times are seconds in the source."""

    segment_id: str
    sequence: int
    text: str
    start: float
    end: float
    language: str = ""
    language_probability: float = 0.0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    # Whisper's sampling temperature for this text: 0 = beam search (reproducible), above 0 = its
    # temperature fallback sampled (a second recognition may read differently).
    temperature: float = 0.0
    model: str = ""
    model_version: str = ""
    backend: str = ""
    slot: str = ""
    # The server's deployment that produced it (slot is its role), and whether a person is to check it.
    deployment: str = ""
    needs_review: bool = False
    review_id: str = ""
    audio_seconds: float = 0.0
    queue_wait_seconds: float = 0.0
    inference_seconds: float = 0.0
    # From the end of speech (when the audio of the segment's last speech frame reached the edge) to this
    # result at the edge: what the user waits after they stop talking. Its last part, from the segment's
    # close at the segmenter (the endpoint pause and the VAD's lag come before it), is close_to_result_seconds.
    latency_seconds: float = 0.0
    close_to_result_seconds: float = 0.0
    # Decoded by the server during the pause before the segment's end (the edge reported the pause):
    # the endpoint wait then overlapped the inference.
    speculative: bool = False
    words: tuple[Word, ...] = field(default=())
    # Set when the server could not recognise the segment ("CODE: message"); text is then empty.
    error: str | None = None
    duplicate: bool = False
    # False for an interim result (only when asked for); the segment's final result replaces it.
    final: bool = True

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The JSON-lines object of this result (``extra`` fields such as ``file`` come first)."""
        data = asdict(self)
        data["words"] = [asdict(w) for w in self.words] if self.words else []
        if not self.words:
            del data["words"]
        if self.error is None:
            del data["error"]
        if not self.needs_review:
            del data["review_id"]
        del data["final"]  # sinks that show interim results mark both kinds (see JsonSink)
        for key in (
            "start",
            "end",
            "audio_seconds",
            "queue_wait_seconds",
            "inference_seconds",
            "latency_seconds",
            "close_to_result_seconds",
        ):
            data[key] = round(data[key], 3)
        for key in ("language_probability", "avg_logprob", "no_speech_prob", "compression_ratio", "temperature"):
            data[key] = round(data[key], 4)
        return {**extra, **data}
