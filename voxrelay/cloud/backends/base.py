"""The recognizer interface every backend implements, and its plain-data results."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from voxrelay.errors import InvalidArgument

Task = Literal["transcribe", "translate"]


def check_temperatures(field: str, value: float | tuple[float, ...]) -> None:
    """A sampling temperature, or a non-empty list of them, each in 0..1."""
    values = value if isinstance(value, tuple) else (value,)
    if not values:
        raise InvalidArgument(f"{field}: give at least one temperature (0..1)")
    for t in values:
        if not 0.0 <= t <= 1.0:
            raise InvalidArgument(f"{field}: {t:g} is out of range (0..1)")


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode one segment. ``None`` language means detect it."""

    language: str | None = None
    task: Task = "transcribe"
    beam_size: int = 5
    word_timestamps: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    # One sampling temperature (no fallback), or the temperatures to fall back through in order;
    # None = the backend's default (0, 0.2, ... 1.0: rising while the decode looks unreliable).
    temperature: float | tuple[float, ...] | None = None
    # Decode text only, without Whisper's timestamp tokens (phrases then span the whole audio).
    without_timestamps: bool = False
    # A provisional decode of a segment's audio so far (an interim result): a backend may take a
    # quicker path than its own (see backends.quick); never set for a final result.
    interim: bool = False
    # Drop hallucinated phrases at the end of the segment (see backends.guard).
    tail_guard: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= 10:
            raise InvalidArgument(f"beam_size: {self.beam_size} is out of range (1..10)")
        if self.task not in ("transcribe", "translate"):
            raise InvalidArgument(f"task: {self.task!r} is not one of transcribe, translate")
        if self.language is not None and not (2 <= len(self.language) <= 8 and self.language.isalpha()):
            raise InvalidArgument(f"language: {self.language!r} is not a language code such as 'en'")
        if self.temperature is not None:
            check_temperatures("temperature", self.temperature)

    def for_interim(self) -> DecodeOptions:
        """The cheapest decode of the same language, task and prompt, for interim text: greedy (beam 1),
        at temperature 0 without fallback, without timestamps or word timings."""
        return replace(self, beam_size=1, temperature=0.0, word_timestamps=False, without_timestamps=True, interim=True)


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Phrase:
    """One piece of Whisper's output with its own confidence signals (times in the segment)."""

    text: str
    start: float
    end: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    # The sampling temperature of the decode Whisper kept: 0 is beam search (the same audio always
    # reads the same); above 0 its temperature fallback sampled, and a rerun may read differently.
    temperature: float = 0.0


@dataclass(frozen=True)
class Transcript:
    """What a backend returns for one segment. Times are seconds from the segment's first sample."""

    text: str
    phrases: tuple[Phrase, ...]
    language: str
    language_probability: float
    words: tuple[WordTiming, ...] = field(default=())

    @property
    def avg_logprob(self) -> float:
        """Duration-weighted mean of the phrases' avg_logprob (0.0 when there are none)."""
        weights = [max(p.end - p.start, 1e-3) for p in self.phrases]
        if not weights:
            return 0.0
        return float(sum(w * p.avg_logprob for w, p in zip(weights, self.phrases, strict=True)) / sum(weights))

    @property
    def no_speech_prob(self) -> float:
        """The highest no_speech_prob of the phrases (1.0 when Whisper produced nothing)."""
        return max((p.no_speech_prob for p in self.phrases), default=1.0)

    @property
    def compression_ratio(self) -> float:
        return max((p.compression_ratio for p in self.phrases), default=0.0)

    @property
    def temperature(self) -> float:
        """The highest sampling temperature of the phrases (0.0: every phrase came from beam search)."""
        return max((p.temperature for p in self.phrases), default=0.0)

    @property
    def start(self) -> float:
        return self.phrases[0].start if self.phrases else 0.0

    @property
    def end(self) -> float:
        return self.phrases[-1].end if self.phrases else 0.0


@dataclass(frozen=True)
class ModelDescriptor:
    """Name, content version and runtime of a loaded model."""

    name: str
    version: str
    backend: str
    multilingual: bool
    compute: str


@runtime_checkable
class Backend(Protocol):
    """A loaded model. ``transcribe`` is blocking and thread-safe; callers run it off the event loop."""

    @property
    def model(self) -> ModelDescriptor: ...

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """Recognise ``audio`` (float32, mono, 16 kHz, in [-1, 1])."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt in the model's tokenizer (to bound initial_prompt and hotwords)."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...
