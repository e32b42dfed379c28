"""EntryInfo (spec/envd.md §7.1) on real files: links, devices, fifos, sockets, ownership, metadata."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from envd.errors import Internal, NotFound
from envd.services.filesystem.entry_info import FileType, base_name, entry_info, permissions_string

USER_UID = 1001  # the `user` account (tests/conftest.py)


def make_file(path: Path, mode: int, content: bytes = b"") -> Path:
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (stat.S_IFREG | 0o644, "-rw-r--r--"),
        (stat.S_IFDIR | 0o755, "drwxr-xr-x"),
        (stat.S_IFLNK | 0o777, "Lrwxrwxrwx"),
        (stat.S_IFDIR | stat.S_ISVTX | 0o777, "dtrwxrwxrwx"),
        (stat.S_IFREG | stat.S_ISUID | 0o755, "urwxr-xr-x"),
        (stat.S_IFCHR | 0o666, "Dcrw-rw-rw-"),
        (stat.S_IFBLK | 0o660, "Drw-rw----"),
        (stat.S_IFIFO | 0o644, "prw-r--r--"),
        (stat.S_IFSOCK | 0o777, "Srwxrwxrwx"),
        (stat.S_IFREG | stat.S_ISGID | 0o755, "grwxr-xr-x"),
        (stat.S_IFREG | stat.S_ISUID | stat.S_ISGID | 0o700, "ugrwx------"),
        (stat.S_IFREG, "----------"),
    ],
)
def test_permissions_string_follows_go_file_mode_letters(mode: int, text: str) -> None:
    assert permissions_string(mode) == text


def test_permissions_of_real_entries(tmp_path: Path) -> None:
    regular = make_file(tmp_path / "f", 0o644)
    directory = tmp_path / "d"
    directory.mkdir()
    directory.chmod(0o755)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    setuid = make_file(tmp_path / "suid", 0o4755)
    link = tmp_path / "link"
    link.symlink_to(regular)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    os.chmod(fifo, 0o644)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        os.chmod(sock_path, 0o777)
        assert entry_info(str(sock_path)).permissions == "Srwxrwxrwx"
        assert entry_info(str(sock_path)).type == FileType.UNSPECIFIED

    assert entry_info(str(regular)).permissions == "-rw-r--r--"
    assert entry_info(str(directory)).permissions == "drwxr-xr-x"
    assert entry_info(str(sticky)).permissions == "dtrwxrwxrwx"
    assert entry_info(str(setuid)).permissions == "urwxr-xr-x"
    assert entry_info(str(link)).permissions == "Lrwxrwxrwx"
    assert entry_info(str(fifo)).permissions == "prw-r--r--"
    assert entry_info("/dev/null").permissions == "Dcrw-rw-rw-"


def test_regular_file(tmp_path: Path) -> None:
    path = make_file(tmp_path / "data.txt", 0o640, b"hello")
    os.chown(path, USER_UID, USER_UID)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))
    info = entry_info(str(path))
    assert info.name == "data.txt"
    assert info.path == str(path)
    assert info.type == FileType.FILE
    assert info.size == 5
    assert info.mode == 0o640
    assert info.permissions == "-rw-r-----"
    assert (info.owner, info.group) == ("user", "user")
    assert info.modified_ns == 1_700_000_000_123_456_789
    assert info.symlink_target is None
    assert dict(info.metadata) == {}


def test_mode_excludes_setuid_sticky_bits(tmp_path: Path) -> None:
    path = make_file(tmp_path / "suid", 0o4755)
    info = entry_info(str(path))
    assert info.mode == 0o755
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert entry_info(str(sticky)).mode == 0o777
    assert entry_info(str(sticky)).type == FileType.DIRECTORY


def test_owner_and_group_fall_back_to_numbers(tmp_path: Path) -> None:
    path = make_file(tmp_path / "orphan", 0o644)
    os.chown(path, 54321, 54322)
    info = entry_info(str(path))
    assert (info.owner, info.group) == ("54321", "54322")


def test_symlink_to_file_describes_target_but_permissions_describe_link(tmp_path: Path) -> None:
    target = make_file(tmp_path / "target.txt", 0o600, b"abc")
    link = tmp_path / "link"
    link.symlink_to("target.txt")  # relative link text
    info = entry_info(str(link))
    assert info.type == FileType.FILE
    assert info.mode == 0o600
    assert info.symlink_target == str(target)  # resolved and absolute, not the link text
    assert info.size == len("target.txt")
    assert info.permissions == "Lrwxrwxrwx"
    assert info.name == "link"
    assert info.path == str(link)


def test_symlink_chain_is_fully_resolved(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (tmp_path / "hop1").symlink_to(real_dir)
    (tmp_path / "hop2").symlink_to(tmp_path / "hop1")
    info = entry_info(str(tmp_path / "hop2"))
    assert info.type == FileType.DIRECTORY
    assert info.symlink_target == str(real_dir)


def test_symlink_through_symlinked_parent_resolves_every_component(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    make_file(real_dir / "f", 0o644)
    (tmp_path / "alias").symlink_to(real_dir)
    (tmp_path / "link").symlink_to(tmp_path / "alias" / "f")
    assert entry_info(str(tmp_path / "link")).symlink_target == str(real_dir / "f")


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "missing")
    info = entry_info(str(link))
    assert info.type == FileType.UNSPECIFIED
    assert info.mode == 0
    assert info.symlink_target == str(link)
    assert info.permissions == "Lrwxrwxrwx"


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    info = entry_info(str(tmp_path / "a"))
    assert info.type == FileType.UNSPECIFIED
    assert info.mode == 0
    assert info.symlink_target == str(tmp_path / "a")


def test_symlink_to_device_is_unspecified_with_target_mode(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    info = entry_info(str(link))
    assert info.type == FileType.UNSPECIFIED
    assert info.mode == 0o666
    assert info.symlink_target == "/dev/null"


def test_fifo_and_device_are_unspecified(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert entry_info(str(fifo)).type == FileType.UNSPECIFIED
    assert entry_info("/dev/null").type == FileType.UNSPECIFIED


def test_missing_path_is_not_found_with_go_style_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(NotFound) as err:
        entry_info(str(missing))
    assert err.value.message == f"file not found: lstat {missing}: no such file or directory"


def test_file_used_as_directory_is_internal(tmp_path: Path) -> None:
    path = make_file(tmp_path / "f", 0o644)
    with pytest.raises(Internal) as err:
        entry_info(f"{path}/x")
    assert err.value.message == f"error getting file info: lstat {path}/x: not a directory"


def test_root_and_trailing_slash_names() -> None:
    assert entry_info("/").name == "/"
    assert base_name("/a/b/") == "b"
    assert base_name("/") == "/"
    assert base_name("//") == "/"


def test_zero_mtime_is_kept_as_unset(tmp_path: Path) -> None:
    path = make_file(tmp_path / "epoch", 0o644)
    os.utime(path, ns=(0, 0))
    assert entry_info(str(path)).modified_ns == 0


def test_metadata_from_user_e2b_xattrs(tmp_path: Path) -> None:
    path = make_file(tmp_path / "meta", 0o644)
    os.setxattr(path, "user.e2b.owner", b"alice")
    os.setxattr(path, "user.e2b.bad", b"\xff\xfe")  # not UTF-8: skipped
    os.setxattr(path, "user.other", b"ignored")
    assert dict(entry_info(str(path)).metadata) == {"owner": "alice"}
    # Read through links (the link itself has no xattrs of its own).
    link = tmp_path / "meta-link"
    link.symlink_to(path)
    assert dict(entry_info(str(link)).metadata) == {"owner": "alice"}
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nothing")
    assert dict(entry_info(str(dangling)).metadata) == {}
