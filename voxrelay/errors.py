"""The error hierarchy shared by both sides.

Every error has a stable ``code`` (a gRPC status code name) and a message that says what was wrong
and, where it helps, what to do. The gRPC mapping lives in one place: ``VoxrelayError.grpc_code``.
"""

from __future__ import annotations

import grpc

SHOWN_CHARACTERS = 40


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with the full length said:
    a request value echoed back must never make the error itself too long to send."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


class VoxrelayError(Exception):
    """Base class. ``code`` is the gRPC status this error maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return self.code


class InvalidArgument(VoxrelayError):
    """A malformed request: the message names the field and the problem."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class LimitExceeded(VoxrelayError):
    """A request over one of the server's limits."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Overloaded(LimitExceeded):
    """The server is at capacity (streams, queued audio): retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotFound(VoxrelayError):
    """An unknown model name, or one that is not served here."""

    code = grpc.StatusCode.NOT_FOUND


class UnknownModel(ModelNotFound):
    """A model name that names no model and no directory: on the command line, a usage error."""


class MissingDependency(VoxrelayError):
    """An optional package that this feature needs is not installed."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the Python package {package!r}, which is not installed: pip install 'voxrelay[{extra}]'"
        )
        self.package = package
        self.extra = extra


class Unavailable(VoxrelayError):
    """The server is draining or not reachable."""

    code = grpc.StatusCode.UNAVAILABLE


class AudioError(VoxrelayError):
    """Audio that cannot be read or decoded (a file that is not a WAV, a corrupt header...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class BackendError(VoxrelayError):
    """The recognition backend failed on an input."""

    code = grpc.StatusCode.INTERNAL


class Unauthenticated(VoxrelayError):
    """A call without an accepted device token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class NotFound(VoxrelayError):
    """Something named in a request does not exist here (a deployment, a review item)."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(VoxrelayError):
    """A request that the current state does not allow (a promote with no candidate...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
