#!/bin/sh
# bench-migrate.sh (make bench) — migrate a 512 MiB guest between two
# vmfs-vmm processes, idle (memory in use: prefilled) and dirtying 50 MiB/s,
# over loopback shaped to 1 Gbit/s (tbf, in a private network namespace)
# when root, unshare and tc are there, else over plain loopback; and, in
# the same run, run for run, QEMU migrating the same test guest (guest.elf,
# a multiboot kernel under TCG, given the same boot-info block through
# -device loader: same RAM, same prefill, same dirty rate) over the same
# link, when qemu-system-x86 and python3 are installed.
# Prints, per load, total time, downtime (p50 over the runs), bytes sent,
# bytes on the link, rounds and the dirty rate the guest achieved (its own
# tick lines) for both, the vmfs-vmm / QEMU ratios, and total time against
# the link limit (non-zero RAM / link rate).
# Total time is measured the same way for both: from the migrate command to
# the VM running on the destination (vmfs-vmm: its total_time_ms, which ends
# when the destination's RESUMED ack is back on the source; QEMU: the
# migrate command to the destination's RESUME event, on the host clock).
# QEMU's own total-time is shown too: it ends when the source has written
# its last byte into the socket, with the socket buffers and the link's
# queue (megabytes at 1 Gbit/s) still to be delivered and loaded.
# "sent" is each VMM's own count of its stream; "wire" counts every byte on
# the private namespace's loopback during the migration (both directions,
# TCP/IP headers included; only the migration uses it), the same meter for
# both.
# Same rules for both: one TCP connection (no multifd), no bandwidth cap in
# the VMM (the tbf link is the cap), the same downtime target, auto-converge
# on both (BENCH_AUTO_CONVERGE=0: off on both).  Downtime is measured the
# same way for both: source paused -> destination running (vmfs-vmm: its
# downtime_ms, up to the destination's RESUMED ack; QEMU: source STOP event
# to destination RESUME event, on the same host clock); QEMU's own
# "downtime" (source-side, ends when the last byte is sent) is shown too.
# Env: BENCH_RUNS (3), BENCH_RAM_MIB (512), BENCH_LINK_MBIT (1000),
# BENCH_DOWNTIME_MS (30), BENCH_RATES_KIB ("0 51200"), ACCEL (auto),
# BENCH_QEMU_PREALLOC (1: -mem-prealloc on QEMU's destination, as vmfs-vmm's
# faults its RAM in before the source connects),
# BENCH_KEEP (a directory: keep each run's final status / query-migrate
# JSON there), BENCH_CONNECTIONS (1: TCP connections per vmfs-vmm migration, see
# --migrate-connections in vmfs-vmm(8); QEMU stays at one), BENCH_QEMU (1;
# 0 skips QEMU), BENCH_AUTO_CONVERGE (1), BENCH_HANDOFF_EXEC (none: a
# program run as the switchover hook, e.g. /bin/true to time the hook's
# fork/exec; "handoff" in the output is the hook's time).
: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
RUNS=${BENCH_RUNS:-3}
RAM=${BENCH_RAM_MIB:-512}
LINK=${BENCH_LINK_MBIT:-1000}
DOWNTIME=${BENCH_DOWNTIME_MS:-30}
CONNS=${BENCH_CONNECTIONS:-1}
AC=${BENCH_AUTO_CONVERGE:-1}
VMM=$VMFS_BUILDDIR/migrate-helper/vmfs-vmm
G=$VMFS_BUILDDIR/migrate-helper/guests

if [ -z "$BENCH_IN_NS" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
   command -v tc >/dev/null && command -v ip >/dev/null; then
	BENCH_IN_NS=1 exec unshare --net sh "$0" "$@"
fi
shaped="unshaped loopback"
if [ -n "$BENCH_IN_NS" ]; then
	ip link set lo up
	# The bucket must hold a few timer ticks of traffic or tbf cannot
	# reach its rate: 1 MiB up to 1 Gbit/s, more above.
	burst=1mb; [ "$LINK" -gt 1000 ] && burst="$((LINK / 1000))mb"
	tc qdisc add dev lo root tbf rate "${LINK}mbit" burst "$burst" latency 100ms &&
		shaped="loopback shaped to $LINK Mbit/s (tbf, private netns)"
fi
if [ -z "$ACCEL" ]; then
	if [ -c /dev/kvm ] && (: <>/dev/kvm) 2>/dev/null; then ACCEL=kvm; else ACCEL=thread; fi
fi
if [ "$ACCEL" = kvm ]; then
	IMG="--accel kvm --image $G/guest.bin"
else
	IMG="--accel thread --image $G/guest.bin --native-guest $G/guest-native.so"
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-bench.XXXXXX") || exit 99
PIDS=
trap 'for p in $PIDS; do kill -9 $p 2>/dev/null && rm -f /dev/shm/qb-vmfs-vmm-$p-blackbox-*; done; rm -rf "$T"' EXIT
printf 'vmfs-bench-key-0123456789abcdef\n' > "$T/key"
truncate -s 64M "$T/disk.img"

field() { printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" | head -n 1; }
# Bytes on the link: everything the private loopback carried (0 outside
# the namespace, where other traffic shares it).
wire_bytes() {
	# /proc/net/dev is the reader's namespace (/sys/class/net would need
	# sysfs mounted again inside it).
	if [ -n "$BENCH_IN_NS" ]; then
		awk -F'[: ]+' '$2 == "lo" { print $11 }' /proc/net/dev
	else
		echo 0
	fi
}
wait_for() {	# SECONDS COMMAND...
	n=$(($1 * 10)); shift
	while ! "$@" 2>/dev/null; do
		n=$((n - 1)); [ $n -le 0 ] && return 1; sleep 0.1
	done
}

# The dirty rate the guest achieved, MiB/s, from its tick lines on SERIAL
# (second to last: the first second catches up after the prefill).
guest_rate() {	# SERIAL
	sed -n 's/.*tick t=\([0-9]*\) dirtied=\([0-9]*\).*/\1 \2/p' "$1" | awk '
		NR == 2 { t0 = $1; d0 = $2 } { t = $1; d = $2 }
		END { printf "%.1f", (NR > 2 && t > t0) ? (d - d0) * 4096 / 1048576 / ((t - t0) / 1000) : 0 }'
}

one_run() {	# RATE_KIB -> prints "total_ms downtime_ms bytes nonzero_bytes handoff_ms
		#   rounds throttle% setup_ms round1_ms guest_MiB/s wire_bytes"
	rm -f "$T"/*.sock "$T"/*.serial
	# Auto-converge: where the migration cannot outrun the dirty rate (a
	# CPU-bound host) the guest is throttled rather than the run lost.
	opts="$IMG --ram $RAM --prefill --dirty-rate $1 --psk-file $T/key --disk $T/disk.img --downtime-ms $DOWNTIME"
	[ "$AC" = 1 ] && opts="$opts --auto-converge"
	[ -n "$BENCH_HANDOFF_EXEC" ] && opts="$opts --handoff-exec $BENCH_HANDOFF_EXEC"
	# shellcheck disable=SC2086
	"$VMM" $opts --ctrl "$T/src.sock" --serial "$T/src.serial" >"$T/src.log" 2>&1 &
	s=$!; PIDS="$PIDS $s"
	# shellcheck disable=SC2086
	"$VMM" $opts --ctrl "$T/dst.sock" --serial "$T/dst.serial" --incoming 127.0.0.1:0 \
		>"$T/dst.log" 2>&1 &
	d=$!; PIDS="$PIDS $d"
	wait_for 120 grep -q 'vmfs-guest: up' "$T/src.serial" || { echo "guest did not boot" >&2; return 1; }
	wait_for 10 test -S "$T/dst.sock" || return 1
	sleep 2		# let the dirty rate settle
	port=$("$VMM" --client "$T/dst.sock" status | sed -n 's/.*"incoming_port":\([0-9]*\).*/\1/p')
	w0=$(wire_bytes)
	# (connections=1 is left out so the script also drives an older vmfs-vmm)
	# shellcheck disable=SC2046
	"$VMM" --client "$T/src.sock" migrate "127.0.0.1:$port" \
		$([ "$CONNS" != 1 ] && echo "connections=$CONNS") >/dev/null || return 1
	wait_for 300 sh -c "'$VMM' --client '$T/src.sock' status | grep -q '\"status\":\"completed\"\|\"status\":\"failed\"'"
	st=$("$VMM" --client "$T/src.sock" status)
	wire=$(($(wire_bytes) - w0))
	[ -n "$BENCH_KEEP" ] && printf '%s\n' "$st" > "$BENCH_KEEP/vmfs-$1-$(date +%s%N).json"
	printf '%s' "$st" | grep -q '"status":"completed"' || {
		echo "migration failed: $(printf '%s' "$st" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')" >&2; return 1; }
	wait_for 60 grep -q 'vmfs-guest: resume n=1' "$T/dst.serial"
	grep -q 'resume n=1 verify ok' "$T/dst.serial" || { echo "guest verification failed" >&2; return 1; }
	r1=$(printf '%s' "$st" | sed -n 's/.*"per_round":\[{"round":1,"pages":\([0-9]*\),"zero_pages":\([0-9]*\).*/\1 \2/p')
	nonzero=$(echo "$r1" | awk '{print ($1 - $2) * 4096}')
	r1ms=$(printf '%s' "$st" | sed -n 's/.*"per_round":\[{"round":1,"pages":[0-9]*,"zero_pages":[0-9]*,"bytes":[0-9]*,"ms":\([0-9]*\).*/\1/p')
	echo "$(field "$st" total_time_ms) $(field "$st" downtime_ms) $(field "$st" transferred_bytes) $nonzero $(field "$st" handoff_ms) $(field "$st" rounds) $(field "$st" throttle_percent) $(field "$st" setup_time_ms) $r1ms $(guest_rate "$T/src.serial") $wire"
	"$VMM" --client "$T/src.sock" stop >/dev/null; "$VMM" --client "$T/dst.sock" stop >/dev/null
	wait_for 20 sh -c "! kill -0 $s 2>/dev/null && ! kill -0 $d 2>/dev/null"
}

# --- QEMU baseline: the same guest.elf as a multiboot kernel under TCG
# (accel=tcg: no /dev/kvm needed; main32.c supplies the clock and idle
# that vmfs-vmm's ports give it), -nodefaults (no VGA RAM, no NIC ROM: a
# machine as bare as vmfs-vmm's), and the boot-info block vmfs-vmm would
# write (ram.c: generation table at 2 MiB, work area from 4 MiB to the end
# of RAM) loaded at 0x1000.  The QEMU guest is not told it moved (no
# resume_count bump), so it does not re-verify its memory after the move.
# Seen with QEMU 7.2 TCG: with the guest busy at the switchover (50 MiB/s),
# a few bytes of its hottest pages (stack, timer variables) on the
# destination differ from the source's final RAM (idle: identical), so the
# guest can crash right after the move; the destination is started with
# "-action ... shutdown=pause" so its QMP stays up, and crashes are counted.
QEMU=
if [ "${BENCH_QEMU:-1}" = 1 ]; then
	QEMU=$(command -v qemu-system-x86_64)
	if [ -z "$QEMU" ] || ! command -v python3 >/dev/null; then
		QEMU=; qemu_note="QEMU baseline: skipped (needs qemu-system-x86 and python3)"
	else
		QVER=$("$QEMU" --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p')
	fi
fi

# vmfs-vmm's destination faults its RAM in while it waits (see --incoming in
# vmfs-vmm(8)); QEMU's does the same with -mem-prealloc (BENCH_QEMU_PREALLOC=0:
# QEMU's default, pages faulted in as they arrive).
QPREALLOC=$([ "${BENCH_QEMU_PREALLOC:-1}" = 1 ] && echo -mem-prealloc)

bootinfo_blob() {	# RATE_KIB FILE
	python3 -c 'import struct, sys
ram = int(sys.argv[1]) << 20; gen, work = 0x200000, 0x400000
pages = min((ram - work) // 4096, (work - gen) // 4)
# magic version ram_size ncpus gen_gpa work_gpa work_pages dirty_rate_kib
# record_interval_ms resume_count run_id flags(PREFILL) reserved[4]
open(sys.argv[3], "wb").write(struct.pack("<16I", 0x49424d56, 1, ram, 1, gen, work,
	pages, int(sys.argv[2]), 0, 0, 1, 1, 0, 0, 0, 0))' "$RAM" "$1" "$2"
}

qemu_run() {	# RATE_KIB -> prints "total_ms downtime_ms bytes nonzero_bytes
		#   qemu_downtime_ms rounds setup_ms guest_MiB/s qemu_dirty_MiB/s dst_crashed
		#   qemu_total_ms wire_bytes" (total_ms: to the destination's RESUME)
	rm -f "$T"/q*.qmp "$T"/q*.serial
	bootinfo_blob "$1" "$T/bootinfo.bin" || return 1
	qopts="-nodefaults -machine pc,accel=tcg -m $RAM -display none -no-reboot
		-kernel $G/guest.elf -device loader,file=$T/bootinfo.bin,addr=0x1000,force-raw=on"
	# shellcheck disable=SC2086
	"$QEMU" $qopts -serial "file:$T/qsrc.serial" -qmp "unix:$T/qsrc.qmp,server=on,wait=off" \
		>"$T/qsrc.log" 2>&1 &
	qs=$!; PIDS="$PIDS $qs"
	# shellcheck disable=SC2086
	"$QEMU" $qopts -serial "file:$T/qdst.serial" -qmp "unix:$T/qdst.qmp,server=on,wait=off" \
		$QPREALLOC -action reboot=shutdown,shutdown=pause -incoming tcp:127.0.0.1:47123 \
		>"$T/qdst.log" 2>&1 &
	qd=$!; PIDS="$PIDS $qd"
	wait_for 30 test -S "$T/qsrc.qmp" && wait_for 30 test -S "$T/qdst.qmp" ||
		{ echo "QEMU did not start: $(cat "$T/qsrc.log" "$T/qdst.log")" >&2; return 1; }
	wait_for 120 grep -q 'vmfs-guest: up' "$T/qsrc.serial" || { echo "QEMU guest did not boot" >&2; return 1; }
	grep -q "rate_kib=$1 " "$T/qsrc.serial" ||
		{ echo "QEMU guest did not take its boot-info block: $(head -n 2 "$T/qsrc.serial")" >&2; return 1; }
	sleep 2		# let the dirty rate settle, as for vmfs-vmm
	w0=$(wire_bytes)
	q=$(timeout 600 python3 "$(dirname "$0")/qmp-migrate.py" "$T/qsrc.qmp" 47123 "$DOWNTIME" \
		"$T/qdst.qmp" "$AC") || { echo "QEMU migration failed: $q" >&2; return 1; }
	wire=$(($(wire_bytes) - w0))
	[ -n "$BENCH_KEEP" ] && printf '%s\n' "$q" > "$BENCH_KEEP/qemu-$1-$(date +%s%N).json"
	echo "$(field "$q" bench-start-to-resume-ms) $(field "$q" bench-stop-to-resume-ms) $(field "$q" transferred) $(field "$q" normal-bytes) $(field "$q" downtime) $(field "$q" bench-rounds) $(field "$q" setup-time) $(guest_rate "$T/qsrc.serial") $(field "$q" bench-dirty-pages-rate | awk '{ r = $1 } END { printf "%.1f", r * 4096 / 1048576 }') $(field "$q" bench-dst-crashed) $(field "$q" total-time) $wire"
	kill -9 $qs $qd 2>/dev/null; wait $qs $qd 2>/dev/null
	return 0
}

echo "migration benchmark: ${RAM} MiB guest, $shaped, downtime target ${DOWNTIME} ms, auto-converge $([ "$AC" = 1 ] && echo on || echo off), $RUNS runs"
echo "  vmfs-vmm: accel $ACCEL, $CONNS connection(s)"
[ -n "$QEMU" ] && echo "  QEMU $QVER: accel tcg, 1 connection (no multifd), max-bandwidth lifted (the link is the cap), destination RAM $([ -n "$QPREALLOC" ] && echo "preallocated (-mem-prealloc)" || echo "not preallocated"); runs interleaved with vmfs-vmm's"
[ -n "$qemu_note" ] && echo "  $qemu_note"
echo "  same for both: guest image, RAM, prefill, dirty rate, link, one TCP connection, downtime target, auto-converge"
echo "  total: migrate command to the VM running on the destination; wire: bytes on the link during the migration ($([ -n "$BENCH_IN_NS" ] && echo "both directions, TCP/IP headers included" || echo "not measured outside a private namespace"))"
echo "  load: $(uptime | sed 's/.*load/load/')"
: > "$T/table"
for rate in ${BENCH_RATES_KIB:-0 51200}; do
	label=$([ "$rate" = 0 ] && echo "idle (prefilled)" || echo "$((rate / 1024)) MiB/s dirty")
	: > "$T/results"; : > "$T/qemu-results"
	for i in $(seq 1 "$RUNS"); do
		# Not in a subshell: PIDS must reach the exit trap.
		one_run "$rate" >> "$T/results" || { echo "$label: run $i failed"; exit 1; }
		if [ -n "$QEMU" ]; then
			qemu_run "$rate" >> "$T/qemu-results" || { echo "$label: QEMU run $i failed"; exit 1; }
		fi
	done
	echo "  load after $label: $(uptime | sed 's/.*load/load/')"
	awk -v label="$label" -v link="$LINK" -v table="$T/table" '
		{ tot[NR] = $1; dt[NR] = $2; by += $3; nz += $4; ho[NR] = $5; rd += $6
		  if ($7 > thr) thr = $7; su[NR] = $8; r1[NR] = $9; gr[NR] = $10; wi += $11 }
		function median(a, n,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
				if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return a[int((n + 1) / 2)]
		}
		END {
			n = NR; limit_ms = (nz / n) * 8 / (link * 1e6) * 1000
			mt = median(tot, n); md = median(dt, n); mh = median(ho, n)
			printf "%-18s vmfs-vmm: total p50 %6d ms  downtime p50 %5d ms  handoff p50 %d ms  sent %.1f MiB (wire %.1f)  rounds %.1f  max throttle %d%%\n",
				label, mt, md, mh, by / n / 1048576, wi / n / 1048576, rd / n, thr
			printf "%-18s non-zero RAM %.1f MiB -> link limit %d ms; total / limit = %.2f\n",
				"", nz / n / 1048576, limit_ms, (limit_ms > 0 ? mt / limit_ms : 0)
			printf "%-18s where: setup p50 %d ms, round 1 (all of RAM) p50 %d ms; dirty rate p50: guest %.1f MiB/s\n",
				"", median(su, n), median(r1, n), median(gr, n)
			printf "%s|vmfs-vmm|%d|%d|%.1f|%.1f|%.2f|%.1f|-|%.1f|-\n", label, mt, md, by / n / 1048576,
				rd / n, (limit_ms > 0 ? mt / limit_ms : 0), median(gr, n), wi / n / 1048576 >> table
		}' "$T/results"
	# QEMU counts normal-bytes over all rounds, not RAM: its link limit is
	# the one of the same guest under vmfs-vmm (round 1 non-zero pages;
	# QEMU idle, normal-bytes shows BIOS and option ROMs add ~0.4 MiB).
	nzv=$(awk '{ s += $4 } END { print s / NR }' "$T/results")
	[ -n "$QEMU" ] && awk -v label="$label" -v link="$LINK" -v table="$T/table" -v ver="$QVER" -v nzv="$nzv" '
		{ tot[NR] = $1; dt[NR] = $2; by += $3; nz += $4; qd[NR] = $5; rd += $6
		  su[NR] = $7; gr[NR] = $8; qr[NR] = $9; crashed += $10; qt[NR] = $11; wi += $12 }
		function median(a, n,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
				if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return a[int((n + 1) / 2)]
		}
		END {
			n = NR; limit_ms = nzv * 8 / (link * 1e6) * 1000
			mt = median(tot, n); md = median(dt, n); mq = median(qt, n)
			printf "%-18s QEMU %s: total p50 %6d ms (QEMU'"'"'s own, last byte written: %d ms)  downtime p50 %5d ms (QEMU'"'"'s own, source-side: %d ms)  sent %.1f MiB (wire %.1f)  rounds %.1f\n",
				label, ver, mt, mq, md, median(qd, n), by / n / 1048576, wi / n / 1048576, rd / n
			printf "%-18s normal bytes %.1f MiB; link limit %d ms (vmfs-vmm'"'"'s non-zero RAM); total / limit = %.2f\n",
				"", nz / n / 1048576, limit_ms, (limit_ms > 0 ? mt / limit_ms : 0)
			printf "%-18s where: setup p50 %d ms; dirty rate p50: guest %.1f MiB/s, QEMU dirty-pages-rate %.1f MiB/s\n",
				"", median(su, n), median(gr, n), median(qr, n)
			if (crashed)
				printf "%-18s the guest crashed on the destination after %d of %d QEMU migrations (see the note above qemu_run)\n",
					"", crashed, n
			printf "%s|QEMU %s|%d|%d|%.1f|%.1f|%.2f|%.1f|%d|%.1f|%d\n", label, ver, mt, md, by / n / 1048576,
				rd / n, (limit_ms > 0 ? mt / limit_ms : 0), median(gr, n), median(qd, n), wi / n / 1048576, mq >> table
		}' "$T/qemu-results"
done
# The table: both VMMs per load, and vmfs-vmm / QEMU (< 1: vmfs-vmm better).
# total: migrate command to the VM running on the destination, for both;
# the last line compares with QEMU's own total-time (source-side) as well.
echo
awk -F'|' '
	BEGIN { printf "%-18s %-14s %9s %9s %9s %9s %7s %11s %12s\n", "load", "", "total ms", "down ms",
		"sent MiB", "wire MiB", "rounds", "total/limit", "guest MiB/s" }
	{ printf "%-18s %-14s %9d %9d %9.1f %9.1f %7.1f %11.2f %12.1f\n", $1, $2, $3, $4, $5, $10, $6, $7, $8 }
	$2 == "vmfs-vmm" { vt = $3; vd = $4; vb = $5; vw = $10 }
	$2 ~ /^QEMU/ {
		printf "%-18s %-14s %8.3fx %8s %8.3fx %8.3fx\n", "", "vmfs / QEMU", ($3 > 0 ? vt / $3 : 0),
			($4 > 0 ? sprintf("%.2fx", vd / $4) : "-"), ($5 > 0 ? vb / $5 : 0), ($10 > 0 ? vw / $10 : 0)
		printf "%-18s %-14s %8.3fx  (against QEMU'"'"'s own total-time, %d ms)\n", "", "", ($11 > 0 ? vt / $11 : 0), $11
	}' "$T/table"
