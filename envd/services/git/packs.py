"""Receiving a fetched pack: every object inflated once, then hashed and checked in a single walk.

dulwich's DiskObjectStore.add_thin_pack goes over an incoming pack four times in pure Python: copying the stream
(inflating each object to find where it ends), indexing it (inflating again, applying deltas, hashing), then,
once moved in, reading it whole again to check every object parses (PackInflater: inflate, apply deltas, parse).
That was ~75% of a clone. OnePassObjectStore copies the fetched pack as bytes, inflates each object once, keeps
that and resolves the delta chains from it, hashing and parsing each object as it goes (the same checks, so a
malformed object still fails the fetch), then writes the index. Inflated data is kept up to INFLATED_BUDGET bytes
per pack; objects beyond it are inflated again from the written pack, as dulwich does.
"""

from __future__ import annotations

import io
import mmap
import os
import tempfile
from collections.abc import Callable

from dulwich.file import GitFile
from dulwich.object_store import PACK_MODE, DiskObjectStore
from dulwich.objects import Blob, ShaFile, Tree, parse_tree
from dulwich.pack import (
    ApplyDeltaError,
    PackData,
    PackIndexer,
    UnpackedObject,
    apply_delta,
    chunks_length,
    extend_pack,
    unpack_object_at,
    write_pack_index,
)

INFLATED_BUDGET = 64 << 20  # bytes of inflated objects held per pack: sandboxes may have 512 MiB in all
COPY_CHUNK = 1 << 20
PACK_HEADER_SIZE = 12
PROGRESS_EVERY = 500  # objects; each report also lets a cancelled clone stop (progress.py)


class _Resolver(PackIndexer):
    """Index entries (sha, offset, crc32) of a received pack; each object is parsed on the way."""

    _compute_crc32 = True  # for the objects inflated again from the pack

    def __init__(self, store: DiskObjectStore, budget: int) -> None:
        super().__init__(
            None, store.object_format.hash_func, resolve_ext_ref=store.get_raw, object_format=store.object_format
        )
        self._inflated: dict[int, UnpackedObject] = {}
        self._budget = budget

    def record(self, unpacked: UnpackedObject) -> None:
        super().record(unpacked)
        if unpacked.decomp_len <= self._budget:
            self._budget -= unpacked.decomp_len
            self._inflated[unpacked.offset] = unpacked

    def _resolve_object(self, offset: int, obj_type_num: int, base_chunks) -> UnpackedObject:
        unpacked = self._inflated.pop(offset, None)
        if unpacked is None:
            return super()._resolve_object(offset, obj_type_num, base_chunks)
        if base_chunks is not None:  # a delta: as DeltaChainIterator._resolve_object
            unpacked.obj_type_num = obj_type_num
            unpacked.obj_chunks = apply_delta(base_chunks, unpacked.decomp_chunks)
            if obj_type_num != Blob.type_num and chunks_length(unpacked.obj_chunks) == 0:
                raise ApplyDeltaError(f"delta resolved to empty payload for type {obj_type_num}")
        return unpacked

    def _result(self, unpacked: UnpackedObject) -> tuple[bytes, int, int | None]:
        # Parsing is the check dulwich's PackInflater pass makes: it raises ObjectFormatException on a malformed
        # commit/tree/tag (a blob is any bytes). A tree only goes through the parser Tree uses (dulwich's Rust
        # one): building the Tree's entry dict, which nothing reads here, would cost more than the parse.
        if unpacked.obj_type_num == Tree.type_num:
            parse_tree(b"".join(unpacked.obj_chunks), sha_len=self._object_format.oid_length)
        elif unpacked.obj_type_num != Blob.type_num:
            ShaFile.from_raw_chunks(unpacked.obj_type_num, unpacked.obj_chunks, object_format=self._object_format)
        return super()._result(unpacked)


def _report(progress: Callable[[bytes], None] | None, stage: str, done: int, total: int) -> None:
    """`stage: pct% (done/total)` as git prints it, every PROGRESS_EVERY objects and at the end."""
    if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
        end = ", done.\n" if done == total else "\r"
        progress(f"{stage}: {done * 100 // max(total, 1):3d}% ({done}/{total}){end}".encode())


class OnePassObjectStore(DiskObjectStore):
    """A DiskObjectStore whose add_thin_pack (what fetch and clone use with any git server) is one pass.

    Installed on an open repository's store with `receive_in_one_pass`: it adds no state, only this method.
    """

    def add_thin_pack(self, read_all, read_some, progress=None, *, max_input_size: int | None = None):
        if max_input_size or read_some is not None:
            # Not a fetch's spooled pack (client.fetch passes its read, which ends where the pack does) but a
            # network stream, perhaps with a size limit: dulwich's path reads it object by object.
            return super().add_thin_pack(read_all, read_some, progress, max_input_size=max_input_size)
        fd, path = tempfile.mkstemp(dir=self.path, prefix="tmp_pack_")
        try:
            with os.fdopen(fd, "w+b") as f:
                os.chmod(path, PACK_MODE)
                while chunk := read_all(COPY_CHUNK):
                    f.write(chunk)
                f.flush()
                resolver = _Resolver(self, INFLATED_BUDGET)
                with PackData(path, file=f, object_format=self.object_format) as data:
                    data.check()  # the trailer: the checksum of all before it
                    self._unpack(f, len(data), resolver, progress)
                    resolver.set_pack_data(data)  # for objects not kept inflated
                    entries = []
                    for entry in resolver:
                        entries.append(entry)
                        _report(progress, "Checking objects", len(entries), len(data))
                    pack_sha = data.get_stored_checksum()
                return self._move_in(f, path, entries, set(resolver.ext_refs()), pack_sha, progress)
        except BaseException:
            if os.path.exists(path):
                os.remove(path)
            raise

    def _unpack(self, f, total: int, resolver: _Resolver, progress) -> None:
        """Inflates each of the pack's objects in turn (where one ends is only known by inflating it)."""
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as contents:
            offset = PACK_HEADER_SIZE
            for i in range(1, total + 1):
                unpacked, offset = unpack_object_at(contents, offset, self.object_format.hash_func,
                                                    compute_crc32=True)
                resolver.record(unpacked)
                _report(progress, "Unpacking objects", i, total)
            if offset != len(contents) - self.object_format.oid_length:
                raise ValueError(f"malformed pack: its {total} objects end at byte {offset}, not at its checksum")

    def _move_in(self, f, path: str, entries: list, ext_refs: set, pack_sha: bytes, progress):
        """DiskObjectStore._complete_pack without its re-reading of every object (done above)."""
        if ext_refs:  # a thin pack: append the bases it deltas against
            pack_sha, extra = extend_pack(
                f, ext_refs, get_raw=self.get_raw, compression_level=self.pack_compression_level,
                progress=progress, object_format=self.object_format,
            )
            entries.extend(extra)
        f.flush()
        if self.fsync_object_files:
            os.fsync(f.fileno())
        f.close()
        entries.sort()
        base = self._get_pack_basepath(entries)
        name = os.path.basename(base)[len("pack-"):].encode("ascii")
        for pack in self.packs:
            if pack.name() == name:  # already have these objects
                os.remove(path)
                return pack
        index = io.BytesIO()  # write_pack_index makes three small writes per object: not each through GitFile
        write_pack_index(index, entries, pack_sha, version=self.pack_index_version)
        os.rename(path, base + ".pack")
        try:
            with GitFile(
                base + ".idx", "wb", mask=PACK_MODE, fsync=self.fsync_object_files, shared_perm=self.shared_perm
            ) as index_file:  # written to idx.lock, renamed into place when complete
                index_file.write(index.getbuffer())
        except BaseException:
            os.remove(base + ".pack")
            raise
        return next(pack for pack in self.packs if pack.name() == name)


def receive_in_one_pass(repo) -> None:
    """Make `repo`'s object store take fetched packs with OnePassObjectStore.add_thin_pack.

    The store keeps its configuration (it is the same object, only its class changes): rebuilding one would
    mean repeating dulwich's reading of every core.* / pack.* setting. A store of another kind is left as is.
    """
    if type(repo.object_store) is DiskObjectStore:
        repo.object_store.__class__ = OnePassObjectStore
