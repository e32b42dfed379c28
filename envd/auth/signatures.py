"""Signed /files URLs (spec/envd.md §2.6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


class SignatureError(Exception):
    """A 401 with this message."""


def sign(path: str, operation: str, username: str, token: str, expiration: int | None = None) -> str:
    parts = [path, operation, username, token]
    if expiration is not None:
        parts.append(str(expiration))
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return "v1_" + base64.b64encode(digest).decode().rstrip("=")


def check_signature(
    *,
    path: str,
    operation: str,
    username: str,
    token: str,
    signature: str | None,
    expiration: int | None,
    now: float | None = None,
) -> None:
    if not signature:
        raise SignatureError("missing signature query parameter")
    expected = sign(path, operation, username, token, expiration)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("invalid signature")
    # Expiry is only checked after a match, so a forged URL never learns whether it expired.
    if expiration is not None and expiration < int(now if now is not None else time.time()):
        raise SignatureError("signature is already expired")
