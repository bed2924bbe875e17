#!/bin/bash
# A damaged superblock, journal, heartbeat or resource group makes the
# mount refuse, naming the structure and its byte offset; fsck -y repairs
# it and the volume mounts again.  A bad -o commit= is refused too.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
private_ns "$@"
setup_dir

flip() { printf '\xff' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
# default geometry of a 512 MiB volume: 8 slots of 16 MiB journal, 1 MiB
# blocks; RG 0 starts at block 129 and its header is that block's mblk 1
cases=(
	"300 superblock at byte offset 0 .*: checksum mismatch"
	"$((18 * 4096 + 70)) journal header at byte offset 73728 .*: checksum mismatch"
	"$((16 * 4096 + 2)) heartbeat at byte offset 65536 .*: bad magic"
	"$((129 * 1048576 + 4096 + 200)) resource group at byte offset 135270400 .*: checksum mismatch"
)
for c in "${cases[@]}"; do
	off=${c%% *}
	msg=${c#* }
	new_image "$T/img" 512M
	flip "$T/img" "$off"
	if "$MOUNT" "$T/img" "$T/m" 2> "$T/err"; then
		MOUNTS="$MOUNTS $T/m"
		fail "mounted despite: $msg"
	fi
	grep -q "$msg" "$T/err" || { cat "$T/err"; fail "mount message lacks '$msg'"; }
	"$FSCK" -y "$T/img" > "$T/fsck.log"
	rc=$?
	[ $rc = 1 ] || { cat "$T/fsck.log"; fail "fsck -y after '$msg' exited $rc"; }
	"$FSCK" "$T/img" || fail "fsck after repairing '$msg'"
	vmount "$T/img" "$T/m" || { cat "$T/mount.log"; fail "mount after repairing '$msg'"; }
	vumount "$T/m" || fail unmount
	echo "refused and repaired: $msg"
done
# a commit interval out of range is refused before anything is opened
for bad in commit=301 commit=-1 commit=x; do
	if "$MOUNT" -o "$bad" "$T/img" "$T/m" 2> "$T/err"; then
		MOUNTS="$MOUNTS $T/m"
		fail "mounted with -o $bad"
	fi
	grep -q "commit" "$T/err" || { cat "$T/err"; fail "-o $bad: the message does not name the option"; }
done
echo "refused: commit intervals out of range"
echo "refusal tests passed"
