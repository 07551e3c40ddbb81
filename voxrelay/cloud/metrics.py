"""The recognizer's Prometheus metrics, defined once against an injected registry.

Three kinds, per the pipeline's monitoring design:

- **software**: inference time, queue wait, real-time factor, segments, streams, queue depth and
  in-flight gauges (process CPU and memory come from a ``ProcessCollector`` on the same registry);
- **input**: audio seconds received, invalid inputs by status code and reason;
- **output**: Whisper's own confidence signals (avg_logprob, no_speech_prob, compression ratio), empty
  transcripts, words per second, detected language and likely hallucinations.

Labels stay low-cardinality: model, backend, slot, code, reason, language; never a device or segment id.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.errors import VoxrelayError
from voxrelay.protos import pb

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
LOGPROB_BUCKETS = (-2.0, -1.5, -1.0, -0.8, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0)
PROBABILITY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
COMPRESSION_BUCKETS = (0.5, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 3.0, 4.0)
WPS_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
SECONDS_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 45.0, 60.0)

# Whisper's own thresholds (openai-whisper and faster-whisper defaults).
NO_SPEECH_THRESHOLD = 0.6
COMPRESSION_RATIO_THRESHOLD = 2.4

_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]{0,47}):\s")


def error_reason(err: VoxrelayError) -> str:
    """A short, bounded label for a refused request: the field the message names, else the error kind.

    Messages are server-made templates ("config.format.sample_rate_hz: 1000 is not supported..."),
    so the field prefix comes from a small fixed set; messages without one use the class name.
    """
    match = _FIELD.match(err.message)
    if match:
        return match.group(1).lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(err).__name__).lower()


class EngineLike(Protocol):
    @property
    def model(self) -> ModelDescriptor: ...

    @property
    def queued(self) -> int: ...

    @property
    def running(self) -> int: ...

    on_batch: Callable[[int, float, Any], None] | None


class CloudMetrics:
    """Every metric of one recognizer service, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        model = ["model", "backend"]
        # Software.
        self.segments = Counter(
            "voxrelay_asr_segments_total",
            "Segments (Stream) and utterances (Recognize) recognised",
            [*model, "slot"],
            registry=registry,
        )
        self.inference = Histogram(
            "voxrelay_asr_inference_seconds",
            "Time inside the model per segment",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "voxrelay_asr_queue_wait_seconds",
            "From a segment's end (all audio received) to the start of its inference: decoding and "
            "waiting for a worker",
            model,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.real_time_factor = Histogram(
            "voxrelay_asr_real_time_factor",
            "Inference time divided by audio duration per segment (below 1 is faster than real time)",
            model,
            buckets=RTF_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "voxrelay_asr_queue_depth", "Segments waiting for an inference worker", ["model"], registry=registry
        )
        self.in_flight = Gauge("voxrelay_asr_in_flight", "Segments inside the model now", ["model"], registry=registry)
        self.batch_size = Histogram(
            "voxrelay_asr_batch_size",
            "Segments decoded together in one model call, by priority (final, shadow, interim)",
            ["model", "priority"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "voxrelay_asr_batch_wait_seconds",
            "How long a batch's first segment waited in the queue and for the batch to fill",
            ["model", "priority"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active_streams = Gauge("voxrelay_asr_active_streams", "Open Stream calls", registry=registry)
        self.interim = Counter(
            "voxrelay_asr_interim_total",
            "Interim recognitions of open segments by outcome: sent (new text went out), unchanged (the same "
            "text as the last one, or none), dropped (shed unrun: final work was waiting, or its deadline "
            "passed), stale (the segment ended first), failed",
            [*model, "outcome"],
            registry=registry,
        )
        self.interim_inference = Counter(
            "voxrelay_asr_interim_inference_seconds_total",
            "Time inside the model spent on interim recognitions (their share of the batches they ran in)",
            model,
            registry=registry,
        )
        self.speculative = Counter(
            "voxrelay_asr_speculative_total",
            "Speculative recognitions of segments during a pause, by outcome: used (it became the final "
            "result), wasted (speech resumed after it ran), withdrawn (dropped unrun: speech resumed, or "
            "the end came first and the final went in as usual), skipped (not started: the server was busy "
            "the audio came faster than real time, or the stream's speculations were mostly wasted), failed",
            [*model, "outcome"],
            registry=registry,
        )
        self.speculative_inference = Counter(
            "voxrelay_asr_speculative_inference_seconds_total",
            "Time inside the model spent on speculative recognitions, by outcome (used or wasted)",
            [*model, "outcome"],
            registry=registry,
        )
        self.requests = Counter(
            "voxrelay_asr_requests_total",
            "Single-utterance requests by front (grpc Recognize, http, wyoming) and status code (OK or the "
            "gRPC code of the refusal, whichever front it came through)",
            ["front", "code"],
            registry=registry,
        )
        # Input.
        self.audio = Counter(
            "voxrelay_asr_audio_received_seconds_total",
            "Seconds of audio received (Stream chunks and Recognize utterances)",
            registry=registry,
        )
        self.segment_audio = Histogram(
            "voxrelay_asr_segment_audio_seconds",
            "Audio duration of each recognised segment",
            model,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.invalid = Counter(
            "voxrelay_asr_invalid_inputs_total",
            "Requests refused with an error status, by gRPC code and the field or kind of problem",
            ["code", "reason"],
            registry=registry,
        )
        # Output.
        self.empty = Counter(
            "voxrelay_asr_empty_transcripts_total",
            "Results with no text (the model heard no speech)",
            model,
            registry=registry,
        )
        self.avg_logprob = Histogram(
            "voxrelay_asr_avg_logprob",
            "Duration-weighted mean token log probability of results with text (higher is more confident)",
            model,
            buckets=LOGPROB_BUCKETS,
            registry=registry,
        )
        self.no_speech_prob = Histogram(
            "voxrelay_asr_no_speech_prob",
            "Whisper's probability that a segment holds no speech (highest over its phrases)",
            model,
            buckets=PROBABILITY_BUCKETS,
            registry=registry,
        )
        self.compression_ratio = Histogram(
            "voxrelay_asr_compression_ratio",
            "gzip compression ratio of the text (above 2.4: repetitive, likely hallucinated)",
            model,
            buckets=COMPRESSION_BUCKETS,
            registry=registry,
        )
        self.words_per_second = Histogram(
            "voxrelay_asr_words_per_second",
            "Words recognised per second of segment audio (results with text)",
            model,
            buckets=WPS_BUCKETS,
            registry=registry,
        )
        self.language = Counter(
            "voxrelay_asr_detected_language_total",
            "Results by detected (or requested) language",
            ["model", "language"],
            registry=registry,
        )
        self.hallucinations = Counter(
            "voxrelay_asr_likely_hallucinations_total",
            "Results with text that is likely hallucinated: reason=repetitive (compression ratio above "
            "2.4) or non_speech (text on a segment the model rates as non-speech, no_speech_prob >= 0.6)",
            ["model", "reason"],
            registry=registry,
        )

    def track(self, engines: Mapping[str, EngineLike], active_streams: Callable[[], float]) -> None:
        """Read queue depth, in-flight segments and open streams from the service at scrape time, and
        record the batches each engine runs."""
        for name, engine in engines.items():
            self.track_engine(name, engine)
        self.active_streams.set_function(active_streams)

    def track_engine(self, name: str, engine: Any) -> None:
        """Queue depth and in-flight gauges and batch records of one engine (a deployment loaded at run
        time, too)."""
        engine.on_batch = lambda size, wait, priority, n=name: self.batch(n, size, wait, priority.name.lower())
        self.queue_depth.labels(model=name).set_function(lambda e=engine: e.queued)  # type: ignore[misc]
        self.in_flight.labels(model=name).set_function(lambda e=engine: e.running)  # type: ignore[misc]
        # Series that start at zero, so that a scrape shows them before they move.
        self.empty.labels(model=engine.model.name, backend=engine.model.backend)
        for reason in ("repetitive", "non_speech"):
            self.hallucinations.labels(model=engine.model.name, reason=reason)

    def untrack_engine(self, name: str) -> None:
        for gauge in (self.queue_depth, self.in_flight):
            with contextlib.suppress(KeyError):
                gauge.remove(name)

    def batch(self, model: str, size: int, wait: float, priority: str) -> None:
        self.batch_size.labels(model=model, priority=priority).observe(size)
        self.batch_wait.labels(model=model, priority=priority).observe(max(0.0, wait))

    def interim_done(self, model: ModelDescriptor, outcome: str, inference: float = 0.0) -> None:
        """One interim recognition ended with ``outcome`` (see ``voxrelay_asr_interim_total``)."""
        self.interim.labels(model=model.name, backend=model.backend, outcome=outcome).inc()
        if inference > 0:
            self.interim_inference.labels(model=model.name, backend=model.backend).inc(inference)

    def speculation_done(self, model: ModelDescriptor, outcome: str, inference: float = 0.0) -> None:
        """One speculative recognition ended with ``outcome`` (see ``voxrelay_asr_speculative_total``)."""
        labels = {"model": model.name, "backend": model.backend, "outcome": outcome}
        self.speculative.labels(**labels).inc()
        if inference > 0:
            self.speculative_inference.labels(**labels).inc(inference)

    def audio_received(self, seconds: float) -> None:
        self.audio.inc(max(0.0, seconds))

    def request(self, front: str, code: str) -> None:
        self.requests.labels(front=front, code=code).inc()

    def invalid_input(self, err: VoxrelayError) -> None:
        self.invalid.labels(code=err.grpc_code.name, reason=error_reason(err)).inc()

    def observe_result(self, model: ModelDescriptor, result: pb.RecognitionResult) -> None:
        labels = {"model": model.name, "backend": model.backend}
        timings = result.timings
        self.segments.labels(**labels, slot=result.slot or "stable").inc()
        self.inference.labels(**labels).observe(timings.inference_seconds)
        self.queue_wait.labels(**labels).observe(timings.queue_wait_seconds)
        if timings.audio_seconds > 0:
            self.real_time_factor.labels(**labels).observe(timings.inference_seconds / timings.audio_seconds)
            self.segment_audio.labels(**labels).observe(timings.audio_seconds)
        text = result.text.strip()
        if result.phrases:
            self.no_speech_prob.labels(**labels).observe(result.no_speech_prob)
        if result.language:
            self.language.labels(model=model.name, language=result.language[:8]).inc()
        if not text:
            self.empty.labels(**labels).inc()
            return
        self.avg_logprob.labels(**labels).observe(result.avg_logprob)
        self.compression_ratio.labels(**labels).observe(result.compression_ratio)
        if timings.audio_seconds > 0:
            self.words_per_second.labels(**labels).observe(len(text.split()) / timings.audio_seconds)
        if result.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
            self.hallucinations.labels(model=model.name, reason="repetitive").inc()
        if result.no_speech_prob >= NO_SPEECH_THRESHOLD:
            self.hallucinations.labels(model=model.name, reason="non_speech").inc()
