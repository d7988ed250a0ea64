#!/bin/sh
# Starts a system libvirtd (qemu:///system) on a machine without systemd, as ../shared/LAB.md
# records: the libvirt-qemu user, a qemu.conf that works in a container, virtlogd first.
# Idempotent: does nothing when libvirtd already answers. Needs root and `make deps`.
set -eu
answers() { timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; }
if answers; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "libvirtd-up.sh: must run as root" >&2; exit 1; }
command -v libvirtd >/dev/null || [ -x /usr/sbin/libvirtd ] || {
    echo "libvirtd-up.sh: libvirtd missing: apt-get install libvirt-daemon libvirt-daemon-driver-qemu (make deps)" >&2
    exit 1
}
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /var/run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu /etc/libvirt
conf=/etc/libvirt/qemu.conf
if ! grep -q '^# memory_coordinator lab' "$conf" 2>/dev/null; then
    cat >> "$conf" <<'CONF'
# memory_coordinator lab: settings that work in a container without systemd (LAB.md)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
CONF
fi
pgrep -x virtlogd >/dev/null || setsid /usr/sbin/virtlogd </dev/null >/var/log/libvirt/virtlogd.out 2>&1 &
sleep 0.5
pgrep -x libvirtd >/dev/null || setsid /usr/sbin/libvirtd </dev/null >/var/log/libvirt/libvirtd.out 2>&1 &
for _ in $(seq 1 60); do
    if answers; then
        echo "libvirtd is up"
        exit 0
    fi
    sleep 0.5
done
echo "libvirtd-up.sh: libvirtd did not answer within 30 s; see /var/log/libvirt/libvirtd.out" >&2
exit 1
