"""Close connections as soon as the client does.

hypercorn 0.18's TCPServer keeps a socket whose peer closed an idle keep-alive connection in CLOSE-WAIT
until its keep-alive timer fires: the connection's task group waits for the idle-timeout task, and we run
that timer at 640 s (spec/envd.md §1.6). Every SDK connection pool closing would leak an fd for ten
minutes. Stopping the idle timer once reading hit EOF lets hypercorn close the socket at once.
"""

from __future__ import annotations

from hypercorn.asyncio.tcp_server import TCPServer

_read_data = TCPServer._read_data


async def _read_data_then_stop_idle_timer(self: TCPServer) -> None:
    await _read_data(self)
    await self.idle_task.stop()


def apply() -> None:
    TCPServer._read_data = _read_data_then_stop_idle_timer
