"""The native code service's event mapping: every §1.4 event and §2.2 result key of the core -> proto."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from google.protobuf import json_format

from envd.services.code.rpc import _within, event_to_proto


def test_every_result_key_has_a_typed_field() -> None:
    event = {
        "type": "result", "text": "", "html": "<b>", "markdown": "# m", "svg": "<svg/>", "png": "iVBO", "jpeg": "/9j/",
        "pdf": "JVBE", "latex": "$x$", "json": [1, {"a": None}], "javascript": "alert(1)",
        "data": {"col": [1.5, "x"]}, "chart": {},
        "extra": {"application/vnd.plotly.v1+json": {"data": []}, "text/x-custom": "raw"},
        "is_main_result": True,
    }
    result = event_to_proto(event).result
    message = json_format.MessageToDict(result, preserving_proto_field_name=True)
    expected = {k: v for k, v in event.items() if k != "type"}
    assert message == expected  # "" text and {} chart stay present, null inside json survives
    assert result.HasField("text") and result.HasField("chart")

    bare = event_to_proto({"type": "result", "text": "2", "extra": {}, "is_main_result": False}).result
    assert not bare.HasField("chart") and not bare.HasField("png") and not bare.HasField("json")
    assert not bare.is_main_result


def test_stream_error_count_end_events() -> None:
    out = event_to_proto({"type": "stderr", "text": "warn\n", "timestamp": "2025-03-01T10:00:00.123456+00:00"})
    assert out.stderr.text == "warn\n"
    assert out.stderr.timestamp.ToDatetime(UTC) == datetime(2025, 3, 1, 10, 0, 0, 123456, UTC)
    error = event_to_proto({"type": "error", "name": "NameError", "value": "x", "traceback": "tb"}).error
    assert (error.name, error.value, error.traceback) == ("NameError", "x", "tb")
    count = event_to_proto({"type": "number_of_executions", "execution_count": 7})
    assert count.execution_count.execution_count == 7
    assert event_to_proto({"type": "end_of_execution"}).WhichOneof("event") == "end"
    assert event_to_proto({"type": "keepalive"}).WhichOneof("event") == "keepalive"


def test_timeout_closes_the_source_and_ends_in_band() -> None:
    closed = asyncio.Event()

    async def slow_source():
        try:
            yield {"type": "stdout", "text": "started"}
            await asyncio.sleep(60)
            yield {"type": "end_of_execution"}
        finally:
            closed.set()  # in the core this is where the kernel gets interrupted

    async def collect():
        return [event async for event in _within(slow_source(), 200)]

    events = asyncio.run(collect())
    assert [e["type"] for e in events] == ["stdout", "error", "end_of_execution"]
    assert events[1]["name"] == "TimeoutError" and "200 ms" in events[1]["value"]
    assert closed.is_set()
