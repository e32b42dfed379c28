"""Keep an HTTP/2 connection alive when a response goes out before its request body came in.

An early refusal (the token gate's 401, the RPC interceptor's unauthenticated) answers before reading the
body; hypercorn 0.18 then drops the stream, and the client's DATA frames that follow hit a KeyError in its h2
handler, which kills the whole connection and every other call on it (grpcio channels share one). Its
StreamEnded branch already ignores such streams; DataReceived does the same here, giving the flow-control
window back.
"""

from __future__ import annotations

import h2.events
from hypercorn.protocol.h2 import H2Protocol

_handle_events = H2Protocol._handle_events


async def _handle_events_of_open_streams(self: H2Protocol, events: list[h2.events.Event]) -> None:
    # One at a time: handling an event can close a stream that a later DATA frame of the batch belongs to.
    for event in events:
        if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        else:
            await _handle_events(self, [event])
    await _handle_events(self, [])  # flushes (window updates of dropped data included)


def apply() -> None:
    H2Protocol._handle_events = _handle_events_of_open_streams
