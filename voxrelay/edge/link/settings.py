"""Settings the link modules share: where and how the edge sends segments.

Imported by the channel, the uplink and the commands; imports none of the link modules but the spool's records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voxrelay.edge.link.records import DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_BYTES, SpoolSettings
from voxrelay.edge.link.targets import Target
from voxrelay.errors import InvalidArgument
from voxrelay.netaddr import is_loopback


@dataclass(frozen=True)
class UplinkSettings:
    """Where and how to send segments, how to authenticate, and how hard to try."""

    server: str
    device_id: str
    language: str | None = None
    model: str | None = None
    beam_size: int = 0
    word_timestamps: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    # "transcribe", or "translate" (to English; the server's model must be multilingual).
    task: str = "transcribe"
    # Ask for interim results of the segment being spoken, every interim_interval seconds of new
    # audio (0: the server's default, 1 s).
    interim_results: bool = False
    interim_interval: float = 0.0
    # Audio is sent in chunks of at most this many seconds (smaller at a segment's end).
    chunk_seconds: float = 0.1
    connect_timeout: float = 10.0
    # A segment whose result has not arrived this long after it was sent is resent on a new stream.
    result_timeout: float = 300.0
    keepalive_seconds: float = 30.0
    extra_options: tuple[tuple[str, int | str], ...] = field(default=())
    # TLS: a CA bundle to trust (None with tls=True: the system's), a client certificate for mTLS.
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_token_file: str | None = None
    # Allow plaintext to a server that is not on this machine.
    insecure: bool = False
    # Store-and-forward: a spool directory (None: in memory, lost on exit) and its bounds.
    spool_dir: str | None = None
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    # Reconnect with backoff for at most this long without progress before giving up.
    max_outage_seconds: float = 300.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 10.0

    def __post_init__(self) -> None:
        target = Target.parse(self.server)
        if self.task not in ("transcribe", "translate"):
            raise InvalidArgument(f"task: {self.task!r} is not one of transcribe, translate")
        if not self.device_id:
            raise InvalidArgument("device_id: must not be empty")
        if self.interim_interval and not 0.5 <= self.interim_interval <= 10.0:
            raise InvalidArgument(
                f"interim_interval: {self.interim_interval:g} is out of range (0.5..10 s; 0 = default)"
            )
        if not 0.01 <= self.chunk_seconds <= 2.0:
            raise InvalidArgument(f"chunk_seconds: {self.chunk_seconds} is out of range (0.01..2)")
        if self.connect_timeout <= 0 or self.result_timeout <= 0 or self.max_outage_seconds <= 0:
            raise InvalidArgument("timeouts must be positive")
        if not 0 < self.backoff_initial_seconds <= self.backoff_max_seconds:
            raise InvalidArgument("backoff: the initial delay must be positive and at most the maximum")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("tls: --tls-cert and --tls-key go together (the client certificate and its key)")
        if not self.uses_tls and not self.insecure and not target.loopback:
            remote = ", ".join(h for h in target.hosts if not is_loopback(h))
            raise InvalidArgument(
                f"server: refusing to send audio in plaintext to {remote}, which is not this machine; "
                "give --tls-ca (or --tls for the system's CAs), or --insecure on a trusted network"
            )
        SpoolSettings(self.spool_dir, self.spool_max_bytes, self.spool_max_age_seconds)  # validates

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None

    @property
    def target(self) -> Target:
        """The parsed ``server``: one address, several replicas, or a dns:/// name."""
        return Target.parse(self.server)

    @property
    def spool(self) -> SpoolSettings:
        return SpoolSettings(self.spool_dir, self.spool_max_bytes, self.spool_max_age_seconds)
