#!/bin/sh
# RARP announcements after resume: five broadcast frames, ethertype 0x8035,
# source MAC = the VM's MAC, captured on the far end of a veth pair in a
# network namespace of our own; then written into a tap device (as the VM's
# NIC sends them) and captured on the tap's host side.
builddir=${VMFS_BUILDDIR:-..}/tests
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
	echo "SKIP: needs root, unshare and ip (iproute2)"; exit 77
fi
exec timeout 60 unshare --net sh -c "
	ip link add vmfs-a type veth peer name vmfs-b || exit 99
	ip link set vmfs-a up && ip link set vmfs-b up || exit 99
	'$builddir/migrate/rarp-check' vmfs-a vmfs-b || exit
	'$builddir/migrate/rarp-check' --tap vmfs-tap
"
