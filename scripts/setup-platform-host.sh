#!/usr/bin/env bash
# Host tools for `make platform` (idempotent): what `make boot` needs, plus qemu-img (qemu-utils) for the
# per-sandbox copy-on-write qcow2 overlays.
set -euo pipefail
bash "$(dirname "$0")/setup-vm-host.sh"
if ! command -v qemu-img >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils
fi
