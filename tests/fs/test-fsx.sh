#!/bin/bash
# fsx: random operations against an in-memory model, through the mount;
# then the file must be identical after a remount and the volume clean.
# VMFS_SEED=n replays, VMFS_FSX_OPS sets the length.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
private_ns "$@"
setup_dir

SEED=${VMFS_SEED:-$(( $(date +%s) % 1000000 ))}
OPS=${VMFS_FSX_OPS:-1500}
echo "fsx seeds $SEED..$((SEED + 3)) (replay: VMFS_SEED=$SEED)"
for bs in 1M 64K; do
	new_image "$T/img" 1G --block-size $bs
	vmount "$T/img" "$T/m" || fail "mount"
	# four testers at once, plus directory churn: the mount is
	# multithreaded.  Tester 3 keeps its file under 250000 bytes, where a
	# small file lives inline and in pages (fs/pages.h) and moves to
	# extents at pages_max (256 KiB with 1 MiB blocks, 16 KiB with 64 KiB).
	pids=""
	for i in 0 1 2 3; do
		len=""
		[ $i = 3 ] && len="-l 250000"
		timeout 1200 "$TESTBIN/fsx" -s $((SEED + i)) -n "$OPS" $len -k "$T/model.$i" \
			"$T/m/fsx.$i" > "$T/fsx.$i.log" 2>&1 &
		pids="$pids $!"
	done
	PIDS="$PIDS $pids"
	for d in 0 1 2 3 4; do mkdir -p "$T/m/churn$d"; done
	for n in $(seq 1 200); do
		echo $n > "$T/m/churn$((n % 5))/f$n" &&
		mv "$T/m/churn$((n % 5))/f$n" "$T/m/churn$(((n + 2) % 5))/g$n" || fail "churn $n"
		[ $((n % 3)) = 0 ] && { rm "$T/m/churn$(((n + 2) % 5))/g$n" || fail "churn rm $n"; }
	done
	i=0
	for p in $pids; do
		wait $p || { cat "$T/fsx.$i.log"; fail "fsx seed $((SEED + i)) (block size $bs)"; }
		tail -n 1 "$T/fsx.$i.log"
		i=$((i + 1))
	done
	[ "$(cat "$T"/m/churn*/g* | wc -l)" = 134 ] || fail "churn files lost"
	vumount "$T/m" || fail "unmount"
	"$FSCK" "$T/img" || fail "fsck after fsx (block size $bs)"
	vmount "$T/img" "$T/m" || fail "remount"
	for i in 0 1 2 3; do
		timeout 120 cmp "$T/model.$i" "$T/m/fsx.$i" || fail "fsx.$i differs from its model after remount"
	done
	vumount "$T/m" || fail "unmount 2"
done
echo "fsx tests passed"
