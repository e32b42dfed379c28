"""Incremental gzip of /files bodies and byte-range parsing (spec/envd.md §3.6, §3.7)."""

import gzip
import os
import zlib

import pytest

from envd.api.file_response import ByteRange, RangeNotSatisfiable, parse_range
from envd.api.gzip_stream import GzipDecoder, GzipEncoder, GzipError, check_gzip_header

MiB = 1 << 20


def encode(data: bytes, chunk: int = MiB) -> bytes:
    encoder = GzipEncoder()
    out = [encoder.encode(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(out) + encoder.finish()


@pytest.mark.parametrize(
    "data",
    [b"", b"abc", b"text line\n" * 300_000, os.urandom(2 * MiB + 5), os.urandom(100_000) + bytes(3 * MiB)],
    ids=["empty", "tiny", "text", "random", "mixed"],
)
def test_encoder_output_is_one_gzip_member_any_decoder_reads(data):
    body = encode(data)
    assert gzip.decompress(body) == data
    # httpx decodes with a single decompressobj and drops anything after the first member.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    assert inflater.decompress(body) + inflater.flush() == data
    assert inflater.eof and not inflater.unused_data


def test_encoder_compresses_text_and_stores_random_data_cheaply():
    text = b"text line\n" * 300_000
    assert len(encode(text)) < len(text) / 20
    noise = os.urandom(2 * MiB)
    assert len(encode(noise)) < len(noise) * 1.01


def decode(body: bytes, piece: int, out_chunk: int = 64 * 1024) -> list[bytes]:
    parts: list[bytes] = []
    decoder = GzipDecoder(parts.append, out_chunk=out_chunk)
    for i in range(0, len(body), piece):
        decoder.feed(body[i : i + piece])
    decoder.finish()
    return parts


def test_decoder_bounds_each_output_piece():
    bomb = gzip.compress(bytes(20 * MiB))  # ~20 KiB on the wire
    parts = decode(bomb, piece=len(bomb))
    assert b"".join(parts) == bytes(20 * MiB)
    assert max(len(p) for p in parts) <= 64 * 1024


def test_decoder_reads_concatenated_members_across_odd_boundaries():
    body = gzip.compress(b"first ") + gzip.compress(b"second")
    for piece in (1, 3, 7, len(body)):
        assert b"".join(decode(body, piece)) == b"first second"


def test_decoder_reports_truncation_and_garbage():
    body = gzip.compress(os.urandom(10_000))
    with pytest.raises(GzipError, match="unexpected EOF"):
        decode(body[:-20], piece=1000)
    with pytest.raises(GzipError):
        decode(body + b"trailing garbage", piece=1000)
    with pytest.raises(GzipError):
        decode(body[:10] + b"\xff" * 100, piece=1000)


@pytest.mark.parametrize(
    "head, message", [(b"", "EOF"), (b"\x1f\x8b\x08", "unexpected EOF"), (b"plain text body", "gzip: invalid header")]
)
def test_gzip_header_check(head, message):
    with pytest.raises(GzipError, match=f"^{message}$"):
        check_gzip_header(head)
    check_gzip_header(gzip.compress(b"x")[:10])


@pytest.mark.parametrize(
    "header, size, expected",
    [
        ("bytes=0-4", 10, [ByteRange(0, 5)]),
        ("bytes=5-", 10, [ByteRange(5, 5)]),
        ("bytes=-3", 10, [ByteRange(7, 3)]),
        ("bytes=-30", 10, [ByteRange(0, 10)]),
        ("bytes=8-100", 10, [ByteRange(8, 2)]),
        ("bytes=0-0, 2-3", 10, [ByteRange(0, 1), ByteRange(2, 2)]),
        ("bytes=20-30, 1-1", 10, [ByteRange(1, 1)]),  # non-overlapping ranges are dropped
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["items=0-1", "bytes=5-2", "bytes=a-b", "bytes=1", "bytes=--1"])
def test_parse_range_invalid(header):
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_range(header, 10)
    assert not err.value.no_overlap


@pytest.mark.parametrize("header, size", [("bytes=10-", 10), ("bytes=0-", 0), ("bytes=-0", 10)])
def test_parse_range_no_overlap(header, size):
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_range(header, size)
    assert err.value.no_overlap
