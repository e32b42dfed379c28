#!/usr/bin/env bash
# Runs inside the built root after install.sh: what only the VM image needs, and trimming of the image
# size and of what runs before envd at boot (rootfs/README.md: boot-to-healthy, image size).
set -euo pipefail
files="$(dirname "$0")/files"
echo "[rootfs] vm-tweaks: static network, no udev on the boot path, masked units, trimmed modules"

install -m 0755 "$files/envd-net" /usr/local/sbin/envd-net
install -m 0644 "$files/envd-net.service" /etc/systemd/system/envd-net.service
printf 'ADDRESS=10.0.2.15/24\nGATEWAY=10.0.2.2\n' > /etc/envd/net.env
systemctl enable envd-net.service >/dev/null 2>&1
# The kernel mounts the root rw (root=/dev/vda rw): no fstab entry, so no fsck or remount job waits on a
# dev-vda.device that only udev would announce, and nothing for systemd-remount-fs to do.
echo "# root: mounted rw by the kernel (root=/dev/vda rw)" > /etc/fstab

# Off the boot path: udev coldplug (devtmpfs has the nodes; the network is static), consoles nobody logs
# in on (debug: unmask serial-getty@ttyS0), module preloads, random-seed (the 6.1 kernel seeds its CRNG
# itself), first-boot tools (the image's accounts exist: sysusers), utmp, debug/tracing/hugepage mounts.
masked=(
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-udev-trigger.service
  systemd-udev-settle.service systemd-hwdb-update.service systemd-networkd.service systemd-networkd-wait-online.service
  systemd-network-generator.service serial-getty@ttyS0.service getty@tty1.service getty-static.service
  modprobe@loop.service modprobe@dm_mod.service modprobe@efi_pstore.service modprobe@drm.service
  systemd-random-seed.service systemd-firstboot.service systemd-update-utmp.service
  systemd-update-utmp-runlevel.service e2scrub_reap.service systemd-binfmt.service
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount
  systemd-remount-fs.service systemd-sysusers.service systemd-modules-load.service dev-hugepages.mount systemd-pstore.service systemd-journal-flush.service apt-daily.timer apt-daily-upgrade.timer
  dpkg-db-backup.timer fstrim.timer e2scrub_all.timer
)
systemctl mask "${masked[@]}" >/dev/null 2>&1
# /dev/fuse for bucket mounts (sdk-expectations §8), what the udev rule would have done.
echo 'z /dev/fuse 0666 - - -' > /etc/tmpfiles.d/envd-fuse.conf

# Size: QEMU/Firecracker boot the kernel copied out beside the image; udev's hardware database is unused;
# kernel modules only for what a virtio guest uses (storage, network, filesystems, netfilter, crypto).
rm -f /boot/vmlinuz-* /boot/initrd.img-* /boot/System.map-* /vmlinuz* /initrd.img*
rm -rf /usr/lib/udev/hwdb.d /usr/lib/udev/hwdb.bin /etc/udev/hwdb.bin
for moddir in /usr/lib/modules/*/kernel; do
  keep_drivers='^(virtio|block|char|net|vhost|md|nvdimm|dax|input)$'
  for d in "$moddir"/drivers/*; do
    [[ $(basename "$d") =~ $keep_drivers ]] || rm -rf "$d"
  done
  rm -rf "$moddir"/drivers/net/{ethernet,wireless,usb,wwan,can,ieee802154,hyperv,fddi,hamradio,arcnet,plip,slip,ppp}
  rm -rf "$moddir"/sound
  for fs in btrfs xfs smb ceph nfsd ocfs2 gfs2 jfs reiserfs nilfs2 f2fs udf hfs hfsplus ntfs3 ubifs orangefs \
            dlm afs coda minix qnx4 qnx6 sysv ufs romfs omfs befs bfs efs freevxfs hpfs adfs affs gfs2; do
    rm -rf "${moddir:?}/fs/$fs"
  done
  depmod "$(basename "$(dirname "$moddir")")"
done
