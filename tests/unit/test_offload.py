"""Deciding where filesystem calls run: the mount table watch (network/FUSE mounts -> threads)."""

import asyncio
import subprocess
import threading

import pytest

from envd.services.filesystem.offload import MountTable, Offload, slow_mounts_in

MOUNTINFO = """\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
36 22 0:50 / /mnt/nfs\\040share rw,noatime - nfs4 server:/export rw,vers=4.2
37 22 0:51 / /home/user/remote rw - fuse.sshfs user@host: rw
38 22 0:52 / /tmp rw - tmpfs tmpfs rw
39 22 0:53 / /mnt/smb rw - cifs //srv/share rw
"""


def test_network_and_fuse_mounts_are_slow():
    assert slow_mounts_in(MOUNTINFO) == ["/mnt/nfs share", "/home/user/remote", "/mnt/smb"]


def test_local_mounts_only_run_bounded_calls_inline():
    offload = Offload()
    try:
        if offload.mounts.slow_mounts():
            pytest.skip(f"this machine has network/FUSE mounts: {offload.mounts.slow_mounts()}")
        caller = threading.get_ident()
        assert asyncio.run(offload.bounded(threading.get_ident)) == caller
        assert asyncio.run(offload.unbounded(threading.get_ident)) != caller
    finally:
        offload.close()


def test_mount_table_notices_mounts(tmp_path):
    table = MountTable()
    try:
        target = tmp_path / "mnt"
        target.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], capture_output=True).returncode:
            pytest.skip("cannot mount tmpfs here (needs root)")
        try:
            assert table._poll.poll(0), "the kernel did not report the mount table change"
            table.slow_mounts()  # re-reads and clears the change
            assert not table._poll.poll(0)
        finally:
            subprocess.run(["umount", str(target)], check=True)
    finally:
        table.close()


def test_any_network_mount_sends_bounded_calls_to_threads(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    offload = Offload(MountTable(str(mountinfo)))
    try:
        assert asyncio.run(offload.bounded(threading.get_ident)) != threading.get_ident()
    finally:
        offload.close()
