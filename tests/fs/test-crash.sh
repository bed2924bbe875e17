#!/bin/bash
# Crash: SIGKILL the mount in the middle of a workload.  Every byte that
# was fsync'ed before the kill must be there afterwards, and the volume
# must be clean.  Round 1 recovers by remounting (journal replay at mount),
# round 2 by vmfs-fsck -y (replay by fsck) before mounting.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
private_ns "$@"
setup_dir

new_image "$T/img" 1G
m=$T/m
mkdir -p "$m"

workload() {	# writes files with fsync; logs "name md5" only after fsync returned
	i=0
	while :; do
		i=$((i + 1))
		f=$1-$i
		kb=$(( (RANDOM % 2048) + 1 ))
		dd if=/dev/urandom of="$T/src" bs=1K count=$kb status=none
		dd if="$T/src" of="$m/$f" bs=64K conv=fsync status=none 2>/dev/null || return
		echo "$f $(md5sum < "$T/src" | cut -d' ' -f1)" >> "$T/synced"
		case $((i % 7)) in
		0) # rename into a new directory; durable once fsync returns
			line=$(grep "^$f " "$T/synced")
			grep -v "^$f " "$T/synced" > "$T/s2"; mv "$T/s2" "$T/synced"
			mkdir -p "$m/dir$i" && mv "$m/$f" "$m/dir$i/" && sync "$m/dir$i/$f" || return
			echo "dir$i/$line" >> "$T/synced" ;;
		3) # overwrite the middle of an older file in place, then fsync
			old=$(tail -n 3 "$T/synced" | head -n 1 | cut -d' ' -f1)
			[ -n "$old" ] || continue
			grep -v "^$old " "$T/synced" > "$T/s2"; mv "$T/s2" "$T/synced"
			dd if=/dev/urandom of="$m/$old" bs=4K seek=1 count=3 conv=notrunc,fsync \
				status=none 2>/dev/null || return
			cp "$m/$old" "$T/cur" 2>/dev/null || return
			echo "$old $(md5sum < "$T/cur" | cut -d' ' -f1)" >> "$T/synced" ;;
		5) rm -f "$m/$f" && grep -v "^$f " "$T/synced" > "$T/s2" && mv "$T/s2" "$T/synced" ;;
		esac
	done
}

crash_round() {	# crash_round NAME
	: > "$T/synced"
	"$MOUNT" -f "$T/img" "$m" 2>> "$T/mount.log" &
	mpid=$!
	PIDS="$PIDS $mpid"
	MOUNTS="$MOUNTS $m"
	wait_until 20 is_mounted "$m" || fail "$1: mount did not appear"
	workload "$1" &
	wpid=$!
	PIDS="$PIDS $wpid"
	# let some fsyncs land, then kill the mount without warning
	wait_until 60 sh -c "[ \$(wc -l < '$T/synced') -ge 12 ]" || fail "$1: workload made no progress"
	kill -9 $mpid
	wait $mpid 2>/dev/null
	drop_blackbox $mpid
	fusermount3 -u -z "$m" 2>/dev/null
	kill $wpid 2>/dev/null
	wait $wpid 2>/dev/null
	echo "$1: killed the mount after $(wc -l < "$T/synced") fsync'ed files"
}

verify() {	# verify NAME
	n=0
	while read -r f sum; do
		[ -e "$m/$f" ] || fail "$1: fsync'ed file $f is missing"
		[ "$(timeout 60 md5sum < "$m/$f" | cut -d' ' -f1)" = "$sum" ] || fail "$1: fsync'ed file $f differs"
		n=$((n + 1))
	done < "$T/synced"
	echo "$1: all $n fsync'ed files intact"
}

crash_round remount
vmount "$T/img" "$m" || { cat "$T/mount.log"; fail "remount after the crash"; }
grep -q "previous owner died; recovered" "$T/mount.log" || fail "the mount did not recover slot 0"
verify remount
vumount "$m" || fail "unmount"
"$FSCK" -v "$T/img" || fail "fsck after crash + remount"

crash_round fsck
"$FSCK" -y "$T/img" > "$T/fsck.log"
rc=$?
cat "$T/fsck.log"
[ $rc = 0 ] || [ $rc = 1 ] || fail "fsck -y after the crash exited $rc"
"$FSCK" "$T/img" || fail "second fsck after the crash"
vmount "$T/img" "$m" || fail "mount after fsck"
verify fsck
vumount "$m" || fail "unmount 2"
"$FSCK" "$T/img" || fail "final fsck"
echo "crash tests passed"
