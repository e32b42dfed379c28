"""Reference for the upload benchmark: the bare asyncio receive loop, with no HTTP framework at all.

Reads one HTTP/1.1 request with a Content-Length body from a StreamReader and writes it to a file in
a worker thread, batching like envd does. Run: python -m tests.bench.raw_receiver PORT DEST.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dest: str) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    batch, size, got, pending = [], 0, 0, None
    while got < length:
        chunk = await reader.read(1 << 18)
        if not chunk:
            break
        got += len(chunk)
        batch.append(chunk)
        size += len(chunk)
        if size >= 1 << 20:
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(asyncio.to_thread(os.writev, fd, batch))
            batch, size = [], 0
    if pending is not None:
        await pending
    if batch:
        os.writev(fd, batch)
    os.close(fd)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


async def main(port: int, dest: str) -> None:
    server = await asyncio.start_server(lambda r, w: receive(r, w, dest), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
