#!/usr/bin/env bash
# System packages envd and its tests need on a fresh Debian (idempotent; quick when all are present).
set -euo pipefail
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v gcc >/dev/null || need+=(gcc python3-dev)   # wheels missing for a dependency build from source
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v git >/dev/null || need+=(git)
command -v sudo >/dev/null || need+=(sudo)
command -v tput >/dev/null || need+=(ncurses-bin)
command -v mount >/dev/null || need+=(mount)
command -v socat >/dev/null || need+=(socat)          # port forwarding of loopback listeners (spec §8.3)
command -v ip >/dev/null || need+=(iproute2)          # the port-forwarding tests build network namespaces
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)  # the fsfreeze tests loop-mount an ext4 image
command -v openssl >/dev/null || need+=(openssl)      # the CA bundle tests make a throw-away CA
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
