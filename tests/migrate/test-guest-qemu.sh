#!/bin/sh
# The freestanding 32-bit test guest (the one vmfs-vmm runs under KVM)
# boots as a multiboot ELF under QEMU's emulator and prints its boot line on
# COM1: checks entry.S, main32.c and the 32-bit build where /dev/kvm is
# missing.  Then, given a boot-info block at 0x1000 (-device loader, as
# bench-migrate.sh's QEMU baseline does) asking for a prefill and 4 MiB/s,
# it must prefill and dirty at that rate on main32.c's multiboot clock (ACPI
# PM timer) and idle (hlt + PIT): its tick lines are checked against the rate.
: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
QEMU=$(command -v qemu-system-x86_64 || command -v qemu-system-i386) || {
	echo "SKIP: QEMU (qemu-system-x86) is not installed"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-guest-qemu.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT
GUEST=$VMFS_BUILDDIR/migrate-helper/guests/guest.elf

boot() {	# SECONDS PATTERN COUNT EXTRA_QEMU_ARGS... -> 0 once COUNT lines match PATTERN
	secs=$1 pat=$2 count=$3; shift 3
	rm -f "$T/serial"
	"$QEMU" -machine pc,accel=tcg -m 32 -display none -no-reboot -monitor none \
		-kernel "$GUEST" -serial "file:$T/serial" "$@" >"$T/qemu.log" 2>&1 &
	pid=$!
	rc=1 i=0
	while [ $i -lt $((secs * 10)) ] && kill -0 $pid 2>/dev/null; do
		n=$(grep -c "$pat" "$T/serial" 2>/dev/null)
		if [ "${n:-0}" -ge "$count" ]; then rc=0; break; fi
		i=$((i + 1)); sleep 0.1
	done
	kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
	return $rc
}

boot 60 'vmfs-guest: up' 1 || { echo "FAIL: no boot line from the guest"; cat "$T/qemu.log"; exit 1; }
grep 'vmfs-guest' "$T/serial" | head -n 1

# struct vmfs_bootinfo (guest-abi.h), 32 MiB: work area 4 MiB..32 MiB.
# shellcheck disable=SC2059 # the format is the bytes, built from octal escapes
le32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $(($1 >> 8 & 255)) \
	$(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
pages=$(((32 - 4) * 256))
for w in 0x49424d56 1 $((32 << 20)) 1 0x200000 0x400000 $pages 4096 0 0 7 1 0 0 0 0; do
	le32 $((w))
done > "$T/bootinfo.bin"
boot 60 'vmfs-guest: tick' 6 -device "loader,file=$T/bootinfo.bin,addr=0x1000,force-raw=on" ||
	{ echo "FAIL: the guest did not run 5 s with a boot-info block"; cat "$T/serial"; exit 1; }
grep "vmfs-guest: up.* work_pages=$pages rate_kib=4096 .*prefilled=$pages" "$T/serial" ||
	{ echo "FAIL: the guest did not take its boot-info block"; head -n 3 "$T/serial"; exit 1; }
# Ticks 2 to last (the first second catches up after the prefill):
# 4096 KiB/s is 1024 pages/s; allow 15% (TCG on a loaded host).
sed -n 's/.*tick t=\([0-9]*\) dirtied=\([0-9]*\).*/\1 \2/p' "$T/serial" | awk '
	NR == 2 { t0 = $1; d0 = $2 } { t = $1; d = $2 }
	END {
		if (NR < 4 || t <= t0) { print "FAIL: too few tick lines"; exit 1 }
		r = (d - d0) * 1000 / (t - t0)
		printf "dirty rate under QEMU: %.0f pages/s over %d ms (want 1024)\n", r, t - t0
		if (r < 870 || r > 1180) { print "FAIL: dirty rate off by more than 15%"; exit 1 }
	}' || { cat "$T/serial"; exit 1; }
