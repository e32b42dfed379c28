"""Filesystem core operations (spec/envd.md §7.2-7.6) on real temporary directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envd.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from envd.services.filesystem import operations
from envd.services.filesystem.entry_info import FileType

UID = GID = 1001  # the `user` account


def paths(entries) -> list[str]:
    return [entry.path for entry in entries]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """d/ with a/ (x, deep/ (y)), b, and a link to a/."""
    root = tmp_path / "d"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "a" / "x").write_text("x")
    (root / "a" / "deep" / "y").write_text("y")
    (root / "b").write_text("b")
    (root / "link-to-a").symlink_to(root / "a")
    return root


# -- ListDir -----------------------------------------------------------------------------------------


def test_list_depth_one_and_zero(tree: Path) -> None:
    expected = [f"{tree}/a", f"{tree}/b", f"{tree}/link-to-a"]
    assert paths(operations.list_dir(str(tree), 1)) == expected
    assert paths(operations.list_dir(str(tree), 0)) == expected  # 0 is treated as 1


def test_list_depth_two_is_preorder(tree: Path) -> None:
    assert paths(operations.list_dir(str(tree), 2)) == [
        f"{tree}/a",
        f"{tree}/a/deep",
        f"{tree}/a/x",
        f"{tree}/b",
        f"{tree}/link-to-a",
    ]


def test_list_depth_three_reaches_deeper_but_never_enters_links(tree: Path) -> None:
    listed = operations.list_dir(str(tree), 3)
    assert paths(listed) == [
        f"{tree}/a",
        f"{tree}/a/deep",
        f"{tree}/a/deep/y",
        f"{tree}/a/x",
        f"{tree}/b",
        f"{tree}/link-to-a",
    ]
    link = listed[-1]
    assert link.type == FileType.DIRECTORY  # the target's type
    assert link.symlink_target == f"{tree}/a"
    assert link.permissions.startswith("L")


def test_list_orders_names_bytewise(tmp_path: Path) -> None:
    for name in ["b", "B", "a_", "a", "ä", "Z9", "_"]:
        (tmp_path / name).write_text("")
    names = [entry.name for entry in operations.list_dir(str(tmp_path), 1)]
    assert names == ["B", "Z9", "_", "a", "a_", "b", "ä"]


def test_list_through_symlinked_directory_shows_paths_under_link(tree: Path) -> None:
    listed = operations.list_dir(f"{tree}/link-to-a", 2)
    assert paths(listed) == [f"{tree}/link-to-a/deep", f"{tree}/link-to-a/deep/y", f"{tree}/link-to-a/x"]
    assert [entry.name for entry in listed] == ["deep", "y", "x"]


def test_list_unclean_requested_path_yields_clean_entry_paths(tree: Path) -> None:
    listed = operations.list_dir(f"{tree}/a/../a/", 1)
    assert paths(listed) == [f"{tree}/a/deep", f"{tree}/a/x"]


def test_list_empty_directory(tmp_path: Path) -> None:
    assert operations.list_dir(str(tmp_path), 5) == []


def test_list_missing_path(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        operations.list_dir(str(tmp_path / "missing"), 1)
    assert err.value.message == f"path not found: lstat {tmp_path}/missing: no such file or directory"


def test_list_dangling_link_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(NotFound):
        operations.list_dir(str(tmp_path / "dangling"), 1)


def test_list_symlink_loop_is_failed_precondition(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(FailedPrecondition) as err:
        operations.list_dir(str(tmp_path / "a"), 1)
    assert err.value.message == f'cyclic symlink or chain >255 links at "{tmp_path}/a"'


def test_list_file_is_invalid_argument_naming_real_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    (tmp_path / "f-link").symlink_to(tmp_path / "f")
    with pytest.raises(InvalidArgument) as err:
        operations.list_dir(str(tmp_path / "f-link"), 1)
    assert err.value.message == f"path is not a directory: {tmp_path}/f"


def test_list_reports_entry_details(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"12345")
    os.chmod(tmp_path / "file", 0o600)
    (entry,) = operations.list_dir(str(tmp_path), 1)
    assert (entry.name, entry.type, entry.size, entry.mode) == ("file", FileType.FILE, 5, 0o600)


def test_list_includes_special_files_with_unspecified_type(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (entry,) = operations.list_dir(str(tmp_path), 1)
    assert entry.type == FileType.UNSPECIFIED
    assert entry.permissions.startswith("p")


# -- Stat --------------------------------------------------------------------------------------------


def test_stat_is_entry_info(tree: Path) -> None:
    info = operations.stat(str(tree / "b"))
    assert (info.name, info.type, info.size) == ("b", FileType.FILE, 1)
    with pytest.raises(NotFound):
        operations.stat(str(tree / "nope"))


# -- MakeDir -----------------------------------------------------------------------------------------


def test_make_dir_creates_parents_owned_by_user(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    target = existing / "p" / "q"
    info = operations.make_dir(str(target), UID, GID)
    assert info.path == str(target)
    assert info.type == FileType.DIRECTORY
    assert info.owner == "user"
    for new in (existing / "p", target):
        st = new.stat()
        assert (st.st_uid, st.st_gid) == (UID, GID)
        assert st.st_mode & 0o777 == 0o755 & ~current_umask()
    assert existing.stat().st_uid == 0  # pre-existing directories are left alone


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_make_dir_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(AlreadyExists) as err:
        operations.make_dir(str(tmp_path), UID, GID)
    assert err.value.message == f"directory already exists: {tmp_path}"


def test_make_dir_existing_link_to_directory_is_already_exists(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(AlreadyExists):
        operations.make_dir(str(tmp_path / "link"), UID, GID)


def test_make_dir_existing_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidArgument) as err:
        operations.make_dir(str(tmp_path / "f"), UID, GID)
    assert err.value.message == f"path already exists but it is not a directory: {tmp_path}/f"


def test_make_dir_under_a_file_is_internal(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(Internal) as err:
        operations.make_dir(str(tmp_path / "f" / "sub" / "subsub"), UID, GID)
    assert err.value.message == f"path is a file: {tmp_path}/f"
    assert (tmp_path / "f").is_file()


# -- Move --------------------------------------------------------------------------------------------


def test_move_file_into_new_directories(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("data")
    destination = tmp_path / "new" / "dir" / "dst.txt"
    info = operations.move(str(tmp_path / "src.txt"), str(destination), UID, GID)
    assert info.path == str(destination)
    assert info.name == "dst.txt"
    assert destination.read_text() == "data"
    assert not (tmp_path / "src.txt").exists()
    assert (tmp_path / "new").stat().st_uid == UID
    assert (tmp_path / "new" / "dir").stat().st_uid == UID


def test_move_replaces_existing_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    operations.move(str(tmp_path / "a"), str(tmp_path / "b"), UID, GID)
    assert (tmp_path / "b").read_text() == "new"


def test_move_directory(tmp_path: Path) -> None:
    (tmp_path / "d" / "inner").mkdir(parents=True)
    info = operations.move(str(tmp_path / "d"), str(tmp_path / "e"), UID, GID)
    assert info.type == FileType.DIRECTORY
    assert (tmp_path / "e" / "inner").is_dir()


def test_move_missing_source_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        operations.move(str(tmp_path / "missing"), str(tmp_path / "x" / "y"), UID, GID)
    assert err.value.message.startswith("source file not found: ")
    assert not (tmp_path / "x").exists()


def test_move_dangling_symlink_moves_the_link(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to("nowhere")
    info = operations.move(str(tmp_path / "dangling"), str(tmp_path / "moved"), UID, GID)
    assert os.readlink(tmp_path / "moved") == "nowhere"
    assert info.symlink_target == str(tmp_path / "moved")


def test_move_onto_non_empty_directory_is_internal(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep").write_text("")
    with pytest.raises(Internal) as err:
        operations.move(str(tmp_path / "a"), str(tmp_path / "b"), UID, GID)
    assert err.value.message == f"error renaming: rename {tmp_path}/a {tmp_path}/b: directory not empty"


def test_move_across_filesystems_has_no_copy_fallback(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem")
    (tmp_path / "f").write_text("")
    target = other / f"envd-test-{os.getpid()}"
    with pytest.raises(Internal) as err:
        operations.move(str(tmp_path / "f"), str(target), UID, GID)
    assert "invalid cross-device link" in err.value.message
    assert (tmp_path / "f").exists()
    assert not target.exists()


# -- Remove ------------------------------------------------------------------------------------------


def test_remove_file_and_directory_tree(tree: Path) -> None:
    operations.remove(str(tree / "b"))
    assert not (tree / "b").exists()
    operations.remove(str(tree / "a"))
    assert not (tree / "a").exists()


def test_remove_missing_is_success(tmp_path: Path) -> None:
    operations.remove(str(tmp_path / "missing"))
    operations.remove(str(tmp_path / "missing" / "deeper"))


def test_remove_symlink_removes_link_not_target(tree: Path) -> None:
    operations.remove(str(tree / "link-to-a"))
    assert not os.path.lexists(tree / "link-to-a")
    assert (tree / "a" / "x").exists()


def test_remove_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to("nowhere")
    operations.remove(str(tmp_path / "dangling"))
    assert not os.path.lexists(tmp_path / "dangling")


def test_remove_directory_with_links_inside_keeps_link_targets(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("")
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    (doomed / "link").symlink_to(keep)
    operations.remove(str(doomed))
    assert not doomed.exists()
    assert (keep / "precious").exists()


def test_remove_failure_is_internal() -> None:
    with pytest.raises(Internal) as err:
        operations.remove("/proc/self/status")
    assert err.value.message.startswith("error removing file or directory: ")
