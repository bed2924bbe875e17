#!/bin/bash
# bench-fs.sh — fio through a vmfs mount against the same fio on a raw file
# next to the image, in the same run; prints each result and the ratio.
# Targets (issue 3): sequential 1 MiB >= 0.9x, 4 KiB random QD32 >= 0.6x.
# VMFS_BENCH_SIZE (default 1G) and VMFS_BENCH_TIME (seconds, default 10).
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
command -v fio > /dev/null || skip "fio missing"
private_ns "$@"
setup_dir

SIZE=${VMFS_BENCH_SIZE:-1G}
RT=${VMFS_BENCH_TIME:-10}
new_image "$T/img" 8G
vmount "$T/img" "$T/m" || fail "mount"

# run_fio FILE RW BS DEPTH -> prints "bandwidth_KiB_s iops"
run_fio() {
	fio --name=b --filename="$1" --rw="$2" --bs="$3" --iodepth="$4" --size="$SIZE" \
		--ioengine=libaio --direct=1 --runtime="$RT" --time_based=$([ "$2" = write ] && echo 0 || echo 1) \
		--group_reporting --minimal 2> "$T/fio.err" |
	awk -F';' -v rw="$2" '{ if (rw ~ /read/) print $7, $8; else print $48, $49 }'
}

printf '%-26s %14s %14s %7s\n' test raw vmfs ratio
for t in "write 1M 1 seq-write-1M" "read 1M 1 seq-read-1M" \
	 "randread 4k 32 randread-4k-qd32" "randwrite 4k 32 randwrite-4k-qd32"; do
	set -- $t
	raw=$(run_fio "$T/raw.bin" "$1" "$2" "$3")
	fs=$(run_fio "$T/m/bench.bin" "$1" "$2" "$3")
	[ -n "$raw" ] && [ -n "$fs" ] || { cat "$T/fio.err"; fail "fio $4"; }
	set -- $4 $raw $fs
	awk -v n="$1" -v rb="$2" -v ri="$3" -v fb="$4" -v fi="$5" 'BEGIN {
		unit = (n ~ /4k/) ? "IOPS" : "MiB/s";
		r = (n ~ /4k/) ? ri : rb / 1024; f = (n ~ /4k/) ? fi : fb / 1024;
		printf "%-26s %9.0f %-5s %8.0f %-5s %6.2fx\n", n, r, unit, f, unit, (r > 0 ? f / r : 0) }'
done
vumount "$T/m" || fail "unmount"
"$FSCK" "$T/img" || fail "fsck after the benchmark"
