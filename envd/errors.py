"""Protocol-agnostic errors raised by service cores; adapters map `code` to Connect/gRPC/HTTP.

Codes are the Connect code names of spec/envd.md §4.4, which the SDKs branch on.
"""

from __future__ import annotations


class EnvdError(Exception):
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(EnvdError):
    code = "invalid_argument"


class NotFound(EnvdError):
    code = "not_found"


class AlreadyExists(EnvdError):
    code = "already_exists"


class FailedPrecondition(EnvdError):
    code = "failed_precondition"


class Unauthenticated(EnvdError):
    code = "unauthenticated"


class ResourceExhausted(EnvdError):
    code = "resource_exhausted"


class Internal(EnvdError):
    code = "internal"


class Canceled(EnvdError):
    code = "canceled"


class DeadlineExceeded(EnvdError):
    code = "deadline_exceeded"


class Unknown(EnvdError):
    code = "unknown"


class Unimplemented(EnvdError):
    code = "unimplemented"


class PermissionDenied(EnvdError):
    code = "permission_denied"


class Aborted(EnvdError):
    code = "aborted"


class Unavailable(EnvdError):
    code = "unavailable"
