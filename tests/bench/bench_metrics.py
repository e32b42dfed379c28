"""Metrics: Get RPC vs REST /metrics vs the raw psutil sample they share, and what ten Watch streams cost
the daemon compared with one (they share one sampler per interval)."""

from __future__ import annotations

import http.client
import threading
import time

import grpc
import psutil

from envd.host import metrics
from envd.spec.metrics import metrics_pb2 as pb
from envd.spec.metrics import metrics_pb2_grpc as pb_grpc

from .common import CONNECT_JSON, median, report, round_trip, running_daemon, timed

ROUNDS = 600
WATCH_S = 4.0
INTERVAL_MS = 100


def _watch_cpu(daemon, stub, watchers: int) -> tuple[float, int]:
    """Daemon CPU seconds and samples taken while `watchers` streams run for WATCH_S."""
    process = psutil.Process(daemon.process.pid)
    stop = threading.Event()
    received = [0] * watchers

    def watch(i: int) -> None:
        call = stub.Watch(pb.WatchRequest(interval_ms=INTERVAL_MS), timeout=WATCH_S + 30)
        try:
            for _ in call:
                received[i] += 1
                if stop.is_set():
                    break
        finally:
            call.cancel()

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(watchers)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all streams up
    before_cpu, before_taken = sum(process.cpu_times()[:2]), stub.Get(pb.GetRequest()).samples_taken
    time.sleep(WATCH_S)
    after_cpu, after_taken = sum(process.cpu_times()[:2]), stub.Get(pb.GetRequest()).samples_taken
    stop.set()
    for t in threads:
        t.join()
    return after_cpu - before_cpu, after_taken - before_taken - 1


def run() -> bool:
    ok = True
    raw = timed(lambda: metrics.take_sample(metrics.CpuBaseline()), ROUNDS)
    with running_daemon() as daemon:
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port)

        rest = round_trip(conn, "GET", "/metrics", 200)
        health = round_trip(conn, "GET", "/health", 204)
        get = round_trip(conn, "POST", "/metrics.Metrics/Get", 200, b"{}", CONNECT_JSON)

        for fn in (health, rest, get):
            timed(fn, 50)
        health_t, rest_t, get_t = [], [], []
        for _ in range(10):
            health_t += timed(health, ROUNDS // 10)
            rest_t += timed(rest, ROUNDS // 10)
            get_t += timed(get, ROUNDS // 10)
        conn.close()

        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            stub = pb_grpc.MetricsStub(channel)
            one_cpu, one_taken = _watch_cpu(daemon, stub, 1)
            ten_cpu, ten_taken = _watch_cpu(daemon, stub, 10)

    ratio = median(get_t) / median(rest_t)
    ok &= report("metrics Get (Connect JSON) vs REST /metrics",
                 f"{median(get_t) * 1e6:.0f} us vs {median(rest_t) * 1e6:.0f} us = {ratio:.2f}x", "<= 1.6x", ratio <= 1.6)
    # The raw operation: a bare HTTP round trip (/health) plus one psutil sample in-process.
    floor = median(health_t) + median(raw)
    ratio = median(rest_t) / floor
    ok &= report("REST /metrics vs bare 204 + raw psutil sample",
                 f"{median(rest_t) * 1e6:.0f} us vs {median(health_t) * 1e6:.0f}+{median(raw) * 1e6:.0f} us = {ratio:.2f}x",
                 "<= 2.5x", ratio <= 2.5)
    sampled = ten_taken / max(one_taken, 1)
    ok &= report("samples taken: 10 watchers vs 1 (100 ms)",
                 f"{ten_taken} vs {one_taken} = {sampled:.2f}x", "<= 1.2x", sampled <= 1.2)
    cpu = ten_cpu / max(one_cpu, 1e-3)
    ok &= report("daemon CPU: 10 watchers vs 1 (100 ms)",
                 f"{ten_cpu * 1e3:.0f} ms vs {one_cpu * 1e3:.0f} ms = {cpu:.2f}x", "<= 4x (unshared ~10x)", cpu <= 4)
    return ok


if __name__ == "__main__":
    run()
