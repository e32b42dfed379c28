#!/usr/bin/env bash
# Make this machine look like an E2B sandbox (idempotent): account `user` with home /home/user and
# passwordless sudo; bash, python3, git, sudo, tput (ncurses-bin) present.
set -euo pipefail
missing=()
for tool in bash python3 git sudo tput; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  pkgs=()
  for tool in "${missing[@]}"; do
    case "$tool" in tput) pkgs+=(ncurses-bin) ;; python3) pkgs+=(python3) ;; *) pkgs+=("$tool") ;; esac
  done
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
fi
if ! id -u user >/dev/null 2>&1; then
  useradd --create-home --home-dir /home/user --shell /bin/bash user
fi
mkdir -p /etc/sudoers.d
echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/envd-user
chmod 0440 /etc/sudoers.d/envd-user
