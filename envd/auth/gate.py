"""The access-token gate applied to every request (spec/envd.md §2.2)."""

from __future__ import annotations

from ..state import SandboxState

# These routes authenticate themselves (/files: header or signature; /init: token in the body).
EXEMPT = frozenset({"GET/health", "GET/files", "POST/files", "POST/init"})

UNAUTHORIZED = "unauthorized access, please provide a valid access token or method signing if supported"


def gate_rejection(method: str, path: str, token_header: str | None, state: SandboxState) -> str | None:
    """The 401 message for a request the gate refuses, or None when it may pass."""
    if not state.token.is_set:
        return None
    if f"{method}{path}" in EXEMPT or state.token.matches(token_header):
        return None
    return UNAUTHORIZED
