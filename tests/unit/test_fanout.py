"""The output fan-out (spec/envd.md §6.5) on real pipes and a real PTY: one event per read, no replay, dropping
without subscribers, lossless back-pressure with a bounded queue, departures that never block the others."""

from __future__ import annotations

import asyncio
import os
import pty

import pytest

from envd.services.process.fanout import QUEUE_EVENTS, Chunk, Fanout, Source, Subscriber

pytestmark = pytest.mark.asyncio


class Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self.w, True)

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def pipes():
    made: list[Pipe] = []

    def make() -> Pipe:
        made.append(Pipe())
        return made[-1]

    yield make
    for p in made:
        p.close()


def fanout_on(*sources: Source) -> tuple[Fanout, asyncio.Event]:
    eof = asyncio.Event()
    return Fanout(list(sources), on_eof=eof.set), eof


async def next_item(sub: Subscriber, timeout: float = 5):
    item = await sub.get(timeout)
    assert item is not None, "nothing arrived"
    return item


async def write(fd: int, data: bytes) -> None:
    await asyncio.to_thread(os.write, fd, data)


async def test_each_read_is_one_event_with_exactly_those_bytes(pipes) -> None:
    p = pipes()
    fanout, eof = fanout_on(Source(p.r, "stdout", 32 * 1024))
    sub = fanout.subscribe()
    fanout.start()
    await write(p.w, b"hello")
    assert await next_item(sub) == Chunk("stdout", b"hello")
    await write(p.w, b"x" * 100_000)  # more than one read: split at the read size, never merged
    got = b""
    while len(got) < 100_000:
        chunk = await next_item(sub)
        assert 0 < len(chunk.data) <= 32 * 1024
        got += chunk.data
    assert got == b"x" * 100_000
    os.close(p.w)
    await asyncio.wait_for(eof.wait(), 5)
    assert fanout.at_eof


async def test_eof_only_when_every_stream_is_done(pipes) -> None:
    out, err = pipes(), pipes()
    fanout, eof = fanout_on(Source(out.r, "stdout", 32768), Source(err.r, "stderr", 32768))
    sub = fanout.subscribe()
    fanout.start()
    await write(err.w, b"e")
    assert await next_item(sub) == Chunk("stderr", b"e")
    os.close(out.w)
    await asyncio.sleep(0.05)
    assert not eof.is_set()
    await write(err.w, b"still")
    assert await next_item(sub) == Chunk("stderr", b"still")
    os.close(err.w)
    await asyncio.wait_for(eof.wait(), 5)


async def test_without_subscribers_output_is_read_and_dropped(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 32768))
    fanout.start()
    # Far more than a pipe holds: a blocking writer only finishes because the fan-out keeps draining.
    await asyncio.wait_for(write(p.w, b"z" * (1 << 20)), 10)
    late = fanout.subscribe()
    await write(p.w, b"after")
    assert await next_item(late) == Chunk("stdout", b"after")  # §6.5: no replay for a late joiner


async def test_late_joiner_sees_only_what_follows(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 32768))
    first = fanout.subscribe()
    fanout.start()
    await write(p.w, b"one")
    assert await next_item(first) == Chunk("stdout", b"one")
    second = fanout.subscribe()
    await write(p.w, b"two")
    assert await next_item(first) == Chunk("stdout", b"two")
    assert await next_item(second) == Chunk("stdout", b"two")
    assert second.get_nowait() is None


async def test_slow_subscriber_pauses_the_reader_and_loses_nothing(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 1024))
    sub = fanout.subscribe()
    fanout.start()
    total = 4 << 20  # 4 MiB in 1 KiB reads: far beyond 64 events + the pipe buffer
    payload = bytes(range(256)) * (total // 256)
    writer = asyncio.ensure_future(write(p.w, payload))
    await asyncio.sleep(0.3)
    assert len(sub) == QUEUE_EVENTS  # bounded: the reader stopped at the limit
    assert not writer.done()  # and the writer is blocked on the full pipe
    got = bytearray()
    while len(got) < total:
        item = await next_item(sub)
        got += item.data
        assert len(sub) <= QUEUE_EVENTS
    assert bytes(got) == payload
    await asyncio.wait_for(writer, 5)


async def test_slow_subscriber_holds_others_back_until_it_leaves(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 1024))
    slow, fast = fanout.subscribe(), fanout.subscribe()
    fanout.start()
    writer = asyncio.ensure_future(write(p.w, b"y" * (1 << 20)))
    received = 0
    while True:  # the fast one gets what was read before the slow queue filled, then waits
        item = await fast.get(0.3)
        if item is None:
            break
        received += len(item.data)
    assert received < 1 << 20 and len(slow) == QUEUE_EVENTS
    slow.close()  # leaving frees the reader at once
    while received < 1 << 20:
        received += len((await next_item(fast)).data)
    assert received == 1 << 20
    await asyncio.wait_for(writer, 5)


async def test_end_follows_queued_chunks_and_nothing_after(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 32768))
    sub = fanout.subscribe()
    fanout.start()
    await write(p.w, b"last words")
    await asyncio.sleep(0.05)
    fanout.finish("END")
    assert await next_item(sub) == Chunk("stdout", b"last words")
    assert await next_item(sub) == "END"
    with pytest.raises(RuntimeError):
        fanout.subscribe()


async def test_get_times_out_with_none_and_interrupt_wakes_a_waiter(pipes) -> None:
    p = pipes()
    fanout, _ = fanout_on(Source(p.r, "stdout", 32768))
    sub = fanout.subscribe()
    fanout.start()
    assert await sub.get(0.05) is None
    waiting = asyncio.ensure_future(sub.get(10))
    await asyncio.sleep(0.01)
    sub.interrupt(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(waiting, 1)
    assert fanout.subscribers == 0


async def test_pty_master_eio_is_end_of_file() -> None:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    try:
        fanout, eof = fanout_on(Source(master, "pty", 16 * 1024))
        sub = fanout.subscribe()
        fanout.start()
        os.write(slave, b"tty says hi\n")
        item = await next_item(sub)
        assert item.stream == "pty" and item.data == b"tty says hi\r\n"  # the line discipline's ONLCR
        os.close(slave)
        slave = -1
        await asyncio.wait_for(eof.wait(), 5)  # read() -> EIO once no slave fd is open
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
