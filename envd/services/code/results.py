"""Kernel MIME bundles -> `result` events (code-interpreter.md §2.2-§2.4)."""

from __future__ import annotations

from typing import Any

# §2.2 / §2.4: MIME type -> event key, in upstream's key order.
MIME_KEYS = (
    ("text/plain", "text"),
    ("text/html", "html"),
    ("text/markdown", "markdown"),
    ("image/svg+xml", "svg"),
    ("image/png", "png"),
    ("image/jpeg", "jpeg"),
    ("application/pdf", "pdf"),
    ("text/latex", "latex"),
    ("application/json", "json"),
    ("application/javascript", "javascript"),
    ("e2b/data", "data"),
    ("e2b/chart", "chart"),
)


def unquote(text: str) -> str:
    """§2.3: drop exactly one pair of matching surrounding quotes (a lone quote becomes "")."""
    if text[:1] in ("'", '"') and text[-1:] == text[:1]:
        return text[1:-1]
    return text


def result_event(bundle: dict[str, Any], is_main_result: bool) -> dict[str, Any]:
    """Known MIME types become named keys (nulls omitted); the rest goes unchanged into `extra`."""
    remaining = dict(bundle)
    event: dict[str, Any] = {"type": "result"}
    for mime, key in MIME_KEYS:
        if mime not in remaining:
            continue
        value = remaining.pop(mime)
        if value is None:
            continue
        if key == "text" and isinstance(value, str):
            value = unquote(value)
        event[key] = value
    event["extra"] = remaining
    event["is_main_result"] = is_main_result
    return event
