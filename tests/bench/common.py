"""Shared pieces of the benchmarks: a daemon, timing, and a uniform way to print a result."""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Daemon, ensure_sandbox_user, start_daemon, stop_daemon


@contextmanager
def running_daemon(*flags: str) -> Iterator[Daemon]:
    ensure_sandbox_user()
    with tempfile.TemporaryDirectory(prefix="envd-bench-") as tmp:
        daemon = start_daemon(Path(tmp), "-default-user", "user", *flags)
        try:
            yield daemon
        finally:
            stop_daemon(daemon)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def report(name: str, figure: str, target: str, ok: bool) -> bool:
    print(f"{'PASS' if ok else 'MISS'}  {name:<44} {figure:<52} target {target}")
    return ok


CONNECT_JSON = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}


def round_trip(conn: http.client.HTTPConnection, method: str, path: str, status: int, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> Callable[[], None]:
    """One request on a keep-alive connection, as a callable for `timed`; checks the status."""

    def call() -> None:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        assert response.status == status, (path, response.status)

    return call
