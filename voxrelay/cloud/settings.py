"""Settings of the recognizer service: one frozen dataclass, validated when it is built."""

from __future__ import annotations

from dataclasses import dataclass

from voxrelay.errors import InvalidArgument

BACKENDS = ("faster-whisper", "openai-whisper")
COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int16", "float32", "float16", "int8_float16")


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``voxrelay serve`` can be told. The first model is the default one."""

    host: str = "127.0.0.1"
    port: int = 50051
    models: tuple[str, ...] = ("tiny.en",)
    backend: str = "faster-whisper"
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = 5
    # How many segments may be inside the model at once (across all streams).
    inference_workers: int = 1
    max_segment_seconds: float = 60.0
    max_chunk_bytes: int = 256 * 1024
    max_concurrent_streams: int = 64
    min_sample_rate_hz: int = 8000
    max_sample_rate_hz: int = 48000
    # Results remembered per (device, segment id) to answer resent segments without recomputing.
    result_cache_size: int = 10_000
    grace_seconds: float = 10.0
    reflection: bool = False
    slot: str = "stable"
    # Serve Prometheus metrics over HTTP on this port of ``host`` (None: off; 0 picks a free one).
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise InvalidArgument("models: at least one model is needed")
        if self.backend not in BACKENDS:
            raise InvalidArgument(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.compute_type not in COMPUTE_TYPES:
            raise InvalidArgument(
                f"compute_type: {self.compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}"
            )
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port: {self.port} is not a TCP port (0..65535; 0 picks a free one)")
        if not 1 <= self.beam_size <= 10:
            raise InvalidArgument(f"beam_size: {self.beam_size} is out of range (1..10)")
        if self.inference_workers < 1:
            raise InvalidArgument(f"inference_workers: {self.inference_workers} must be at least 1")
        if self.max_segment_seconds <= 0:
            raise InvalidArgument(f"max_segment_seconds: {self.max_segment_seconds} must be positive")
        if self.max_chunk_bytes < 1024:
            raise InvalidArgument(f"max_chunk_bytes: {self.max_chunk_bytes} must be at least 1024")
        if self.max_concurrent_streams < 1:
            raise InvalidArgument(f"max_concurrent_streams: {self.max_concurrent_streams} must be at least 1")
        if not 0 < self.min_sample_rate_hz <= 16000 <= self.max_sample_rate_hz:
            raise InvalidArgument("sample rate limits must include 16000 Hz")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise InvalidArgument(f"metrics_port: {self.metrics_port} is not a TCP port (0..65535)")
        if self.grace_seconds < 0:
            raise InvalidArgument(f"grace_seconds: {self.grace_seconds} must not be negative")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
