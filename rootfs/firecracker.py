"""Write a Firecracker VM config beside the image (`make rootfs`): kernel, rootfs, boot args, MMDS.

Firecracker cannot be installed on the build machine (no KVM that boots stock kernels, no GitHub), so the
config is emitted, not run; rootfs/README.md says how to use it. Firecracker boots an uncompressed ELF
`vmlinux` on x86_64, so the payload of Debian's bzImage is extracted beside it when stdlib can decompress it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

# The guest always gets these from QEMU user-mode networking; on Firecracker the tap device's host side
# must be 10.0.2.2/24 (or edit /etc/systemd/network/10-eth.network in the image).
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 root=/dev/vda rw quiet tsc=reliable"


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside a bzImage (what the kernel's scripts/extract-vmlinux does): the payload's place
    comes from the setup header (payload_offset/length, boot protocol 2.08+); gzip and xz decompress with
    stdlib, lz4 (Debian's choice) and zstd with their command-line tools. None when that is not possible."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    payload = bzimage[(bzimage[0x1F1] + 1) * 512 + offset:][:length]
    try:
        if payload.startswith(b"\x1f\x8b"):
            data = gzip.decompress(payload)
        elif payload.startswith(b"\xfd7zXZ"):
            data = lzma.decompress(payload)
        else:
            tool = {b"\x02\x21\x4c\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd"}.get(payload[:4])
            if tool is None or shutil.which(tool) is None:
                return None
            # The kernel appends the decompressed size after the stream: the tools complain, the output is whole.
            data = subprocess.run([tool, "-dc"], input=payload, capture_output=True).stdout
    except (OSError, EOFError, lzma.LZMAError):
        return None
    return data if data.startswith(b"\x7fELF") else None


def config(out: Path, kernel: str) -> dict:
    return {
        "boot-source": {
            "kernel_image_path": str(out / kernel),
            "initrd_path": str(out / "initrd.img"),
            "boot_args": BOOT_ARGS,
        },
        "drives": [{
            "drive_id": "rootfs",
            "path_on_host": str(out / "rootfs.ext4"),
            "is_root_device": True,
            "is_read_only": False,
        }],
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": False},
        "network-interfaces": [{"iface_id": "eth0", "guest_mac": "06:00:0a:00:02:0f", "host_dev_name": "tap0"}],
        # virtio-rng (Firecracker >= 1.5): the guest's CRNG is seeded at boot, not after minutes of jitter.
        "entropy": {},
        # envd reads the sandbox/template ids and the access-token hash from MMDS (spec/envd.md §8.1).
        "mmds-config": {"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.169.254"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory holding vmlinuz, initrd.img, rootfs.ext4")
    args = parser.parse_args()
    out = args.out.resolve()
    kernel = "vmlinuz"
    vmlinux = extract_vmlinux((out / "vmlinuz").read_bytes())
    if vmlinux is not None:
        (out / "vmlinux").write_bytes(vmlinux)
        kernel = "vmlinux"
    path = out / "firecracker.json"
    path.write_text(json.dumps(config(out, kernel), indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
