"""Metrics watchers: one sampling task per distinct interval, shared by every watcher of that interval.

Ten watchers at 1 s cost one psutil sample a second, not ten. Sampling runs in a worker thread; the task
only schedules it and fans the sample out. A watcher that falls behind loses its oldest samples, never
holds the others up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from ...errors import Internal, InvalidArgument
from ...host.metrics import CpuBaseline, Sample, take_sample

log = logging.getLogger("envd")

MIN_INTERVAL_MS = 100
QUEUE_SAMPLES = 4  # per watcher; older samples are dropped for a slow reader


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


class _Sampler:
    def __init__(self, interval_ms: int, sample: Callable[[CpuBaseline], Sample], on_idle: Callable[[_Sampler], None]) -> None:
        self.interval_ms = interval_ms
        self.interval = interval_ms / 1000
        self._sample = sample
        self._on_idle = on_idle
        self._watchers: set[asyncio.Queue] = set()
        self._task = asyncio.create_task(self._run())

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SAMPLES)
        self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._watchers.discard(queue)
        if not self._watchers:
            self.stop()

    def stop(self) -> None:
        self._task.cancel()
        self._on_idle(self)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            baseline = await asyncio.to_thread(CpuBaseline)
            due = loop.time() + self.interval
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                item: Sample | _Failed = await asyncio.to_thread(self._sample, baseline)
                self._deliver(item)
                # Fixed schedule; ticks missed while the machine was busy are skipped, not bunched up.
                due += self.interval
                if due <= loop.time():
                    due = loop.time() + self.interval
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("metrics sampling failed")
            self._deliver(_Failed(err))
            self._on_idle(self)

    def _deliver(self, item: Sample | _Failed) -> None:
        for queue in self._watchers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item)


class Samplers:
    def __init__(self, sample: Callable[[CpuBaseline], Sample] = take_sample) -> None:
        self._sample = sample
        self._samplers: dict[int, _Sampler] = {}

    @staticmethod
    def check_interval(interval_ms: int) -> None:
        if interval_ms < MIN_INTERVAL_MS:
            raise InvalidArgument(f"interval_ms must be at least {MIN_INTERVAL_MS}, got {interval_ms}")

    async def watch(self, interval_ms: int) -> AsyncIterator[Sample]:
        """Samples every `interval_ms` until the caller stops iterating."""
        self.check_interval(interval_ms)
        sampler = self._samplers.get(interval_ms)
        if sampler is None:
            sampler = _Sampler(interval_ms, self._sample, self._forget)
            self._samplers[interval_ms] = sampler
        queue = sampler.subscribe()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failed):
                    raise Internal(f"metrics collection failed: {item.error}")
                yield item
        finally:
            sampler.unsubscribe(queue)

    def _forget(self, sampler: _Sampler) -> None:
        if self._samplers.get(sampler.interval_ms) is sampler:
            del self._samplers[sampler.interval_ms]

    @property
    def active_intervals(self) -> list[int]:
        return sorted(self._samplers)

    async def close(self) -> None:
        samplers = list(self._samplers.values())
        for sampler in samplers:
            sampler.stop()
