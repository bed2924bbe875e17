#!/bin/bash
# Randomized corruption campaign: flip bytes in random metadata blocks of a
# populated volume; fsck must never crash, "fsck -y" must leave a volume
# that a second fsck finds clean, and mount must either refuse cleanly or
# work.  VMFS_SEED replays a campaign, VMFS_CORRUPT_RUNS sets its length.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
private_ns "$@"
setup_dir

RUNS=${VMFS_CORRUPT_RUNS:-200}
SEED=${VMFS_SEED:-$(( $(date +%s) % 100000 ))}
echo "corruption campaign: seed $SEED, $RUNS runs (replay: VMFS_SEED=$SEED)"
RANDOM=$SEED
CORRUPT=$TESTBIN/corrupt

# --- a small volume using every kind of metadata ---
new_image "$T/base.img" 64M --block-size 64K --max-hosts 2 --journal-size 1M
vmount "$T/base.img" "$T/m" || fail "mount of the fresh volume"
m=$T/m
mkdir -p "$m/a/b/c" "$m/big" || fail populate
echo small > "$m/a/inline.txt"
head -c 300000 /dev/urandom > "$m/a/b/multi.bin"
ln "$m/a/inline.txt" "$m/a/b/c/hard"
ln -s ../inline.txt "$m/a/b/sym"
for i in $(seq 1 400); do : > "$m/big/file-$i"; done	# several hash buckets
fallocate -l 1M "$m/a/prealloc"
# many extents: one byte every other block -> overflow extent blocks
for i in $(seq 0 130); do printf x | dd of="$m/a/fragmented" bs=1 seek=$((i * 131072)) conv=notrunc status=none; done
setfattr -n user.tag -v vm1 "$m/a/inline.txt" 2>/dev/null
vumount "$m" || fail "unmount"
"$FSCK" "$T/base.img" || fail "base volume not clean"
mapfile -t BLOCKS < <("$CORRUPT" list "$T/base.img")
mapfile -t SBS < <("$CORRUPT" sblist "$T/base.img")
[ "${#SBS[@]}" = 2 ] || fail "expected 2 superblocks (primary, backup), found ${#SBS[@]}"
echo "${#BLOCKS[@]} metadata blocks"
[ "${#BLOCKS[@]}" -gt 50 ] || fail "too few metadata blocks found"

crashed() { [ "$1" -ge 128 ]; }
# Both superblock copies damaged in one run: nothing names the volume any
# more, so fsck may only say so (exit 8), not repair.
both_sbs_hit() { grep -q "of block ${SBS[0]} " "$T/flip.log" && grep -q "of block ${SBS[1]} " "$T/flip.log"; }
mounts=0 refused=0 fixed=0 lost=0
for run in $(seq 1 "$RUNS"); do
	off=${BLOCKS[$((RANDOM % ${#BLOCKS[@]}))]}
	rseed=$RANDOM
	cp --sparse=always "$T/base.img" "$T/w.img"
	"$CORRUPT" flip "$T/w.img" "$off" "$rseed" > "$T/flip.log" || hard "flip"
	what="run $run (block at byte $off, flip seed $rseed)"
	if [ $((run % 10)) = 3 ]; then	# now and then, several blocks at once
		for k in 1 2; do
			o2=${BLOCKS[$((RANDOM % ${#BLOCKS[@]}))]}
			"$CORRUPT" flip "$T/w.img" "$o2" "$rseed$k" >> "$T/flip.log" || hard "flip"
			what="$what + block at byte $o2 (seed $rseed$k)"
		done
	fi

	if [ $((run % 8)) = 0 ]; then
		# mount the damaged volume: refuse with a message, or serve
		mkdir -p "$T/wm"
		timeout 60 "$MOUNT" -f "$T/w.img" "$T/wm" 2> "$T/wmount.log" &
		mpid=$!
		if wait_until 15 is_mounted "$T/wm"; then
			mounts=$((mounts + 1))
			timeout 60 ls -lR "$T/wm" > /dev/null 2>&1
			timeout 60 cat "$T/wm/a/b/multi.bin" > /dev/null 2>&1
			timeout 60 sh -c "echo new > '$T/wm/newfile'" 2>/dev/null
			fusermount3 -u "$T/wm" 2>/dev/null || fusermount3 -u -z "$T/wm"
		else
			refused=$((refused + 1))
		fi
		wait $mpid
		rc=$?
		if crashed $rc && [ $rc != 124 ]; then
			cat "$T/flip.log" "$T/wmount.log"
			fail "$what: vmfs-mount died with status $rc"
		fi
		[ $rc = 124 ] && fail "$what: vmfs-mount did not finish"
		if [ $rc != 0 ] && ! grep -q "byte offset\|refus\|cannot\|not free\|is live" "$T/wmount.log"; then
			cat "$T/wmount.log"
			fail "$what: mount failed without naming the damage"
		fi
	fi
	timeout 120 "$FSCK" -n "$T/w.img" > "$T/fsck1.log" 2>&1
	rc=$?
	if crashed $rc || [ $rc = 1 ]; then
		cat "$T/flip.log" "$T/fsck1.log"
		fail "$what: fsck -n exited $rc"
	fi
	timeout 120 "$FSCK" -y "$T/w.img" > "$T/fsck2.log" 2>&1
	rc=$?
	if [ $rc = 8 ] && both_sbs_hit && grep -q "superblock" "$T/fsck2.log"; then
		lost=$((lost + 1))
		continue
	fi
	if [ $rc != 0 ] && [ $rc != 1 ]; then
		cat "$T/flip.log" "$T/fsck2.log"
		fail "$what: fsck -y exited $rc"
	fi
	[ $rc = 1 ] && fixed=$((fixed + 1))
	timeout 120 "$FSCK" -n "$T/w.img" > "$T/fsck3.log" 2>&1
	rc=$?
	if [ $rc != 0 ]; then
		cat "$T/flip.log" "$T/fsck2.log" "$T/fsck3.log"
		fail "$what: second fsck exited $rc after fsck -y"
	fi
done
echo "campaign passed: $RUNS runs, $fixed repaired, $mounts mounted, $refused refused, $lost with both superblocks destroyed (seed $SEED)"
exit 0
