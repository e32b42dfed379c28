"""metrics.Metrics through a real daemon: grpcio (h2c) Get and Watch against REST /metrics (spec/envd.md §3.3)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import psutil
import pytest

from envd.spec.metrics import metrics_pb2 as pb
from envd.spec.metrics import metrics_pb2_grpc as pb_grpc
from tests.connect_wire import envelope, read_envelopes


@pytest.fixture
def stub(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        yield pb_grpc.MetricsStub(channel)


def samples(call, n: int) -> list[tuple[float, pb.Sample]]:
    """The next n samples of a Watch call with their arrival times (keepalives skipped)."""
    out = []
    for response in call:
        if response.WhichOneof("event") == "sample":
            out.append((time.monotonic(), response.sample))
            if len(out) == n:
                break
    return out


def test_get_matches_rest_metrics(daemon, stub):
    rest = httpx.get(f"{daemon.url}/metrics", timeout=10).json()
    got = stub.Get(pb.GetRequest(), timeout=10).sample
    assert abs(got.ts - rest["ts"]) <= 2
    for key in ("cpu_count", "mem_total", "mem_total_mib", "disk_total"):
        assert getattr(got, key) == rest[key], key
    # Moving figures: same units and magnitude (other agents share this machine).
    for key in ("mem_used", "mem_cache"):
        assert abs(getattr(got, key) - rest[key]) <= 0.1 * rest["mem_total"], key
    assert abs(got.disk_used - rest["disk_used"]) <= 0.02 * rest["disk_total"]
    assert got.mem_used_mib == got.mem_used // 1048576
    assert 0 <= got.cpu_used_pct <= 100


def test_get_over_connect_json(daemon):
    r = httpx.post(f"{daemon.url}/metrics.Metrics/Get", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert int(body["sample"]["memTotal"]) == psutil.virtual_memory().total
    assert int(body["samplesTaken"]) >= 1


@pytest.mark.parametrize("interval", [0, 50, 99])
def test_watch_rejects_intervals_below_100ms(stub, interval):
    call = stub.Watch(pb.WatchRequest(interval_ms=interval), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least 100" in err.value.details()


def test_watch_at_the_minimum_interval(stub):
    call = stub.Watch(pb.WatchRequest(interval_ms=100), timeout=20)
    try:
        assert len(samples(call, 3)) == 3
    finally:
        call.cancel()


def test_watch_shows_a_cpu_bound_process_at_the_interval(stub):
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        call = stub.Watch(pb.WatchRequest(interval_ms=300), timeout=60)
        try:
            got = samples(call, 8)
        finally:
            call.cancel()
    finally:
        burner.kill()
        burner.wait()
    gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
    assert 0.15 <= statistics.median(gaps) <= 0.6, gaps  # around 300 ms, generous for a shared machine
    cpu_count = got[0][1].cpu_count
    # One busy process keeps at least one of cpu_count CPUs busy (more if other work shares the machine).
    assert statistics.median(s.cpu_used_pct for _, s in got) >= 80 / cpu_count


def test_watch_sends_keepalives_between_long_intervals(stub):
    call = stub.Watch(pb.WatchRequest(interval_ms=60_000), metadata=[("keepalive-ping-interval", "1")], timeout=30)
    try:
        assert next(call).WhichOneof("event") == "keepalive"
        assert next(call).WhichOneof("event") == "keepalive"
    finally:
        call.cancel()


def test_ten_watchers_cost_no_more_sampling_than_one(daemon, stub):
    interval, wanted = pb.WatchRequest(interval_ms=250), 8

    def watch_once() -> int:
        call = stub.Watch(interval, timeout=60)
        try:
            return len(samples(call, wanted))
        finally:
            call.cancel()

    def sampled_during(watchers: int) -> int:
        before = stub.Get(pb.GetRequest(), timeout=10).samples_taken
        with ThreadPoolExecutor(watchers) as pool:
            assert list(pool.map(lambda _: watch_once(), range(watchers))) == [wanted] * watchers
        after = stub.Get(pb.GetRequest(), timeout=10).samples_taken
        return after - before - 1  # minus the second Get itself

    one = sampled_during(1)
    ten = sampled_during(10)
    assert one >= wanted
    # Unshared sampling would take ten times as many (>= 80); sharing costs only the stagger of joins and leaves.
    assert ten < 3 * one, (one, ten)
    # The sampler stopped with its last watcher: nothing is sampled while nobody watches.
    time.sleep(0.5)
    idle_before = stub.Get(pb.GetRequest(), timeout=10).samples_taken
    time.sleep(1.0)
    assert stub.Get(pb.GetRequest(), timeout=10).samples_taken == idle_before + 1


def test_watch_over_connect_json_ends_at_its_deadline(daemon):
    body = envelope(json.dumps({"intervalMs": 100}).encode())
    headers = {"content-type": "application/connect+json", "connect-timeout-ms": "1500"}
    with httpx.stream("POST", f"{daemon.url}/metrics.Metrics/Watch", content=body, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        messages = list(read_envelopes(r.iter_raw()))
    flags, trailer = messages[-1]
    assert flags & 0x02 and trailer["error"]["code"] == "deadline_exceeded"
    samples = [m["sample"] for _, m in messages[:-1]]
    assert len(samples) >= 3
    assert {"cpuCount", "memTotal", "diskTotal", "ts"} <= set(samples[0])
