#!/bin/bash
# POSIX behaviours and error codes through a real FUSE mount; the volume
# must be clean afterwards and the data must survive a remount.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
private_ns "$@"
setup_dir

new_image "$T/img" 512M
vmount "$T/img" "$T/m" || { cat "$T/mount.log"; fail "mount"; }
"$MOUNT" --version | grep -q "single-host" || fail "--version"
mkdir "$T/m/p" && timeout 600 "$TESTBIN/posix" "$T/m/p" || fail "posix checks"
head -c 3000000 /dev/urandom > "$T/ref"
timeout 120 cp "$T/ref" "$T/m/copy" && timeout 60 sync "$T/m/copy"
# fsck samples the heartbeat and refuses to repair a volume in use
"$FSCK" -y "$T/img" > "$T/fsck-live.log" 2>&1
rc=$?
[ $rc = 8 ] && grep -q "refusing to repair a volume in use" "$T/fsck-live.log" ||
	{ cat "$T/fsck-live.log"; fail "fsck -y on a mounted volume exited $rc"; }
# a second mount of the same volume is refused while this one is live
if "$MOUNT" "$T/img" "$T/m2" 2> "$T/second.log"; then
	MOUNTS="$MOUNTS $T/m2"; fail "second mount of a live volume succeeded"
fi
grep -q "is live" "$T/second.log" || { cat "$T/second.log"; fail "second mount: no reason given"; }
vumount "$T/m" || fail "unmount"
"$FSCK" -v "$T/img" || fail "fsck after the posix run"
vmount "$T/img" "$T/m" -o slot=3 || fail "remount in slot 3"
grep -q "claimed host slot 3" "$T/mount.log" || fail "-o slot=3 ignored"
timeout 120 cmp "$T/ref" "$T/m/copy" || fail "data lost across remount"
[ "$(ls "$T/m/p/many" | wc -l)" = 1500 ] || fail "directory entries lost across remount"
vumount "$T/m" || fail "unmount 2"
"$FSCK" "$T/img" || fail "fsck after remount"
# both mounts released their slots: the next one takes slot 0 again
vmount "$T/img" "$T/m" || fail "third mount"
[ "$(grep -c "claimed host slot 0" "$T/mount.log")" = 2 ] || { cat "$T/mount.log"; fail "slot 0 not released"; }
vumount "$T/m" || fail "unmount 3"
echo "posix tests passed"
