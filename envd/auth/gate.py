"""The access-token gate applied to every request (spec/envd.md §2.2)."""

from __future__ import annotations

from ..state import SandboxState

# These routes authenticate themselves (/files: header or signature; /init: token in the body).
EXEMPT = frozenset({"GET/health", "GET/files", "POST/files", "POST/init"})

# After a live upgrade, before /init (§2.2 step 4).
RESUMED_OPEN = frozenset({"GET/health", "POST/init"})
NOT_INITIALIZED = "envd not initialized"

UNAUTHORIZED = "unauthorized access, please provide a valid access token or method signing if supported"


def gate_rejection(method: str, path: str, token_header: str | None, state: SandboxState) -> str | None:
    """The 401 message for a request the gate refuses, or None when it may pass."""
    if not state.token.is_set:
        if state.resumed and not state.initialized and f"{method}{path}" not in RESUMED_OPEN:
            return NOT_INITIALIZED  # §2.2 step 4
        return None
    if f"{method}{path}" in EXEMPT or state.token.matches(token_header):
        return None
    return UNAUTHORIZED
