"""Codecs for the RPC services: binary protobuf and canonical protobuf JSON (spec/envd.md §4.3).

connectrpc's google.protobuf JSON codec pretty-prints; this one emits compact JSON (smaller stream
envelopes) and, like it, ignores unknown input fields so newer SDKs keep working. A body that does
not decode is the caller's fault: invalid_argument (as connect-go), not internal.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.errors import ConnectError


def _unmarshal_error(message_class: type[Message], err: Exception) -> ConnectError:
    return ConnectError(Code.INVALID_ARGUMENT, f"unmarshal into {message_class.DESCRIPTOR.full_name}: {err}")


# Hand-written JSON for hot message shapes (e.g. process output events, where json_format costs 4x the
# base64 work itself). An encoder returns the canonical JSON bytes, or None to fall back to json_format.
_FAST_JSON: dict[type, Callable[[Message], bytes | None]] = {}


def register_json_encoder(message_class: type[Message], encoder: Callable[[Message], bytes | None]) -> None:
    _FAST_JSON[message_class] = encoder


class CompactJSONCodec:
    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        fast = _FAST_JSON.get(type(message))
        if fast is not None:
            encoded = fast(message)
            if encoded is not None:
                return encoded
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        message = message_class()
        try:
            json_format.Parse(bytes(data), message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError) as err:
            raise _unmarshal_error(message_class, err) from None
        return message


class BinaryCodec:
    def __init__(self) -> None:
        self._inner = google_protobuf_binary_codec()

    def name(self) -> str:
        return self._inner.name()

    def encode(self, message: Message) -> bytes:
        return self._inner.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        try:
            return self._inner.decode(data, message_class)
        except DecodeError as err:
            raise _unmarshal_error(message_class, err) from None


def rpc_codecs() -> list:
    return [BinaryCodec(), CompactJSONCodec()]
