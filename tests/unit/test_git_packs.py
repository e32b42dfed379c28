"""Receiving packs in one pass (packs.py), against dulwich's own DiskObjectStore on the same packs made by git."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest
from dulwich.errors import ChecksumMismatch, ObjectFormatException
from dulwich.repo import Repo

from envd.services.git import packs
from envd.services.git.progress import ProgressLines
from tests.bench.bench_git import fast_import_history
from tests.git_server import git

COMMITS = 300


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A bare repository with COMMITS commits rewriting 50 files (deltas of all kinds in its packs)."""
    bare = tmp_path_factory.mktemp("source") / "src.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    fast_import_history(bare, COMMITS)
    return bare


def pack_of(bare: Path, revs: str, *flags: str) -> bytes:
    """What `git upload-pack` would send for `revs` (rev-list syntax, one per line): deltas by offset unless
    flags say otherwise."""
    flags = flags or ("--delta-base-offset",)
    return subprocess.run(["git", "pack-objects", "--stdout", "--revs", *flags], cwd=bare,
                          input=revs.encode(), capture_output=True, check=True).stdout


def receive(path: Path, data: bytes, one_pass: bool, progress=None) -> Repo:
    repo = Repo.init_bare(str(path), mkdir=True)
    if one_pass:
        packs.receive_in_one_pass(repo)
    repo.object_store.add_thin_pack(io.BytesIO(data).read, None, progress=progress)
    return repo


def pack_files(repo: Repo) -> dict[str, bytes]:
    pack_dir = Path(repo.object_store.pack_dir)
    return {p.name: p.read_bytes() for p in sorted(pack_dir.iterdir())}


def leftovers(repo: Repo) -> list[str]:
    objects = Path(repo.object_store.path)
    return sorted(str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file())


@pytest.mark.parametrize("deltas", ["--delta-base-offset", "--no-reuse-delta"])  # OFS_DELTA / REF_DELTA
def test_a_pack_is_stored_and_indexed_byte_for_byte_as_dulwich_does(source, tmp_path, deltas):
    data = pack_of(source, "main\n", deltas)
    ours, theirs = receive(tmp_path / "ours", data, True), receive(tmp_path / "theirs", data, False)
    assert type(ours.object_store) is packs.OnePassObjectStore
    files = pack_files(ours)
    assert len(files) == 2 and files == pack_files(theirs)  # same name, same .pack, same .idx (sha, offset, crc32)
    head = git("rev-parse", "main", cwd=source).strip().encode()
    assert ours[head].message == f"commit {COMMITS - 1}".encode()
    # git itself checks every object and the index
    git("fsck", "--strict", "--no-progress", cwd=tmp_path / "ours")
    ours.close(), theirs.close()


def test_a_thin_pack_gets_the_bases_it_deltas_against_appended(source, tmp_path):
    base = pack_of(source, "main~100\n")
    thin = pack_of(source, "main\n^main~100\n", "--thin", "--delta-base-offset")
    repos = {}
    for one_pass in (True, False):
        repo = receive(tmp_path / str(one_pass), base, one_pass)
        repo.object_store.add_thin_pack(io.BytesIO(thin).read, None)
        repos[one_pass] = repo
    assert pack_files(repos[True]) == pack_files(repos[False])
    assert len(pack_files(repos[True])) == 4
    git("fsck", "--strict", "--no-progress", cwd=tmp_path / "True")
    for repo in repos.values():
        repo.close()


def test_objects_beyond_the_inflated_budget_are_read_again_from_the_pack(source, tmp_path, monkeypatch):
    data = pack_of(source, "main\n")
    monkeypatch.setattr(packs, "INFLATED_BUDGET", 4096)  # a few objects kept, the rest re-read
    ours, theirs = receive(tmp_path / "ours", data, True), receive(tmp_path / "theirs", data, False)
    assert pack_files(ours) == pack_files(theirs)
    ours.close(), theirs.close()


def test_progress_counts_objects_and_ends_done(source, tmp_path):
    lines = []
    sink = ProgressLines(lines.append, lambda: False)
    sink.INTERVAL_S = 0
    receive(tmp_path / "r", pack_of(source, "main\n"), True, progress=sink).close()
    stages = {(p.stage, p.total) for p in lines}
    assert stages == {("Unpacking objects", 3 * COMMITS), ("Checking objects", 3 * COMMITS)}
    assert lines[-1].message == f"Checking objects: 100% ({3 * COMMITS}/{3 * COMMITS}), done."


def test_a_cancelled_receive_leaves_no_file(source, tmp_path):
    sink = ProgressLines(lambda p: None, lambda: True)
    with pytest.raises(InterruptedError):
        receive(tmp_path / "r", pack_of(source, "main\n"), True, progress=sink)
    assert leftovers(Repo(str(tmp_path / "r"))) == []


def malformed_tree_pack(tmp_path: Path) -> bytes:
    bare = tmp_path / "bad.git"
    git("init", "-q", "--bare", str(bare))
    sha = subprocess.run(["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"], cwd=bare,
                         input=b"100644 no-nul-and-no-sha", capture_output=True, check=True).stdout
    return subprocess.run(["git", "pack-objects", "--stdout"], cwd=bare, input=sha, capture_output=True,
                          check=True).stdout


@pytest.mark.parametrize("one_pass", [True, False])
def test_a_malformed_tree_fails_the_receive_as_in_dulwich_and_leaves_nothing(tmp_path, one_pass):
    data = malformed_tree_pack(tmp_path)
    with pytest.raises(ObjectFormatException):
        receive(tmp_path / "r", data, one_pass)
    assert leftovers(Repo(str(tmp_path / "r"))) == []


@pytest.mark.parametrize("damage", ["flipped", "truncated", "extended"])
def test_a_corrupt_pack_fails_and_leaves_nothing(source, tmp_path, damage):
    data = bytearray(pack_of(source, "main\n"))
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncated":
        del data[len(data) // 2:]
    else:  # bytes between the last object and a checksum that covers them
        data[-20:] = hashlib.sha1(bytes(data[:-20]) + b"junk").digest()
        data[-20:-20] = b"junk"
    with pytest.raises((ChecksumMismatch, ValueError)):
        receive(tmp_path / "r", bytes(data), True)
    assert leftovers(Repo(str(tmp_path / "r"))) == []


def test_a_network_stream_is_left_to_dulwichs_reader(source, tmp_path):
    # read_some given: a live stream (the server side), not a fetched pack's spool that ends with the pack.
    lines = []
    sink = ProgressLines(lines.append, lambda: False)
    stream = io.BytesIO(pack_of(source, "main\n"))
    repo = Repo.init_bare(str(tmp_path / "r"), mkdir=True)
    packs.receive_in_one_pass(repo)
    repo.object_store.add_thin_pack(stream.read, stream.read, progress=sink)
    assert len(pack_files(repo)) == 2
    assert "Unpacking objects" not in {p.stage for p in lines} and any("pack entries" in p.message for p in lines)
    repo.close()
