"""The edge's connection to the recognizer: TLS or plaintext channel, device token, first contact, retries.

* :func:`open_channel` makes a TLS channel (``--tls-ca``; ``--tls-cert``/``--tls-key`` for mutual TLS)
  or, to a loopback address or with ``--insecure``, a plaintext one. gRPC's own reconnect backoff is
  capped at a few seconds so that a restarted server is found again quickly.
* :func:`auth_metadata` is the ``authorization: Bearer <token>`` metadata sent with every call.
* :func:`connect` opens the channel and asks the server for its info, so that an unreachable server,
  a TLS mismatch or a refused token is reported at once, in one line.
* :class:`Backoff` is exponential backoff with full jitter that honours the server's retry hint.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from voxrelay import __version__
from voxrelay.edge.link import tlsprobe
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.edge.link.targets import service_config
from voxrelay.errors import InvalidArgument, Unavailable, VoxrelayError
from voxrelay.protos import pb, pb_grpc

Metadata = tuple[tuple[str, str], ...]

# Stream failures that a reconnect (and a resend of what is not answered yet) can cure.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # connection lost, server down or draining
        grpc.StatusCode.DEADLINE_EXCEEDED,  # an idle stream closed by the server
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,  # cancelled by the server side (we never retry our own cancels)
    }
)
PUSHBACK_KEY = "grpc-retry-pushback-ms"
TRANSPORT_FAILURES = ("internal error from core", "rst_stream", "stream removed", "connection reset", "socket closed")


class UplinkError(VoxrelayError):
    """The session with the recognizer failed; the message says how."""


def _read(flag: str, path: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as err:
        raise InvalidArgument(f"{flag}: cannot read {path}: {err.strerror or err}") from err
    if not data.strip():
        raise InvalidArgument(f"{flag}: {path} is empty")
    return data


def read_token(path: str) -> str:
    """The first token of a token file (blank lines and # comments skipped)."""
    for line in _read("--auth-token-file", path).decode("utf-8", errors="replace").splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            return fields[0]
    raise InvalidArgument(f"--auth-token-file: {path} holds no token")


def auth_metadata(settings: UplinkSettings) -> Metadata:
    if settings.auth_token_file is None:
        return ()
    return (("authorization", f"Bearer {read_token(settings.auth_token_file)}"),)


def channel_options(settings: UplinkSettings) -> list[tuple[str, int | str]]:
    return [
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.primary_user_agent", f"voxrelay-edge/{__version__}"),
        # After a server restart, find it again within seconds, not gRPC's default two minutes.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.min_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", int(settings.backoff_max_seconds * 1000)),
        *settings.extra_options,
    ]


def channel_credentials(settings: UplinkSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext."""
    if not settings.uses_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read("--tls-ca", settings.tls_ca) if settings.tls_ca else None,
        private_key=_read("--tls-key", settings.tls_key) if settings.tls_key else None,
        certificate_chain=_read("--tls-cert", settings.tls_cert) if settings.tls_cert else None,
    )


def open_channel(settings: UplinkSettings) -> grpc.aio.Channel:
    """A channel to the server, or balanced over its replicas (round_robin + health checks)."""
    credentials = channel_credentials(settings)
    options = channel_options(settings)
    target = settings.target
    address = target.grpc_target()
    if target.balanced:
        options.append(("grpc.service_config", service_config()))
        if not target.dns:
            options.append(("grpc.default_authority", target.authority))
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def describe_rpc_error(server: str, err: grpc.aio.AioRpcError) -> str:
    code = err.code()
    details = err.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"the recognizer at {server} is unavailable ({details}); is `voxrelay serve` running there?"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the recognizer at {server} did not answer in time ({details})"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"the recognizer at {server} refused this device: {details}"
    return f"the recognizer at {server} refused the session: {code.name}: {details}"


def _tls_hint(settings: UplinkSettings, details: str) -> str:
    lowered = details.lower()
    if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered or "tls" in lowered:
        return " (a TLS problem: check --tls-ca, and --tls-cert/--tls-key if the server wants mutual TLS)"
    if not settings.uses_tls and ("socket closed" in lowered or "connection reset" in lowered):
        return " (if the server uses TLS, give --tls-ca)"
    return ""


async def connect(settings: UplinkSettings, timeout: float | None = None) -> grpc.aio.Channel:
    """Open a channel and check that the server answers within ``timeout`` (default: the settings'
    connect_timeout), with a clear error when it does not."""
    if settings.uses_tls:
        tlsprobe.check_own_certificate(settings)
    channel = open_channel(settings)
    stub = pb_grpc.RecognizerStub(channel)
    metadata = auth_metadata(settings)
    loop = asyncio.get_running_loop()
    timeout = settings.connect_timeout if timeout is None else timeout
    deadline = loop.time() + timeout
    last = ""
    probed = False
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Unavailable(
                    f"cannot reach the recognizer at {settings.server} within {timeout:g} s"
                    f"{f' ({last})' if last else ''}{_tls_hint(settings, last)}; is `voxrelay serve` running there?"
                )
            try:
                await stub.GetInfo(pb.GetInfoRequest(), timeout=left, metadata=metadata, wait_for_ready=False)
                return channel
            except grpc.aio.AioRpcError as err:
                if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise UplinkError(describe_rpc_error(settings.server, err)) from None
                last = err.details() or err.code().name
                closed = settings.uses_tls and "socket closed" in last.lower()  # a refused client certificate
                if not probed and (_tls_hint(settings, last) or closed):
                    # A TLS problem is no outage: find out what it is and say so now.
                    probed = True
                    if settings.uses_tls:
                        found = await asyncio.to_thread(tlsprobe.diagnose, settings)
                        if found is not None:
                            raise UplinkError(found) from None
                    elif await asyncio.to_thread(tlsprobe.speaks_tls, settings):
                        raise UplinkError(
                            f"the recognizer at {settings.server} speaks TLS and this edge was given none; "
                            "give --tls-ca (or --tls for the system's CAs)"
                        ) from None
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
    except BaseException:
        await channel.close()
        raise


def pushback_seconds(err: grpc.aio.AioRpcError) -> float | None:
    """The server's retry hint (``grpc-retry-pushback-ms`` trailing metadata), in seconds."""
    for key, value in err.trailing_metadata() or ():
        if key == PUSHBACK_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except (TypeError, ValueError):
                return None
    return None


def retry_hint(err: grpc.aio.AioRpcError) -> tuple[bool, float | None]:
    """Whether a failed stream is worth reconnecting for, and after how long the server asks."""
    pushback = pushback_seconds(err)
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return pushback is not None, pushback  # busy (retry), or a limit no retry can meet
    if err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        # The transport's own failures (a connection torn down mid-call; a proxy such as haproxy ending
        # the stream without a status when the replica behind it died: UNKNOWN "Stream removed") are
        # worth a retry; an INTERNAL the recognizer sent on purpose names the failure and is not.
        details = (err.details() or "").lower()
        return any(mark in details for mark in TRANSPORT_FAILURES), pushback
    return err.code() in RETRYABLE, pushback


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt n waits uniform(base/2, min(cap, base·2ⁿ)) seconds.

    A server's retry hint sets the floor of the wait (plus up to 50 % jitter, so that refused clients
    do not all come back at once).
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self, pushback: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        delay = self.rng.uniform(self.base / 2, max(ceiling, self.base / 2))
        if pushback is not None:
            delay = max(delay, pushback * self.rng.uniform(1.0, 1.5))
        return delay

    def reset(self) -> None:
        self.attempt = 0
