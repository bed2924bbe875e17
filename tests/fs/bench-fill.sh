#!/bin/bash
# bench-fill.sh — metadata operations on one mount while another file of
# the same mount is being filled: the first write into a block (a hole or
# an unwritten extent, as after fio's or QEMU's fallocate) allocates it,
# writes it whole and marks it written (fs/file.c file_write).  The
# creates, stats and unlinks beside it must not wait for that 1 MiB disk
# write.  Prints the metadata rate with the fill running as a ratio of the
# rate without it, measured in the same run, and the latencies of both.
# VMFS_BENCH_REPS (default 3) pairs: quiet, then beside the fill; the ratio
# is the median of the per-pair ratios.  The fill itself is fio writing a
# new file with 1 MiB requests at queue depth 1.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
command -v fio > /dev/null || skip "fio missing"
command -v python3 > /dev/null || skip "python3 missing"
private_ns "$@"
setup_dir

REPS=${VMFS_BENCH_REPS:-3}
SECS=2
# written whole first, as bench-fs.sh does: the backing file stands for a LUN
dd if=/dev/zero of="$T/img" bs=4M count=1024 oflag=direct status=none || fail "fill the image"
"$MKFS" -q "$T/img" || fail "mkfs"
vmount "$T/img" "$T/m" || fail "mount"
mkdir -p "$T/m/d" || fail "mkdir"

# meta.py DIR SECONDS: create, stat, unlink one file at a time for SECONDS;
# prints "ops_per_s p50_us p99_us"
cat > "$T/meta.py" <<'PYEOF'
import os, sys, time
d, secs = sys.argv[1], float(sys.argv[2])
lat, n, t0 = [], 0, time.monotonic()
while time.monotonic() - t0 < secs:
    s = time.monotonic()
    p = os.path.join(d, "f%d" % n)
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    os.stat(p)
    os.unlink(p)
    lat.append(time.monotonic() - s)
    n += 1
lat.sort()
print("%.0f %.0f %.0f" % (n / secs, lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6))
PYEOF

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rats="" quiet="" busy=""
for r in $(seq "$REPS"); do
	q=$(python3 "$T/meta.py" "$T/m/d" "$SECS") || fail "metadata run"
	rm -f "$T/m/fill"
	fio --name=fill --filename="$T/m/fill" --rw=write --bs=1M --iodepth=1 --size=3G \
		--ioengine=libaio --direct=1 --time_based --runtime=$((SECS + 1)) --minimal \
		> "$T/fill.out" 2> "$T/fio.err" &
	sleep 0.5	# fio has laid the file out and is writing
	b=$(python3 "$T/meta.py" "$T/m/d" "$SECS") || fail "metadata run beside the fill"
	wait $! || { cat "$T/fio.err"; fail "fio"; }
	quiet="$quiet|${q// /,}" busy="$busy|${b// /,}"
	rats="$rats $(echo "$q $b" | awk '{ printf "%.2f", $1 ? $4 / $1 : 0 }')"
done
printf '%-28s %s\n' "quiet (ops/s,p50,p99 us)" "$quiet" "beside fill" "$busy"
printf '%-28s %6.2fx  %s\n' "meta-beside-fill" "$(echo $rats | tr ' ' '\n' | median)" "$rats"
vumount "$T/m" || fail "unmount"
"$FSCK" "$T/img" || fail "fsck after the benchmark"
rc=0
