"""File metadata as user.e2b.* xattrs: limits and whole-set replacement (spec/envd.md §3.7.3)."""

import os

import pytest

from envd.errors import InvalidArgument
from envd.services.filesystem.metadata import (
    MAX_KEY_BYTES,
    MAX_TOTAL_BYTES,
    read_metadata,
    replace_metadata,
    validate_metadata,
)


def test_limits_are_the_specified_ones():
    assert (MAX_KEY_BYTES, MAX_TOTAL_BYTES) == (246, 4096)


def test_valid_metadata_passes():
    validate_metadata({})
    validate_metadata({"project": "envd", "with space": "Value With Spaces ~!"})
    validate_metadata({"k" * 246: "v"})


def test_empty_key_is_invalid():
    with pytest.raises(InvalidArgument, match="must not be empty"):
        validate_metadata({"": "v"})


def test_key_too_long():
    with pytest.raises(InvalidArgument, match="247 bytes, the limit is 246"):
        validate_metadata({"k" * 247: "v"})


@pytest.mark.parametrize(
    "metadata, byte, offset",
    [
        ({"ok": "line\nbreak"}, "0x0a", 4),
        ({"ok": "caf\u00e9"}, "0xe9", 3),
        ({"ok": "tab\there"}, "0x09", 3),
        ({"bad\x7fkey": "v"}, "0x7f", 3),
    ],
)
def test_non_printable_bytes_are_named_with_their_offset(metadata, byte, offset):
    with pytest.raises(InvalidArgument) as err:
        validate_metadata(metadata)
    assert f"byte {byte} at offset {offset}" in err.value.message


def test_total_size_counts_prefix_key_and_value():
    # Each entry costs 9 (`user.e2b.`) + len(key) + len(value).
    exact = {"a": "v" * (MAX_TOTAL_BYTES - 9 - 1)}
    validate_metadata(exact)
    with pytest.raises(InvalidArgument, match="4097 bytes in total, the limit is 4096"):
        validate_metadata({"a": "v" * (MAX_TOTAL_BYTES - 9)})
    many = {f"k{i:03d}": "x" * 20 for i in range(128)}  # 128 * (9 + 4 + 20) = 4224
    with pytest.raises(InvalidArgument, match="limit is 4096"):
        validate_metadata(many)


def test_replace_sets_replaces_and_clears(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    os.setxattr(path, "user.other", b"kept")

    assert replace_metadata(str(path), {"a": "1", "b": "2"}) is True
    assert read_metadata(str(path)) == {"a": "1", "b": "2"}

    replace_metadata(str(path), {"b": "3", "c": "4"})
    assert read_metadata(str(path)) == {"b": "3", "c": "4"}

    replace_metadata(str(path), {})
    assert read_metadata(str(path)) == {}
    # Attributes outside user.e2b.* are never touched.
    assert os.getxattr(path, "user.other") == b"kept"


def test_replace_works_on_an_open_descriptor(tmp_path):
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        replace_metadata(fd, {"k": "v"})
    finally:
        os.close(fd)
    assert read_metadata(str(path)) == {"k": "v"}


def test_read_metadata_of_missing_path_is_empty(tmp_path):
    assert read_metadata(str(tmp_path / "missing")) == {}
