"""Connect wire helpers for tests that speak the protocol by hand (spec/envd.md §4.2)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

END_STREAM = 0x02


def envelope(payload: bytes, flags: int = 0) -> bytes:
    """One stream message: 1 flag byte, 4-byte big-endian length, payload."""
    return struct.pack(">BI", flags, len(payload)) + payload


def read_envelopes(chunks: Iterator[bytes]) -> Iterator[tuple[int, dict]]:
    """Decode a Connect JSON stream body into (flags, message) pairs."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 5:
            flags, length = struct.unpack(">BI", buffer[:5])
            if len(buffer) < 5 + length:
                break
            yield flags, json.loads(buffer[5 : 5 + length])
            buffer = buffer[5 + length :]
    assert buffer == b"", "trailing bytes after the last envelope"


def basic_auth(user: str) -> dict[str, str]:
    """The Authorization header the SDKs send to pick a user (§2.5)."""
    return {"authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}
