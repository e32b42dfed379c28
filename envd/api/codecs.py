"""Codecs for the RPC services: binary protobuf and canonical protobuf JSON (spec/envd.md §4.3).

connectrpc's google.protobuf JSON codec pretty-prints; this one emits compact JSON (smaller stream
envelopes) and, like it, ignores unknown input fields so newer SDKs keep working.
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import Message

from connectrpc.compat import google_protobuf_binary_codec


class CompactJSONCodec:
    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Message:
        message = message_class()
        json_format.Parse(bytes(data), message, ignore_unknown_fields=True)
        return message


def rpc_codecs() -> list:
    return [google_protobuf_binary_codec(), CompactJSONCodec()]
