"""Run every benchmark: `python -m tests.bench [name ...]`."""

from __future__ import annotations

import importlib
import sys

ALL = [
    "bench_start", "bench_rpc", "bench_watch", "bench_transfer", "bench_process", "bench_metrics", "bench_git",
    "bench_code", "bench_code_rpc", "bench_host",
    "bench_platform",
]


def main(names: list[str]) -> int:
    ok = True
    for name in names or ALL:
        module = importlib.import_module(f"tests.bench.{name}")
        ok &= module.run()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
