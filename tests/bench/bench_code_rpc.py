"""Native code service: Execute("x = 1") over grpcio vs the same cell sent with jupyter-client straight to an
idle kernel (the floor: execute_request until its reply and `idle`; no transport), the share of that a bare gRPC
round trip takes, and the time to a first result in a fresh context (CreateContext + Execute).
Kernels from ENVD_TEST_KERNELS (default /opt/envd-kernels).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

import grpc

from envd.services.code.kernel_env import kernel_dirs, kernel_environment, write_ipython_dir
from envd.spec.code import code_pb2 as pb
from envd.spec.code import code_pb2_grpc as pb_grpc

from .common import median, report, running_daemon, timed

KERNELS = os.environ.get("ENVD_TEST_KERNELS", "/opt/envd-kernels")
ROUNDS = 300


class FloorKernel:
    """An idle python kernel driven with jupyter-client's async client, as the daemon drives its own kernels,
    started with the daemon's kernel environment (its IPython profile disables the history database)."""

    def __init__(self) -> None:
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        self.loop = asyncio.new_event_loop()
        ksm = KernelSpecManager(kernel_dirs=kernel_dirs(KERNELS), ensure_native_kernel=False)
        self.km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)
        self.tmp = tempfile.TemporaryDirectory(prefix="envd-bench-floor-")
        env = kernel_environment(KERNELS, write_ipython_dir(Path(self.tmp.name) / "ipython"))
        self.loop.run_until_complete(self.km.start_kernel(env=env))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.loop.run_until_complete(self.kc.wait_for_ready(timeout=120))

    async def _execute(self, code: str) -> None:
        msg_id = self.kc.execute(code)
        idle = replied = False
        while not (idle and replied):
            if not replied:
                reply = await self.kc.get_shell_msg(timeout=30)
                replied = reply["parent_header"].get("msg_id") == msg_id
            while not idle:
                msg = await self.kc.get_iopub_msg(timeout=30)
                idle = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle")

    def execute(self, code: str) -> None:
        self.loop.run_until_complete(self._execute(code))

    def close(self) -> None:
        self.kc.stop_channels()
        self.loop.run_until_complete(self.km.shutdown_kernel(now=True))
        self.loop.close()
        self.tmp.cleanup()


def run() -> bool:
    floor_kernel = FloorKernel()
    try:
        def direct() -> None:
            floor_kernel.execute("x = 1")

        with running_daemon("-kernels-prefix", KERNELS) as daemon, grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as ch:
            stub = pb_grpc.InterpreterStub(ch)
            start = time.perf_counter()
            context = stub.CreateContext(pb.CreateContextRequest(language="python"), timeout=120).context
            first = list(stub.Execute(pb.ExecuteRequest(code="1 + 1", context_id=context.id), timeout=120))
            fresh = time.perf_counter() - start
            assert any(e.result.text == "2" for e in first)

            def native() -> None:
                events = list(stub.Execute(pb.ExecuteRequest(code="x = 1", context_id=context.id), timeout=30))
                assert events[-1].WhichOneof("event") == "end"

            def unary() -> None:  # the transport's share: one gRPC round trip, no kernel
                stub.ListContexts(pb.ListContextsRequest(), timeout=30)

            for fn in (direct, native, unary):
                timed(fn, 30)  # warm up
            floor, ours, transport = [], [], []
            for _ in range(10):  # interleaved, so machine noise hits all alike
                floor += timed(direct, ROUNDS // 10)
                ours += timed(native, ROUNDS // 10)
                transport += timed(unary, ROUNDS // 10)
    finally:
        floor_kernel.close()
    ratio = median(ours) / median(floor)
    ok = report(
        "code.Interpreter/Execute x = 1 (grpcio)",
        f"{median(ours) * 1e3:.2f} ms vs jupyter-client {median(floor) * 1e3:.2f} ms = {ratio:.2f}x",
        "<= 1.3x",
        ratio <= 1.3,
    )
    report("  of which a gRPC unary round trip", f"{median(transport) * 1e3:.2f} ms (ListContexts)", "report", True)
    report("fresh python context to first result", f"{fresh:.2f} s (CreateContext + Execute)", "report", True)
    return ok
