"""Unary RPC round trip (Filesystem/Stat, Connect JSON, HTTP/1.1) vs a bare 204 (/health) from the same server.

Both go through one keep-alive http.client connection, so client costs are equal and small.
"""

from __future__ import annotations

import http.client

from .common import CONNECT_JSON, median, report, round_trip, running_daemon, timed

ROUNDS = 2000


def run() -> bool:
    with running_daemon() as daemon:
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port)

        health = round_trip(conn, "GET", "/health", 204)
        stat = round_trip(conn, "POST", "/filesystem.Filesystem/Stat", 200, b'{"path":"/tmp"}', CONNECT_JSON)

        for fn in (health, stat):
            timed(fn, 200)  # warm up
        # Interleave batches so machine noise hits both alike.
        bare, rpc = [], []
        for _ in range(10):
            bare += timed(health, ROUNDS // 10)
            rpc += timed(stat, ROUNDS // 10)
        conn.close()
    ratio = median(rpc) / median(bare)
    return report(
        "unary RPC round trip (Stat, Connect JSON)",
        f"{median(rpc) * 1e6:.0f} us vs bare 204 {median(bare) * 1e6:.0f} us = {ratio:.2f}x",
        "<= 1.5x",
        ratio <= 1.5,
    )
