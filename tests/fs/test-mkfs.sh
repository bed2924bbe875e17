#!/bin/bash
# vmfs-mkfs: creates a clean volume, refuses existing signatures without
# --force, refuses a too-small device and bad options with a clear message.
. "$(dirname "$0")/lib.sh"
setup_dir

expect_refusal() {	# expect_refusal PATTERN mkfs-args...
	pat=$1; shift
	if "$MKFS" -q "$@" > "$T/out" 2>&1; then
		cat "$T/out"; fail "mkfs $* succeeded"
	fi
	grep -q -- "$pat" "$T/out" || { cat "$T/out"; fail "mkfs $*: message lacks '$pat'"; }
}

"$MKFS" --help | grep -q -- "--max-hosts" || fail "--help"
"$MKFS" --version | grep -q "format 1.0" || fail "--version"

truncate -s 256M "$T/img"
"$MKFS" --label first "$T/img" > "$T/out" || fail "mkfs on a fresh file"
grep -q 'created vmfs volume "first"' "$T/out" || fail "mkfs output"
"$FSCK" "$T/img" || fail "fresh volume not clean"
# the on-disk magic and label, read independently
[ "$(head -c 4 "$T/img")" = VMFS ] || fail "no magic at offset 0"
[ "$(dd if="$T/img" bs=1 skip=112 count=5 status=none)" = first ] || fail "label not at offset 112"

expect_refusal 'contains a vmfs volume (label "first")' "$T/img"
"$MKFS" -q --force --label second --max-hosts 4 --block-size 256K --journal-size 2M "$T/img" ||
	fail "mkfs --force"
"$FSCK" "$T/img" || fail "re-made volume not clean"

# foreign signatures, written the way their own tools lay them out
sig() {	# sig OFFSET BYTES...
	rm -f "$T/s"; truncate -s 256M "$T/s"
	printf "$2" | dd of="$T/s" bs=1 seek="$1" conv=notrunc status=none
}
sig 1080 '\x53\xef';			expect_refusal "ext2/ext3/ext4" "$T/s"
sig 0 'XFSB';				expect_refusal "XFS" "$T/s"
sig 65600 '_BHRfS_M';			expect_refusal "btrfs" "$T/s"
sig 4086 'SWAPSPACE2';			expect_refusal "swap" "$T/s"
sig 512 'EFI PART';			expect_refusal "GPT" "$T/s"
sig 510 '\x55\xaa';			expect_refusal "MBR" "$T/s"
if command -v mkswap > /dev/null; then
	rm -f "$T/s"; truncate -s 256M "$T/s"; mkswap "$T/s" > /dev/null 2>&1
	expect_refusal "swap" "$T/s"
fi
"$MKFS" -q --force "$T/s" || fail "--force over a signature"

# too small, with the size it would need
truncate -s 2M "$T/tiny"
expect_refusal "device too small: 2097152 bytes; these options need at least" "$T/tiny"
expect_refusal "block size must be" --block-size 3000 "$T/img"
expect_refusal "max hosts must be" --max-hosts 65 "$T/img"
expect_refusal "journal size must be" --journal-size 100K "$T/img"
expect_refusal "cannot open\|No such file" "$T/does-not-exist"
# smallest configuration that fits: 1 host, 64K blocks, 1M journal
truncate -s 3M "$T/small"
"$MKFS" -q --max-hosts 1 --block-size 64K --journal-size 1M "$T/small" || fail "small volume"
"$FSCK" "$T/small" || fail "small volume not clean"
# a real block device, when loop devices are available
if [ "$(id -u)" = 0 ] && L=$(losetup -f --show "$T/img" 2>/dev/null) && [ -b "$L" ]; then
	LOOPS="$LOOPS $L"
	"$MKFS" -q --force --label blockdev "$L" || fail "mkfs on $L"
	"$FSCK" "$L" || fail "fsck on $L"
	losetup -d "$L"
	[ "$(dd if="$T/img" bs=1 skip=112 count=8 status=none)" = blockdev ] || fail "label via $L"
else
	echo "no loop device: block-device case not run"
fi
echo "mkfs tests passed"
