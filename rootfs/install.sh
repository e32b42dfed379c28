#!/usr/bin/env bash
# Turn a Debian bookworm root into an envd guest (run as root INSIDE that root: a chroot, a container build).
# The one script behind `make rootfs` (VM image) and rootfs/Dockerfile (local testing image).
#
#   install.sh [--flavour base|code-interpreter] [--init systemd|none] [SOURCE_DIR]
#
# SOURCE_DIR is a copy of the envd checkout (pyproject.toml, envd/, scripts/, rootfs/); default: this
# script's parent directory. What gets installed follows the checkout at build time: envd's runtime deps
# come from pyproject.toml, the kernels from scripts/setup-kernels.sh.
# Layout (spec/sdk-expectations.md §6.3-6.4, spec/envd.md §1.1):
#   /opt/envd/venv            envd and its dependencies (self-contained venv on the system python3)
#   /usr/bin/envd             -> the venv's entry point
#   /etc/envd/envd.env        ENVD_FLAGS for the unit (flavour dependent)
#   /etc/systemd/system/envd.service (+ enabled), with --init systemd
#   /opt/envd-kernels         code-interpreter kernels, flavour code-interpreter only
#   user `user` (uid 1000, /home/user, passwordless sudo), root without password, /code and /usr/local 777,
#   hostname e2b.local, hosts, resolv.conf.
set -euo pipefail

flavour=base
init=systemd
src=""
while (($#)); do
  case "$1" in
    --flavour) flavour=$2; shift 2 ;;
    --init) init=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    *) src=$1; shift ;;
  esac
done
case "$flavour" in base|code-interpreter) ;; *) echo "install.sh: unknown flavour '$flavour' (base, code-interpreter)" >&2; exit 2 ;; esac
case "$init" in systemd|none) ;; *) echo "install.sh: unknown init '$init' (systemd, none)" >&2; exit 2 ;; esac
src=${src:-$(cd "$(dirname "$0")/.." && pwd)}
test -f "$src/pyproject.toml" || { echo "install.sh: $src has no pyproject.toml (expected an envd checkout)" >&2; exit 2; }
here="$src/rootfs"
step() { echo "[install] $*"; }

# --- Debian packages: the runtime and the tools SDK helpers and templates expect (§6.4) ---
pkgs=(python3 python3-venv ca-certificates sudo bash coreutils procps iproute2 curl git ncurses-bin tar less)
[[ $init == systemd ]] && pkgs+=(systemd systemd-sysv)
step "apt: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null

# --- envd in its own venv, from the checkout (runtime deps as pyproject.toml says) ---
step "envd venv /opt/envd/venv"
python3 -m venv /opt/envd/venv
build=$(mktemp -d)
# Copy so the build's egg-info/build dirs never land in the checkout; pip compiles .pyc (TCG imports are slow).
tar -C "$src" --exclude=__pycache__ -cf - pyproject.toml README.md envd | tar -C "$build" -xf -
/opt/envd/venv/bin/pip install -q --disable-pip-version-check --no-cache-dir "$build"
rm -rf "$build"
# pip and setuptools are build tools: ~25 MB the running daemon never uses (python -m ensurepip restores pip).
/opt/envd/venv/bin/python -m pip uninstall -q -y setuptools pip
ln -sf /opt/envd/venv/bin/envd /usr/bin/envd
/usr/bin/envd -version >/dev/null

# --- the sandbox account and template conventions (§6.2 finalize, §6.4) ---
step "user, sudo, hostname, hosts, DNS"
if ! id -u user >/dev/null 2>&1; then
  useradd --uid 1000 --create-home --home-dir /home/user --shell /bin/bash --user-group user
fi
usermod -aG sudo user
passwd -d user >/dev/null
passwd -d root >/dev/null
grep -qx 'user ALL=(ALL:ALL) NOPASSWD: ALL' /etc/sudoers || echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' >> /etc/sudoers
chown -R user:user /home/user
mkdir -p /code && chmod 777 /code /usr/local
echo 'SHELL=/bin/bash' > /etc/profile.d/shell.sh
# Containers get hostname/hosts/resolv.conf from the engine (and they are read-only bind mounts there).
if [[ $init == systemd ]]; then
  echo e2b.local > /etc/hostname
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\te2b.local\n' > /etc/hosts
fi
echo "fs.inotify.max_user_watches=65536" > /etc/sysctl.d/60-envd.conf

# --- flavour: code-interpreter kernels (scripts/setup-kernels.sh decides what goes in) ---
flags=()
if [[ $flavour == code-interpreter ]]; then
  step "kernels /opt/envd-kernels ($src/scripts/setup-kernels.sh)"
  PIP_NO_CACHE_DIR=1 bash "$src/scripts/setup-kernels.sh" /opt/envd-kernels
  flags+=(-kernels-prefix /opt/envd-kernels)
else
  flags+=(-code-port 0)   # no kernels: no code-interpreter port
fi
mkdir -p /etc/envd
{
  echo "# Flags for envd (spec/envd.md §1.2), read by envd.service; flavour $flavour."
  echo "ENVD_FLAGS=${flags[*]}"
} > /etc/envd/envd.env
echo "$flavour" > /etc/envd/flavour

# --- init: envd as the first service, restarted forever, OOM-protected, logging to the journal ---
if [[ $init == systemd ]]; then
  step "systemd unit envd.service"
  install -m 0644 "$here/files/envd.service" /etc/systemd/system/envd.service
  mkdir -p /etc/systemd/system-preset
  echo 'enable envd.service' > /etc/systemd/system-preset/00-e2b.preset
  systemctl enable envd.service >/dev/null 2>&1
  mkdir -p /etc/systemd/journald.conf.d
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n' > /etc/systemd/journald.conf.d/e2b.conf
fi

if [[ $init == systemd ]]; then
  # Last: the build itself resolves names with the build host's resolv.conf. QEMU user-mode networking's
  # DNS; another host rewrites it (upstream: 8.8.8.8).
  echo "nameserver ${ENVD_DNS:-10.0.2.3}" > /etc/resolv.conf
fi
step "clean apt lists and caches"
apt-get clean
rm -rf /var/lib/apt/lists/* /root/.cache
step "done: flavour $flavour, init $init, envd $(/usr/bin/envd -version)"
