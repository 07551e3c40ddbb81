"""Settings of the recognizer service: one frozen dataclass, validated when it is built."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from voxrelay.errors import InvalidArgument
from voxrelay.netaddr import is_loopback

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
    # Whisper's sampling temperatures, tried in order while a decode looks unreliable (None: the
    # backend's own 0, 0.2, ... 1.0, whose sampling cannot be seeded; (0.0,) is beam search only,
    # reproducible, but then Whisper's no-speech rule drops quiet utterances a sampled retry would
    # have kept: see the README).
    temperature: tuple[float, ...] | None = None
    # A segment that starts within context_seconds of the previous one's end on the same stream is
    # decoded with the previous result's text (its last CONTEXT_WORDS words) as Whisper's prompt,
    # after the session's own initial_prompt (0: off).
    context_seconds: float = 0.0
    # Drop hallucinated phrases at the end of each segment (see voxrelay.cloud.backends.guard).
    tail_guard: bool = True
    # Recognise an open segment during a pause its edge reports (SegmentPause), see voxrelay.cloud.speculate.
    speculate: bool = True
    # Inference workers (model calls running at once) and CPU threads per worker; 0 = picked for the
    # machine (see voxrelay.cloud.parallelism: one single-threaded worker per core, up to 4).
    inference_workers: int = 0
    cpu_threads: int = 0
    # Dynamic batching: a worker decodes up to max_batch segments of any streams in one call, and
    # waits up to max_wait_ms for a batch to fill while more segments are on their way. 2 by default:
    # on 2 cores (tiny.en, int8, 8 unpaced streams) batches of 2 gave 5.71 audio s per CPU s at a peak
    # RSS of 351 MB, 8 gave 5.67 at 413 MB, 1 gave 5.43 at 345 MB (scripts/bench_throughput.py).
    max_batch: int = 2
    max_wait_ms: float = 20.0
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
    # Admission control: audio seconds waiting for or in recognition (all streams), segments of one
    # stream awaiting results; refusals are RESOURCE_EXHAUSTED with a retry hint of retry_after_seconds.
    max_queued_audio_seconds: float = 120.0
    max_pending_segments: int = 32
    retry_after_seconds: float = 2.0
    # Fair share per client identity (token name, else client certificate, else device id): streams
    # and estimated inference seconds queued or running, per client and for the whole server.
    max_client_streams: int = 16
    max_queued_work_seconds: float = 120.0
    max_client_queued_work_seconds: float = 30.0
    # A stream with nothing pending that sends nothing this long is closed (DEADLINE_EXCEEDED), and
    # so is one that sends no config within config_timeout_seconds of opening.
    stream_idle_seconds: float = 60.0
    config_timeout_seconds: float = 10.0
    # An open segment whose audio arrives slower than min_audio_rate × real time, measured from
    # slow_grace_seconds after its start, is refused (RESOURCE_EXHAUSTED): a trickle holds a slot.
    min_audio_rate: float = 0.25
    slow_grace_seconds: float = 10.0
    # Connections: at most max_connections at once; one without calls for connection_idle_seconds,
    # or that has not finished its handshake within handshake_timeout_seconds, is closed.
    max_connections: int = 2048
    connection_idle_seconds: float = 300.0
    handshake_timeout_seconds: float = 10.0
    # HTTP/2 keepalive: the server pings every keepalive_seconds and drops a client that does not
    # answer within 10 s; a client pinging more often than every min_client_ping_seconds is cut off.
    keepalive_seconds: float = 30.0
    min_client_ping_seconds: float = 10.0
    # TLS: PEM files. tls_client_ca makes it mutual TLS (clients need a certificate signed by it).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # A file of accepted device tokens, one per line ("<token> [name]"; # comments).
    auth_token_file: str | None = None
    # Allow plaintext on a non-loopback address (a trusted network, or TLS terminated in front).
    insecure: bool = False
    # Other fronts on the same host, the same engines and limits (None: off; 0 picks a free port):
    # the OpenAI-compatible HTTP API and the Wyoming protocol (Home Assistant).
    http_port: int | None = None
    http_max_upload_bytes: int = 25 * 1024 * 1024
    wyoming_port: int | None = None
    # Wyoming carries no token: with auth_token_file set, its clients are trusted only if this is set.
    wyoming_trusted: bool = False
    # Drift monitoring: on by default; thresholds file (None: the shipped defaults), reference
    # profiles (one per model; a model without one learns its reference from its first segments),
    # the WER calibration (None: the shipped one), and the built-in live page's port (None: off).
    monitoring: bool = True
    thresholds_file: str | None = None
    profiles: tuple[str, ...] = ()
    calibration_file: str | None = None
    dashboard_port: int | None = None
    # Deployments and rollouts: the deployments file (None: one deployment per model, the first
    # stable), the admin tokens (None: the admin service refuses every call), the data directory of
    # the audit log and the review queue (None: $VOXRELAY_DATA_DIR, else ~/.local/share/voxrelay), and
    # the review page's port (None: off).
    deployments_file: str | None = None
    admin_token_file: str | None = None
    data_dir: str | None = None
    review_port: int | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise InvalidArgument("models: at least one model is needed")
        if self.backend not in BACKENDS:
            raise InvalidArgument(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.compute_type not in COMPUTE_TYPES:
            raise InvalidArgument(f"compute_type: {self.compute_type!r} is not one of {', '.join(COMPUTE_TYPES)}")
        if not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port: {self.port} is not a TCP port (0..65535; 0 picks a free one)")
        if not 1 <= self.beam_size <= 10:
            raise InvalidArgument(f"beam_size: {self.beam_size} is out of range (1..10)")
        if self.temperature is not None:
            from voxrelay.cloud.backends.base import check_temperatures

            check_temperatures("temperature", self.temperature)
        if not 0.0 <= self.context_seconds <= 60.0:
            raise InvalidArgument(f"context_seconds: {self.context_seconds} must lie between 0 (off) and 60 s")
        if self.inference_workers < 0 or self.cpu_threads < 0:
            raise InvalidArgument(
                f"workers and cpu_threads: {self.inference_workers} and {self.cpu_threads} must be 0 "
                "(automatic) or more"
            )
        if not 1 <= self.max_batch <= 64:
            raise InvalidArgument(f"max_batch: {self.max_batch} is out of range (1..64)")
        if not 0 <= self.max_wait_ms <= 1000:
            raise InvalidArgument(f"max_wait_ms: {self.max_wait_ms:g} is out of range (0..1000 ms)")
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
        if self.dashboard_port is not None and not 0 <= self.dashboard_port <= 65535:
            raise InvalidArgument(f"dashboard_port: {self.dashboard_port} is not a TCP port (0..65535)")
        if self.dashboard_port is not None and not self.monitoring:
            raise InvalidArgument("dashboard_port: the live page shows the monitors; leave --no-monitoring out")
        if self.grace_seconds < 0:
            raise InvalidArgument(f"grace_seconds: {self.grace_seconds} must not be negative")
        self._check_robustness()
        self._check_security()
        self._check_fronts()

    def _check_fronts(self) -> None:
        for name, port in (
            ("http_port", self.http_port),
            ("wyoming_port", self.wyoming_port),
            ("review_port", self.review_port),
        ):
            if port is not None and not 0 <= port <= 65535:
                raise InvalidArgument(f"{name}: {port} is not a TCP port (0..65535; 0 picks a free one)")
        given = (self.port, self.http_port, self.wyoming_port, self.metrics_port, self.dashboard_port, self.review_port)
        ports = [p for p in given if p]
        if len(ports) != len(set(ports)):
            raise InvalidArgument(
                f"ports: --port, --http-port, --wyoming-port, --metrics-port, --dashboard-port and --review-port "
                f"collide ({ports})"
            )
        if not 1024 <= self.http_max_upload_bytes <= 1 << 30:
            raise InvalidArgument(f"http_max_upload_bytes: {self.http_max_upload_bytes} is out of range (1 KiB..1 GiB)")
        if self.wyoming_port is not None and self.auth_token_file is not None and not self.wyoming_trusted:
            raise InvalidArgument(
                "wyoming_port: the Wyoming protocol carries no device token, so with --auth-token-file its "
                "clients would bypass authentication; add --wyoming-trusted to accept them anyway (a trusted "
                "network), or leave --wyoming-port out"
            )

    def _check_robustness(self) -> None:
        if not self.max_queued_audio_seconds >= self.max_segment_seconds:
            raise InvalidArgument(
                f"max_queued_audio_seconds: {self.max_queued_audio_seconds} must be at least "
                f"max_segment_seconds ({self.max_segment_seconds:g}), or no long segment could ever run"
            )
        if self.max_pending_segments < 1:
            raise InvalidArgument(f"max_pending_segments: {self.max_pending_segments} must be at least 1")
        if not 0 < self.retry_after_seconds <= 600:
            raise InvalidArgument(f"retry_after_seconds: {self.retry_after_seconds} is out of range (0..600]")
        if not self.stream_idle_seconds > 0 or not self.config_timeout_seconds > 0:
            raise InvalidArgument("stream_idle_seconds and config_timeout_seconds must be positive")
        if self.max_client_streams < 1:
            raise InvalidArgument(f"max_client_streams: {self.max_client_streams} must be at least 1")
        if not 0 < self.max_client_queued_work_seconds <= self.max_queued_work_seconds:
            raise InvalidArgument(
                f"max_client_queued_work_seconds: {self.max_client_queued_work_seconds} must be positive and at "
                f"most max_queued_work_seconds ({self.max_queued_work_seconds:g})"
            )
        if not 0 <= self.min_audio_rate < 1 or not self.slow_grace_seconds > 0:
            raise InvalidArgument("min_audio_rate must be in [0, 1) and slow_grace_seconds positive")
        if self.max_connections < 1 or not self.connection_idle_seconds > 0 or not self.handshake_timeout_seconds > 0:
            raise InvalidArgument(
                "max_connections, connection_idle_seconds and handshake_timeout_seconds must be positive"
            )
        if not self.keepalive_seconds >= 1 or not self.min_client_ping_seconds >= 1:
            raise InvalidArgument("keepalive_seconds and min_client_ping_seconds must be at least 1 s")

    def _check_security(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("tls: --tls-cert and --tls-key go together (the certificate and its key)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgument("tls: --tls-client-ca (mutual TLS) needs --tls-cert and --tls-key as well")
        if self.tls_cert is None and not self.insecure and not is_loopback(self.host):
            raise InvalidArgument(
                f"host: refusing to serve plaintext on {self.host}, which is not a loopback address; "
                "give --tls-cert/--tls-key, or --insecure on a trusted network"
            )

    @property
    def data_directory(self) -> Path:
        """Where the audit log and the review queue live."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        explicit = os.environ.get("VOXRELAY_DATA_DIR")
        if explicit:
            return Path(explicit).expanduser()
        xdg = os.environ.get("XDG_DATA_HOME")
        return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "voxrelay"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
