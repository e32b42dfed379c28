"""dulwich / OS exceptions to envd errors with a message naming the operation and the problem."""

from __future__ import annotations

from ...errors import (
    Canceled,
    EnvdError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from .credentials import redact


def translate(err: BaseException, what: str) -> EnvdError:
    """`what` names the operation and its target, e.g. "clone of 'https://…'"."""
    from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
    from dulwich.porcelain import CheckoutError, Error

    if isinstance(err, EnvdError):
        return err
    if isinstance(err, (HTTPUnauthorized, HTTPProxyUnauthorized)):
        return Unauthenticated(f"{what} failed: authentication failed (wrong or missing credentials)")
    if isinstance(err, NotGitRepository):  # from a transport: the server answered 404
        return NotFound(f"{what} failed: repository not found")
    if isinstance(err, InterruptedError):
        return Canceled(f"{what} canceled: the client went away")
    if isinstance(err, HangupException):
        return Unavailable(f"{what} failed: the remote hung up unexpectedly")
    if isinstance(err, GitProtocolError):
        text = redact(str(err))
        if "Max retries exceeded" in text or "Connection refused" in text or "Name or service" in text:
            return Unavailable(f"{what} failed: cannot reach the remote: {text}")
        return Unavailable(f"{what} failed: {text}")
    if isinstance(err, CheckoutError):
        return FailedPrecondition(f"{what} failed: {err}")
    if isinstance(err, PermissionError):
        return PermissionDenied(f"{what} failed: permission denied: {err.filename or err}")
    if isinstance(err, FileNotFoundError):
        return NotFound(f"{what} failed: no such file or directory: {err.filename or err}")
    if isinstance(err, (NotADirectoryError, IsADirectoryError)):
        return FailedPrecondition(f"{what} failed: {err.strerror}: {err.filename}")
    if isinstance(err, KeyError):
        return NotFound(f"{what} failed: not found: {redact(str(err))}")
    if isinstance(err, (Error, ValueError)):
        return InvalidArgument(f"{what} failed: {redact(str(err))}")
    if isinstance(err, OSError):
        return Internal(f"{what} failed: {err}")
    return Internal(f"{what} failed: {type(err).__name__}: {redact(str(err))}")

