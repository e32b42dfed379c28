"""Process events on the wire (spec/envd.md §4.3, §6.5): the hand-written JSON of data events is exactly what
json_format would produce, other events fall back to it, and EndEvent fields follow presence rules."""

from __future__ import annotations

import json
import os

import pytest
from google.protobuf import json_format

from envd.api.codecs import CompactJSONCodec
from envd.services.process.exit_status import ExitStatus
from envd.services.process.fanout import Chunk
from envd.services.process.rpc import _data_event, _end_event, _keepalive, _start_event
from envd.spec.process import process_pb2 as pb

CODEC = CompactJSONCodec()


def canonical(message) -> dict:
    return json.loads(json_format.MessageToJson(message))


@pytest.mark.parametrize("response_type", [pb.StartResponse, pb.ConnectResponse])
@pytest.mark.parametrize("stream", ["stdout", "stderr", "pty"])
@pytest.mark.parametrize("data", [b"hi\n", os.urandom(32 * 1024), b"\x00\xff" * 7, b""])
def test_data_event_json_matches_json_format(response_type, stream, data) -> None:
    message = _data_event(response_type, Chunk(stream, data))
    encoded = CODEC.encode(message)
    assert json.loads(encoded) == canonical(message)
    assert CODEC.decode(encoded, response_type) == message


def test_other_events_use_json_format() -> None:
    assert json.loads(CODEC.encode(_start_event(pb.StartResponse, 42))) == {"event": {"start": {"pid": 42}}}
    assert json.loads(CODEC.encode(_keepalive(pb.ConnectResponse))) == {"event": {"keepalive": {}}}
    ok = _end_event(pb.StartResponse, ExitStatus.from_wait_status(0))
    assert json.loads(CODEC.encode(ok)) == {"event": {"end": {"exited": True, "status": "exit status 0"}}}
    killed = _end_event(pb.StartResponse, ExitStatus.from_wait_status(9))
    assert json.loads(CODEC.encode(killed)) == {
        "event": {"end": {"exitCode": -1, "status": "signal: killed", "error": "signal: killed"}}
    }
