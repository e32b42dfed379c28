"""metrics.Metrics RPC adapter (proto/metrics/metrics.proto): samples to protobuf, keepalives from api.rpc."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from connectrpc.request import RequestContext

from ...api.rpc import with_keepalives
from ...host import metrics
from ...spec.metrics import metrics_pb2 as pb
from .samplers import Samplers


def sample_to_proto(sample: metrics.Sample) -> pb.Sample:
    return pb.Sample(**sample.as_json())


def _keepalive() -> pb.WatchResponse:
    return pb.WatchResponse(keepalive=pb.WatchResponse.KeepAlive())


class MetricsService:
    def __init__(self) -> None:
        self.samplers = Samplers()

    async def close(self) -> None:
        await self.samplers.close()

    async def get(self, request: pb.GetRequest, ctx: RequestContext) -> pb.GetResponse:
        sample = await asyncio.to_thread(metrics.take_sample)  # the baseline GET /metrics uses (§3.3)
        return pb.GetResponse(sample=sample_to_proto(sample), samples_taken=metrics.samples_taken())

    async def watch(self, request: pb.WatchRequest, ctx: RequestContext) -> AsyncIterator[pb.WatchResponse]:
        Samplers.check_interval(request.interval_ms)  # before the stream starts: a plain invalid_argument
        async for response in with_keepalives(self._samples(request.interval_ms), ctx, _keepalive):
            yield response

    async def _samples(self, interval_ms: int) -> AsyncIterator[pb.WatchResponse]:
        watch = self.samplers.watch(interval_ms)
        try:
            async for sample in watch:
                yield pb.WatchResponse(sample=sample_to_proto(sample))
        finally:
            await watch.aclose()  # leave the shared sampler now, not when the generator is collected
