#!/usr/bin/env bash
# `make rootfs`: a bookworm root with mmdebstrap, rootfs/install.sh run inside it, an ext4 image from the
# directory (mkfs.ext4 -d, no loop mount), kernel + initrd copied out beside it, a Firecracker config.
# Recipe and its reasons: ../shared/notes/vm-boot.md, summarised in rootfs/README.md.
#
#   build.sh [--flavour base|code-interpreter] [--out DIR] [--size 2G] [--mirror URL]
set -euo pipefail
flavour=base
out=""
size=2G
mirror=${DEBIAN_MIRROR:-}
while (($#)); do
  case "$1" in
    --flavour) flavour=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$flavour" in base|code-interpreter) ;; *) echo "build.sh: unknown flavour '$flavour' (base, code-interpreter)" >&2; exit 2 ;; esac
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${out:-$src/build/vm/$flavour}" && cd "${out:-$src/build/vm/$flavour}" && pwd)
[[ $(id -u) == 0 ]] || { echo "build.sh: run as root (mmdebstrap root mode, chroot)" >&2; exit 2; }
bash "$src/scripts/setup-vm-host.sh"

# A failed build must not leave the previous image behind for `make boot` to pick up.
rm -f "$out"/{rootfs.ext4,vmlinuz,vmlinux,initrd.img,firecracker.json,image.env,sizes.txt}
start=$EPOCHREALTIME
stage() { awk -v s="$start" -v n="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[rootfs %6.1fs] %s\n", n - s, m }'; }
work=$(mktemp -d "${TMPDIR:-/var/tmp}/envd-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
# What install.sh needs from the checkout, copied in (never the host's venvs or build output).
mkdir -p "$work/src"
tar -C "$src" --exclude=__pycache__ -cf - pyproject.toml README.md envd scripts rootfs | tar -C "$work/src" -xf -

# A clean environment inside the root; TLS (pip) verifies with the build host's CA bundle, which may hold a
# proxy's CA the fresh root does not know. Build time only: the image keeps Debian's own CA store.
cp /etc/ssl/certs/ca-certificates.crt "$work/src/build-ca.crt"
ca=/tmp/envd-src/build-ca.crt
chroot_env="/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
SSL_CERT_FILE=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca CURL_CA_BUNDLE=$ca GIT_SSL_CAINFO=$ca"

stage "mmdebstrap bookworm (minbase, systemd, cloud kernel) -> $root"
# merged-usr hook + usr-is-merged: keeps usrmerge and perl out (vm-boot.md gotcha 6).
# Wheels ship their shared libraries with symbols (pyqwest alone: 4 MB): stripped, and without the tz
# database's leap-second copies, the base image stays within its 350 MB.
# The initramfs is built once, small: MODULES=list with the virtio modules, set before the kernel installs,
# and without udev (its hooks are never unpacked): the listed modules load synchronously, devtmpfs shows
# /dev/vda, and initramfs-tools' own polling finds it; starting udevd there cost seconds under TCG.
mmdebstrap --variant=minbase --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=systemd,systemd-sysv,udev,usr-is-merged,linux-image-cloud-amd64,initramfs-tools \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/zoneinfo/right/*' \
  --dpkgopt='path-exclude=/usr/share/initramfs-tools/hooks/udev' \
  --dpkgopt='path-exclude=/usr/share/initramfs-tools/scripts/init-top/udev' \
  --dpkgopt='path-exclude=/usr/share/initramfs-tools/scripts/init-bottom/udev' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"' \
  --essential-hook='echo MODULES=list > "$1/etc/initramfs-tools/conf.d/envd-vm.conf"' \
  --essential-hook='printf "virtio_mmio\nvirtio_blk\nvirtio_net\nvirtio_rng\next4\n" > "$1/usr/share/initramfs-tools/modules.d/envd-vm"' \
  --customize-hook="echo '[rootfs] install.sh --flavour $flavour (inside the root)'" \
  --customize-hook="cp -a '$work/src' \"\$1/tmp/envd-src\"" \
  --customize-hook="chroot \"\$1\" $chroot_env bash /tmp/envd-src/rootfs/install.sh --flavour $flavour --init systemd /tmp/envd-src" \
  --customize-hook="echo '[rootfs] kernel and initrd -> $out'; cp \"\$1\"/boot/vmlinuz-* '$out/vmlinuz'; cp \"\$1\"/boot/initrd.img-* '$out/initrd.img'" \
  --customize-hook="chroot \"\$1\" $chroot_env bash /tmp/envd-src/rootfs/vm-tweaks.sh" \
  --customize-hook='rm -rf "$1/tmp/envd-src"' \
  --customize-hook='find "$1/opt/envd/venv" -name "*.so*" -type f -exec strip --strip-unneeded {} +' \
  --customize-hook="du -xm --max-depth=4 \"\$1\" | sort -n | tail -40 | sed \"s|\$1||\" > '$out/sizes.txt'" \
  bookworm "$root" ${mirror:+"deb $mirror bookworm main"}

kver=$(ls "$root/usr/lib/modules")
content=$(du -sxm "$root" | cut -f1)

stage "mkfs.ext4 -d ($size sparse) -> $out/rootfs.ext4"
rm -f "$out/rootfs.ext4"
mkfs.ext4 -q -F -L rootfs -d "$root" "$out/rootfs.ext4" "$size"

stage "Firecracker config -> $out/firecracker.json"
python3 "$src/rootfs/firecracker.py" --out "$out" >/dev/null
printf 'flavour=%s\nkernel=%s\ncontent_mb=%s\n' "$flavour" "$kver" "$content" > "$out/image.env"

allocated=$(du -m "$out/rootfs.ext4" | cut -f1)
stage "done: $out/rootfs.ext4 flavour $flavour, content ${content} MB, image ${size} sparse (${allocated} MB allocated), kernel $kver ($(du -m "$out/vmlinuz" | cut -f1) MB), initrd $(du -m "$out/initrd.img" | cut -f1) MB"
