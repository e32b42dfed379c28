#!/usr/bin/env bash
# Host tools for `make rootfs` / `make boot` (idempotent; quick when present): mmdebstrap, QEMU (microvm
# firmware and slirp come as hard dependencies, no GUI Recommends), e2fsprogs for mkfs.ext4 -d.
set -euo pipefail
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v lz4 >/dev/null || need+=(lz4)   # vmlinux for the Firecracker config
command -v strip >/dev/null || need+=(binutils)   # strips envd's venv libraries in the image
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
