"""Who may call the recognizer: TLS and mutual TLS credentials, device tokens checked by an interceptor.

Tokens come from a file (``--auth-token-file``), one per line: ``<token> [name]``; blank lines and
``#`` comments are skipped. Clients send ``authorization: Bearer <token>`` metadata. Only SHA-256
digests of the tokens are kept in memory and they are compared in constant time; logs name a token
by its ``name`` (or the first 8 hex digits of its digest), never by the token itself. The health
service is exempt, so that load balancers and orchestrators can probe without a token.

The token is checked from the call's metadata *before* any request body is read: a refused call is
answered by a handler that never reads its request, so a stranger's megabytes cost no memory.

A call's *client identity* (what fair share and per-client limits count) is the token's name, else
the client certificate's identity (mutual TLS), else what the client says (the device id of a
stream, the peer address of a Recognize call). Only the first two are trustworthy.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from voxrelay import tlsinfo
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument, VoxrelayError

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
# The health service answers anyone; the Admin service checks admin tokens itself (never device tokens).
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/voxrelay.v1.Admin/")


def _read(flag: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise VoxrelayError(f"{flag}: cannot read {path}: {err.strerror or err}") from err
    if not data.strip():
        raise VoxrelayError(f"{flag}: {path} is empty")
    return data


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class TokenSet:
    """Accepted device tokens, by digest, with the name each one is logged as."""

    names: Mapping[bytes, str]

    @classmethod
    def load(cls, path: str) -> TokenSet:
        """Parse a token file; a short or duplicated token is refused with its line number."""
        names: dict[bytes, str] = {}
        text = _read("--auth-token-file", path).decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            token = fields[0]
            if len(token) < MIN_TOKEN_LENGTH:
                raise InvalidArgument(
                    f"--auth-token-file: {path} line {number}: a token must have at least {MIN_TOKEN_LENGTH} "
                    "characters (e.g. `openssl rand -hex 32`)"
                )
            digest = _digest(token)
            if digest in names:
                raise InvalidArgument(f"--auth-token-file: {path} line {number}: the token is listed twice")
            names[digest] = fields[1] if len(fields) > 1 else f"token-{digest.hex()[:8]}"
        if not names:
            raise InvalidArgument(f"--auth-token-file: {path} holds no token (one per line)")
        return cls(names)

    def principal(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """The name of the token in ``authorization: Bearer <token>``, or None if absent or unknown."""
        token = bearer_token(metadata)
        if token is None:
            return None
        digest = _digest(token)
        found = None
        for known, name in self.names.items():  # every entry, so the time does not depend on which matched
            if hmac.compare_digest(known, digest):
                found = name
        return found


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def principal_of(context: grpc.aio.ServicerContext) -> str:
    """Who made this call, for keying per-client state: the token's digest, else the TLS peer, else ""."""
    token = bearer_token(context.invocation_metadata())
    if token is not None:
        return _digest(token).hex()[:16]
    identities = context.peer_identities()
    return identities[0].decode("utf-8", errors="replace") if identities else ""


def client_identity(context: grpc.aio.ServicerContext, tokens: TokenSet | None) -> str | None:
    """The trustworthy identity of a call: ``token:<name>`` or ``cert:<identity>``; None if it has neither
    (the caller then names itself: ``device:<id>`` or ``peer:<address>``)."""
    if tokens is not None:
        name = tokens.principal(context.invocation_metadata())
        if name is not None:
            return f"token:{name}"
    identities = context.peer_identities()
    if identities:
        return "cert:" + identities[0].decode("utf-8", errors="replace")[:128]
    return None


def peer_host(context: grpc.aio.ServicerContext) -> str:
    """``peer:<ip>`` of a call (the port left out: one machine is one client)."""
    peer = context.peer() or "unknown"
    host = peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
    return f"peer:{host[:64]}"


Handler = Callable[..., Awaitable[Any]]


def _refusal(message: str) -> grpc.RpcMethodHandler:
    """A handler that ends the call with UNAUTHENTICATED without reading its request.

    It is request-streaming whatever the method: gRPC then hands the request over only when the
    handler asks for it, and this one never does, so the body is discarded unread.
    """

    async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_unary_rpc_method_handler(refuse)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call (the health service aside) without a known device token: UNAUTHENTICATED."""

    def __init__(self, tokens: TokenSet) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method or ""
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(details)
        metadata = details.invocation_metadata
        if self.tokens.principal(metadata) is not None:
            return await continuation(details)
        given = bearer_token(metadata) is not None
        message = (
            "the device token is not accepted by this server; check --auth-token-file"
            if given
            else "this server needs a device token: send `authorization: Bearer <token>` metadata "
            "(voxrelay: --auth-token-file)"
        )
        log.info("refused %s: %s token", method[:80], "unknown" if given else "no")
        return _refusal(message)


def token_set(settings: ServerSettings) -> TokenSet | None:
    """The accepted tokens of ``settings`` (None: no token needed), for every front alike."""
    if settings.auth_token_file is None:
        return None
    return TokenSet.load(settings.auth_token_file)


def interceptors(settings: ServerSettings, tokens: TokenSet | None = None) -> list[grpc.aio.ServerInterceptor]:
    tokens = tokens if tokens is not None else token_set(settings)
    if tokens is None:
        return []
    log.info("device tokens: %d accepted (from %s)", len(tokens.names), settings.auth_token_file)
    return [TokenInterceptor(tokens)]


def check_certificates(settings: ServerSettings, chain: bytes, key: bytes, client_ca: bytes | None) -> None:
    """Refuse an expired, not yet valid or mismatched server certificate; warn when it expires soon."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    problem = tlsinfo.check_pair("--tls-cert", settings.tls_cert, chain, "--tls-key", settings.tls_key, key)
    if problem is not None:
        raise VoxrelayError(problem)
    for leaf in tlsinfo.certificates(chain)[:1]:
        days = leaf.expires_within(tlsinfo.EXPIRY_WARNING_DAYS)
        if days is not None:
            log.warning(
                "--tls-cert: the certificate in %s (%s) expires on %s UTC, in %.1f days; renew it before then",
                settings.tls_cert,
                leaf.subject,
                f"{leaf.not_after:%Y-%m-%d %H:%M}",
                days,
            )
    for ca in tlsinfo.certificates(client_ca or b""):
        problem = ca.validity_problem()
        if problem is not None:
            log.warning(
                "--tls-client-ca: %s (%s) %s: client certificates it signed are refused",
                settings.tls_client_ca,
                ca.subject,
                problem,
            )


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the PEM files of ``settings`` (None for plaintext)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    chain = _read("--tls-cert", settings.tls_cert)
    key = _read("--tls-key", settings.tls_key)
    client_ca = _read("--tls-client-ca", settings.tls_client_ca) if settings.tls_client_ca else None
    for flag, data, marker in (("--tls-cert", chain, b"CERTIFICATE"), ("--tls-key", key, b"PRIVATE KEY")):
        if b"-----BEGIN" not in data or marker not in data:
            raise VoxrelayError(f"{flag}: not a PEM file holding a {marker.decode().lower()}")
    check_certificates(settings, chain, key, client_ca)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind(server: grpc.aio.Server, settings: ServerSettings) -> int:
    """Listen on ``settings.address`` with TLS when configured; returns the port."""
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, credentials)
    except RuntimeError as err:
        raise VoxrelayError(f"cannot listen on {settings.address}: {err}") from err
    if port == 0:
        raise VoxrelayError(f"cannot listen on {settings.address}: the address is in use or not local")
    return port
