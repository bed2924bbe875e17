#!/bin/sh
# The freestanding 32-bit test guest (the one vmfs-vmm runs under KVM)
# boots as a multiboot ELF under QEMU's emulator and prints its boot line on
# COM1: checks entry.S, main32.c and the 32-bit build where /dev/kvm is
# missing.  Without vmfs-vmm's boot-info block it has nothing to dirty.
: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
QEMU=$(command -v qemu-system-x86_64 || command -v qemu-system-i386) || {
	echo "SKIP: QEMU (qemu-system-x86) is not installed"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-guest-qemu.XXXXXX") || exit 99
"$QEMU" -machine pc,accel=tcg -m 32 -display none -no-reboot -monitor none \
	-kernel "$VMFS_BUILDDIR/migrate-helper/guests/guest.elf" \
	-serial "file:$T/serial" >"$T/qemu.log" 2>&1 &
pid=$!
rc=1
i=0
while [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do
	if grep -q 'vmfs-guest: up' "$T/serial" 2>/dev/null; then rc=0; break; fi
	i=$((i + 1)); sleep 0.1
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
grep 'vmfs-guest' "$T/serial" || { echo "FAIL: no boot line from the guest"; cat "$T/qemu.log"; }
rm -rf "$T"
exit $rc
