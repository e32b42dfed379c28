"""Log export core (spec/envd.md §8.2): bounded queue, rate-limited errors, shipping to a loopback collector."""

import json
import logging
import time

from envd.host.log_export import LineQueue, LogExporter, RateLimitedReporter
from envd.host.mmds import Metadata
from tests.conftest import free_port
from tests.mmds_standin import Collector, HangingCollector


def test_queue_drops_oldest_beyond_its_byte_budget():
    queue = LineQueue(max_bytes=100, max_line=40)
    for i in range(10):
        assert queue.put(b"%02d" % i + b"x" * 18)  # 20 bytes each
    assert queue.queued_bytes <= 100 and len(queue) == 5
    assert queue.dropped == 5
    assert [queue.get(0)[:2] for _ in range(5)] == [b"05", b"06", b"07", b"08", b"09"]
    assert queue.get(0) is None and queue.queued_bytes == 0


def test_queue_refuses_oversized_lines():
    queue = LineQueue(max_bytes=1000, max_line=40)
    assert not queue.put(b"x" * 41)
    assert queue.put(b"x" * 40)
    assert len(queue) == 1 and queue.dropped == 1


def test_spec_limits():
    queue = LineQueue()
    assert (queue.max_bytes, queue.max_line) == (8 * 1024 * 1024, 192 * 1024)
    line = b"y" * 100_000
    for _ in range(200):  # 20 MB offered
        queue.put(line)
    assert queue.queued_bytes <= 8 * 1024 * 1024


def test_reporter_writes_once_per_window_and_counts_the_rest():
    now = [0.0]
    written = []
    reporter = RateLimitedReporter(60, written.append, clock=lambda: now[0])
    assert reporter.report("a")
    for t in (1, 30, 59.9):
        now[0] = t
        assert not reporter.report("b")
    now[0] = 60.0
    assert reporter.report("c")
    assert written == ["envd: a", "envd: c (3 more since the last report)"]


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("envd", logging.INFO, __file__, 1, message, None, None)


def test_lines_queue_until_mmds_names_a_collector_then_ship_with_its_fields():
    exporter = LogExporter()
    try:
        with Collector() as collector:
            exporter.handle(record("before mmds"))
            time.sleep(0.2)
            assert collector.posts == []
            exporter.configure(Metadata("isb-9", "tpl-9", collector.url + "/ingest"))
            exporter.handle(record("after mmds"))
            lines = collector.wait_for(lambda line: line["message"] == "after mmds", 10)
            assert [line["message"] for line in lines] == ["before mmds", "after mmds"]  # one POST per line
            assert all(line["instanceID"] == "isb-9" and line["envID"] == "tpl-9" for line in lines)
            assert {content_type for content_type, _ in collector.posts} == {"application/json"}
    finally:
        exporter.close()


def test_no_collector_address_stops_collecting():
    exporter = LogExporter()
    exporter.handle(record("x"))
    exporter.configure(Metadata("isb", "tpl", ""))
    exporter.handle(record("y"))
    assert len(exporter.queue) == 0
    exporter.close()


def test_dead_collector_drops_lines_and_reports_once():
    written = []
    exporter = LogExporter(reporter=RateLimitedReporter(60, written.append))
    try:
        exporter.configure(Metadata("isb", "tpl", f"http://127.0.0.1:{free_port()}"))
        for i in range(20):
            exporter.handle(record(f"line {i}"))
        deadline = time.monotonic() + 10
        while exporter.failed < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert exporter.failed == 20 and exporter.sent == 0
        assert len(written) == 1 and "log export to http://127.0.0.1:" in written[0]
    finally:
        exporter.close()


def test_non_2xx_answer_drops_the_line():
    written = []
    exporter = LogExporter(reporter=RateLimitedReporter(60, written.append))
    try:
        with Collector(status=500) as collector:
            exporter.configure(Metadata("isb", "tpl", collector.url))
            exporter.handle(record("refused"))
            deadline = time.monotonic() + 10
            while exporter.failed < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert exporter.failed == 1 and "collector answered 500" in written[0]
    finally:
        exporter.close()


def test_logging_never_waits_for_a_hanging_collector():
    hanging = HangingCollector()
    exporter = LogExporter(reporter=RateLimitedReporter(60, lambda _text: None))
    try:
        exporter.configure(Metadata("isb", "tpl", hanging.url))
        started = time.monotonic()
        for i in range(2000):
            exporter.handle(record(json.dumps({"i": i})))
        assert time.monotonic() - started < 5  # the sender is stuck in a 10 s POST; emit never waits on it
        assert len(exporter.queue) >= 1990
    finally:
        exporter.close()
        hanging.close()
