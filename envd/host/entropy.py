"""Fresh kernel randomness from /init (platform extension, not upstream).

Every sandbox started from one saved VM state shares that state's kernel CRNG, and QEMU microvm offers no VM
generation ID to make the guest reseed (../shared/notes/vm-snapshots.md, "Several restores at once"). The control
plane therefore sends host randomness in /init (`entropy`, base64); inside the VM envd mixes it into the input
pool and forces a CRNG reseed, so clones diverge before any user code draws random numbers.
"""

from __future__ import annotations

import fcntl
import logging
import os

log = logging.getLogger("envd")

RNDRESEEDCRNG = 0x5207  # <linux/random.h>: reseed the CRNG from the input pool now (needs CAP_SYS_ADMIN)


class KernelEntropy:
    """Inside the VM: write to /dev/urandom, then reseed."""

    def mix(self, data: bytes) -> None:
        try:
            fd = os.open("/dev/urandom", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data)
                fcntl.ioctl(fd, RNDRESEEDCRNG)
            finally:
                os.close(fd)
        except OSError as err:
            log.warning("failed to reseed the kernel RNG: %s", err)


class NoEntropy:
    """Local mode: the host's RNG is not ours to reseed."""

    def mix(self, data: bytes) -> None:
        pass
