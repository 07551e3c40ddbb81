"""A connection to a recognizer's Admin service, for ``voxrelay deploy`` and ``voxrelay review``.

The admin token is read from ``--admin-token-file`` (its first token) or ``$VOXRELAY_ADMIN_TOKEN``;
plaintext only to a loopback address unless ``--insecure``; ``--tls`` (system CAs) or ``--tls-ca``.
Errors come back as one line naming what the server said: a request the server refused (an unknown
deployment, a weight outside 0–100, a missing or wrong token...) is a usage error (exit status 2), a server
that cannot be reached or fails is exit status 1.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.netaddr import is_loopback
from voxrelay.protos import admin_grpc

TOKEN_VARIABLE = "VOXRELAY_ADMIN_TOKEN"
# What the caller asked for was refused: fix the request, not the server.
REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="127.0.0.1:50051", help="the recognizer (default %(default)s)")
    p.add_argument(
        "--admin-token-file",
        metavar="PATH",
        help=f"a file holding an admin token of the server (else ${TOKEN_VARIABLE})",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs")
    p.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA")
    p.add_argument("--insecure", action="store_true", help="allow plaintext to a non-loopback server")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server (default %(default)s)")


def read_admin_token(path: str | None) -> str:
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise InvalidArgument(f"--admin-token-file: cannot read {path}: {err.strerror or err}") from None
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if fields:
                return fields[0]
        raise InvalidArgument(f"--admin-token-file: {path} holds no token")
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise InvalidArgument(f"an admin token is needed: --admin-token-file PATH or ${TOKEN_VARIABLE}")
    return token


def describe(server: str, err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"the recognizer at {server} is unavailable ({details}); is `voxrelay serve` running there?"
    return str(details or code)


@contextmanager
def admin_stub(args: argparse.Namespace) -> Iterator[tuple[admin_grpc.AdminStub, list[tuple[str, str]]]]:
    """The Admin stub and the call metadata (the admin token)."""
    token = read_admin_token(args.admin_token_file)
    host = args.server.rsplit(":", 1)[0].strip("[]")
    if args.tls or args.tls_ca:
        root = Path(args.tls_ca).read_bytes() if args.tls_ca else None
        channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=root))
    else:
        if not args.insecure and not is_loopback(host):
            raise InvalidArgument(
                f"--server {args.server}: refusing to send an admin token in plaintext to another machine; "
                "use --tls or --tls-ca (or --insecure on a trusted network)"
            )
        channel = grpc.insecure_channel(args.server)
    try:
        yield admin_grpc.AdminStub(channel), [("authorization", f"Bearer {token}")]
    except grpc.RpcError as err:
        code = err.code() if hasattr(err, "code") else None
        if code in REFUSED:
            raise InvalidArgument(describe(args.server, err)) from None
        raise VoxrelayError(describe(args.server, err)) from None
    finally:
        channel.close()
