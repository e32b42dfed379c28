#!/usr/bin/env bash
# Runs inside the built root (after install.sh): what only the QEMU/Firecracker VM needs, and trimming of
# what runs before envd at boot (the boot-to-healthy goal, rootfs/README.md).
set -euo pipefail
echo "[rootfs] vm-tweaks: network, fstab, masked units"
install -D -m 0644 "$(dirname "$0")/files/10-eth.network" /etc/systemd/network/10-eth.network
systemctl enable systemd-networkd.service >/dev/null 2>&1
echo "/dev/vda / ext4 rw,relatime 0 1" > /etc/fstab
# Nothing waits for the network to be "online"; no consoles to log in on (debug: unmask serial-getty).
systemctl mask systemd-networkd-wait-online.service serial-getty@ttyS0.service getty@tty1.service \
  systemd-firstboot.service e2scrub_reap.service systemd-binfmt.service >/dev/null 2>&1
rm -f /etc/machine-id && : > /etc/machine-id
