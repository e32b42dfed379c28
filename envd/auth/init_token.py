"""Who may set, change or clear the access token through /init (spec/envd.md §2.3)."""

from __future__ import annotations

import hashlib
import hmac

from ..state import AccessToken


def token_hash(value: str) -> str:
    return hashlib.sha512(value.encode()).hexdigest()


def init_token_rejection(existing: AccessToken, requested: str | None, mmds_hash: str | None) -> str | None:
    """The 401 reason for refusing the /init, or None to accept. `mmds_hash` None = MMDS absent."""
    if existing.is_set and requested is not None and existing.matches(requested):
        return None
    if mmds_hash:
        expected = token_hash(requested if requested is not None else "")
        if hmac.compare_digest(mmds_hash.encode(), expected.encode()):
            return None
    elif not existing.is_set:
        return None  # first-time setup
    if requested is None:
        return "access token reset not authorized"
    return "access token validation failed"
