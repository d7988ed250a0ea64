#!/bin/sh
# Builds the lab guest from Debian packages: the Debian kernel, a busybox initramfs that loads
# virtio_balloon and virtio_blk, and our consumer program. Cached in OUT; rebuilt when these sources change.
#   tests/lab/guest/build.sh [OUT]    (default target/lab/guest)
# Needs: apt (with package lists), busybox-static, cpio, gcc (make deps installs them).
set -eu
SRC=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-target/lab/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

stamp=$(cat "$SRC/build.sh" "$SRC/init" "$SRC/consumer.c" | sha256sum | cut -c1-16)
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.gz" ]; then
    echo "lab guest up to date in $OUT"
    exit 0
fi

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { echo "build.sh: no linux-image-amd64 in apt's lists: run apt-get update (make deps)" >&2; exit 1; }
busybox=/bin/busybox
if ! [ -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "build.sh: a static /bin/busybox is needed: apt-get install busybox-static" >&2
    exit 1
fi

work="$OUT/work"
rm -rf "$work"
mkdir -p "$work/deb" "$work/root/bin" "$work/root/lib/modules" "$work/root/proc" "$work/root/sys" "$work/root/dev"
if ! ls "$OUT"/cache/"$kpkg"_*.deb >/dev/null 2>&1; then
    mkdir -p "$OUT/cache"
    (cd "$OUT/cache" && apt-get download "$kpkg" 2>&1 | grep -v "couldn't be accessed by user '_apt'" || true)
fi
deb=$(ls "$OUT"/cache/"$kpkg"_*.deb | head -n 1)
dpkg-deb -x "$deb" "$work/deb"
cp "$work/deb"/boot/vmlinuz-* "$OUT/vmlinuz"
# virtio_blk (the page-cache scenario's disk) depends on virtio and virtio_ring only
# (modinfo -F depends), so it loads last like the balloon.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon virtio_blk; do
    cp "$(find "$work/deb/lib/modules" -name "$m.ko" | head -n 1)" "$work/root/lib/modules/"
done
cp "$busybox" "$work/root/bin/busybox"
cp "$SRC/init" "$work/root/init"
chmod 0755 "$work/root/init"
gcc -static -O2 -Wall -o "$work/root/bin/consumer" "$SRC/consumer.c"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/initrd.gz"
rm -rf "$work"
echo "$stamp" > "$OUT/stamp"
echo "lab guest built in $OUT ($kpkg)"
