"""The metrics core (spec/envd.md §3.3) and the shared Watch samplers, on real psutil and a real event loop."""

import asyncio
import threading
import time
from collections import namedtuple

import pytest

from envd.errors import Internal, InvalidArgument
from envd.host import metrics
from envd.host.metrics import CpuBaseline, busy_pct
from envd.services.metrics.samplers import Samplers

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(user=0, nice=0, system=0, idle=0, iowait=0, irq=0, softirq=0, steal=0, guest=0, guest_nice=0):
    return Times(user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice)


def test_busy_pct_follows_the_spec_formula():
    prev = times(user=100, idle=100)
    # busy +30 (user 20, system 5, irq 5), idle +60, iowait +10: 30 / 100
    now = times(user=120, system=5, irq=5, idle=160, iowait=10)
    assert busy_pct(prev, now) == 30.0
    assert busy_pct(prev, times(user=101, idle=102)) == 33.33  # rounded to 2 decimals


def test_busy_pct_ignores_guest_time():
    prev = times(user=100, idle=100)
    assert busy_pct(prev, times(user=150, idle=150, guest=1000, guest_nice=1000)) == 50.0


def test_busy_pct_edge_cases():
    prev = times(user=100, idle=100)
    assert busy_pct(prev, prev) == 0.0  # no busy time
    assert busy_pct(prev, times(user=90, idle=200)) == 0.0  # busy went backwards
    # busy grew while the total did not (counter glitch): 100 as upstream
    assert busy_pct(prev, times(user=110, idle=90)) == 100.0


def test_sample_has_the_rest_keys_and_consistent_units():
    sample = metrics.take_sample(CpuBaseline())
    body = sample.as_json()
    assert list(body) == [
        "ts", "cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib",
        "mem_total", "mem_used", "mem_cache", "disk_used", "disk_total",
    ]
    assert abs(body["ts"] - time.time()) < 5
    assert body["mem_total_mib"] == body["mem_total"] // 1048576
    assert body["mem_used_mib"] == body["mem_used"] // 1048576
    assert 0 < body["mem_used"] < body["mem_total"]
    assert 0 < body["disk_used"] <= body["disk_total"]
    assert 0 <= body["cpu_used_pct"] <= 100


def test_samples_are_counted():
    before = metrics.samples_taken()
    metrics.collect()
    metrics.take_sample(CpuBaseline())
    assert metrics.samples_taken() == before + 2


def test_own_baseline_sees_a_busy_thread():
    baseline = CpuBaseline()
    stop = time.monotonic() + 0.5
    while time.monotonic() < stop:
        pass  # this thread alone keeps one CPU busy
    assert metrics.take_sample(baseline).cpu_used_pct > 0


class CountingSample:
    """A stand-in for psutil sampling that counts calls (from worker threads)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, baseline):
        with self._lock:
            self.calls += 1
        if self.fail:
            raise OSError("no /proc")
        return metrics.take_sample(baseline)


async def take(watch, n: int) -> list:
    out = []
    async for sample in watch:
        out.append(sample)
        if len(out) == n:
            break
    await watch.aclose()
    return out


@pytest.mark.asyncio
async def test_watchers_of_one_interval_share_one_sampler():
    sample = CountingSample()
    samplers = Samplers(sample)
    results = await asyncio.wait_for(asyncio.gather(*(take(samplers.watch(100), 5) for _ in range(10))), 30)
    assert all(len(r) == 5 for r in results)
    # Ten watchers of five samples each: about five samplings, not fifty.
    assert 5 <= sample.calls <= 10
    assert samplers.active_intervals == []  # the sampler stopped with its last watcher


@pytest.mark.asyncio
async def test_distinct_intervals_get_distinct_samplers():
    samplers = Samplers(CountingSample())
    fast, slow = samplers.watch(100), samplers.watch(300)
    first = asyncio.ensure_future(fast.__anext__())
    second = asyncio.ensure_future(slow.__anext__())
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert samplers.active_intervals == [100, 300]
    await fast.aclose()
    await slow.aclose()
    assert samplers.active_intervals == []


@pytest.mark.asyncio
async def test_samples_arrive_at_the_interval():
    samplers = Samplers()
    loop = asyncio.get_running_loop()
    arrivals = []
    watch = samplers.watch(200)
    async for _sample in watch:
        arrivals.append(loop.time())
        if len(arrivals) == 6:
            break
    await watch.aclose()
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert 0.1 <= gaps[len(gaps) // 2] <= 0.4  # median gap around 200 ms (generous: shared machine)


@pytest.mark.asyncio
@pytest.mark.parametrize("interval", [0, 1, 99])
async def test_interval_below_100ms_is_rejected(interval):
    samplers = Samplers(CountingSample())
    with pytest.raises(InvalidArgument, match="at least 100"):
        await samplers.watch(interval).__anext__()
    assert samplers.active_intervals == []


@pytest.mark.asyncio
async def test_sampling_failure_ends_every_watcher():
    samplers = Samplers(CountingSample(fail=True))
    watches = [samplers.watch(100) for _ in range(3)]
    for watch in watches:
        with pytest.raises(Internal, match="metrics collection failed: no /proc"):
            await asyncio.wait_for(watch.__anext__(), 10)
    assert samplers.active_intervals == []


@pytest.mark.asyncio
async def test_a_stalled_watcher_does_not_hold_up_the_others():
    sample = CountingSample()
    samplers = Samplers(sample)
    stalled = samplers.watch(100)
    await asyncio.wait_for(stalled.__anext__(), 10)  # subscribed, then never read again
    got = await asyncio.wait_for(take(samplers.watch(100), 8), 30)
    assert len(got) == 8
    await stalled.aclose()
    assert samplers.active_intervals == []
