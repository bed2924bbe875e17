#!/bin/sh
# bench-migrate.sh (make bench) — migrate a 512 MiB guest between two
# vmfs-vmm processes, idle (memory in use: prefilled) and dirtying 50 MiB/s,
# over loopback shaped to 1 Gbit/s (tbf, in a private network namespace)
# when root, unshare and tc are there, else over plain loopback.
# Prints total time, downtime, bytes, and the ratio of the total time to the
# link limit (non-zero RAM / link rate); then QEMU migrating the same amount
# of non-zero RAM over the same link when qemu-system-x86 and python3 are
# installed (idle only, see below).  Env: BENCH_RUNS (3), BENCH_RAM_MIB (512), BENCH_LINK_MBIT
# (1000), BENCH_DOWNTIME_MS (30), BENCH_RATES_KIB ("0 51200"), ACCEL (auto),
# BENCH_CONNECTIONS (1: TCP connections per migration, see
# --migrate-connections in vmfs-vmm(8)), BENCH_HANDOFF_EXEC (none: a
# program run as the switchover hook, e.g. /bin/true to time the hook's
# fork/exec; "handoff" in the output is the hook's time).
: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
RUNS=${BENCH_RUNS:-3}
RAM=${BENCH_RAM_MIB:-512}
LINK=${BENCH_LINK_MBIT:-1000}
DOWNTIME=${BENCH_DOWNTIME_MS:-30}
CONNS=${BENCH_CONNECTIONS:-1}
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
wait_for() {	# SECONDS COMMAND...
	n=$(($1 * 10)); shift
	while ! "$@" 2>/dev/null; do
		n=$((n - 1)); [ $n -le 0 ] && return 1; sleep 0.1
	done
}

one_run() {	# RATE_KIB -> prints "total_ms downtime_ms bytes nonzero_bytes handoff_ms"
	rm -f "$T"/*.sock "$T"/*.serial
	# Auto-converge: where the migration cannot outrun the dirty rate (a
	# CPU-bound host) the guest is throttled rather than the run lost.
	opts="$IMG --ram $RAM --prefill --dirty-rate $1 --psk-file $T/key --disk $T/disk.img --downtime-ms $DOWNTIME --auto-converge"
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
	# (connections=1 is left out so the script also drives an older vmfs-vmm)
	# shellcheck disable=SC2046
	"$VMM" --client "$T/src.sock" migrate "127.0.0.1:$port" \
		$([ "$CONNS" != 1 ] && echo "connections=$CONNS") >/dev/null || return 1
	wait_for 300 sh -c "'$VMM' --client '$T/src.sock' status | grep -q '\"status\":\"completed\"\|\"status\":\"failed\"'"
	st=$("$VMM" --client "$T/src.sock" status)
	printf '%s' "$st" | grep -q '"status":"completed"' || {
		echo "migration failed: $(printf '%s' "$st" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')" >&2; return 1; }
	wait_for 60 grep -q 'vmfs-guest: resume n=1' "$T/dst.serial"
	grep -q 'resume n=1 verify ok' "$T/dst.serial" || { echo "guest verification failed" >&2; return 1; }
	r1=$(printf '%s' "$st" | sed -n 's/.*"per_round":\[{"round":1,"pages":\([0-9]*\),"zero_pages":\([0-9]*\).*/\1 \2/p')
	nonzero=$(echo "$r1" | awk '{print ($1 - $2) * 4096}')
	r1ms=$(printf '%s' "$st" | sed -n 's/.*"per_round":\[{"round":1,"pages":[0-9]*,"zero_pages":[0-9]*,"bytes":[0-9]*,"ms":\([0-9]*\).*/\1/p')
	echo "$(field "$st" total_time_ms) $(field "$st" downtime_ms) $(field "$st" transferred_bytes) $nonzero $(field "$st" handoff_ms) $(field "$st" rounds) $(field "$st" throttle_percent) $(field "$st" setup_time_ms) $r1ms"
	"$VMM" --client "$T/src.sock" stop >/dev/null; "$VMM" --client "$T/dst.sock" stop >/dev/null
	wait_for 20 sh -c "! kill -0 $s 2>/dev/null && ! kill -0 $d 2>/dev/null"
}

echo "vmfs-vmm migration benchmark: ${RAM} MiB guest, accel $ACCEL, $shaped, downtime target ${DOWNTIME} ms, $CONNS connection(s), $RUNS runs"
for rate in ${BENCH_RATES_KIB:-0 51200}; do
	label=$([ $rate = 0 ] && echo "idle (prefilled)" || echo "50 MiB/s dirty")
	: > "$T/results"
	for i in $(seq 1 "$RUNS"); do
		# Not in a subshell: PIDS must reach the exit trap.
		one_run $rate >> "$T/results" || { echo "$label: run $i failed"; exit 1; }
	done
	if [ "$rate" = 0 ]; then
		idle_total=$(awk '{print $1}' "$T/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
		idle_down=$(awk '{print $2}' "$T/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
	fi
	awk -v label="$label" -v link="$LINK" '
		{ tot[NR] = $1; dt[NR] = $2; by += $3; nz += $4; ho[NR] = $5; rd += $6
		  if ($7 > thr) thr = $7; su[NR] = $8; r1[NR] = $9 }
		function median(a, n,   i, j, t) {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
				if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return a[int((n + 1) / 2)]
		}
		END {
			n = NR; limit_ms = (nz / n) * 8 / (link * 1e6) * 1000
			mt = median(tot, n); md = median(dt, n); mh = median(ho, n)
			printf "%-18s total p50 %6d ms  downtime p50 %5d ms  handoff p50 %d ms  sent %.1f MiB  rounds %.1f  max throttle %d%%\n",
				label, mt, md, mh, by / n / 1048576, rd / n, thr
			printf "%-18s non-zero RAM %.1f MiB -> link limit %d ms; total / limit = %.2f\n",
				"", nz / n / 1048576, limit_ms, (limit_ms > 0 ? mt / limit_ms : 0)
			printf "%-18s where: setup p50 %d ms, round 1 (all of RAM) p50 %d ms\n",
				"", median(su, n), median(r1, n)
		}' "$T/results"
done
# QEMU baseline, same RAM, same link, same downtime target: 512 MiB of
# non-zero RAM (a file of "vmfs" lines behind a private mapping) and the
# same test guest booted as a multiboot ELF under TCG.  Without vmfs-vmm's
# boot-info block the guest does not dirty memory: idle only.
QEMU=$(command -v qemu-system-x86_64)
if [ -z "$QEMU" ] || ! command -v python3 >/dev/null; then
	echo "QEMU baseline: skipped (needs qemu-system-x86 and python3)"
	exit 0
fi
yes vmfs | head -c "${RAM}M" > "$T/qemu-ram.img"
: > "$T/qemu-results"
for i in $(seq 1 "$RUNS"); do
	rm -f "$T"/q*.qmp
	"$QEMU" -machine pc,accel=tcg,memory-backend=mem -m "$RAM" -display none -monitor none \
		-object "memory-backend-file,id=mem,size=${RAM}M,mem-path=$T/qemu-ram.img,share=off" \
		-kernel "$G/guest.elf" -serial null -qmp "unix:$T/qsrc.qmp,server=on,wait=off" \
		>"$T/qsrc.log" 2>&1 &
	qs=$!; PIDS="$PIDS $qs"
	"$QEMU" -machine pc,accel=tcg,memory-backend=mem -m "$RAM" -display none -monitor none \
		-object "memory-backend-ram,id=mem,size=${RAM}M" -kernel "$G/guest.elf" \
		-serial null -qmp "unix:$T/qdst.qmp,server=on,wait=off" \
		-incoming tcp:127.0.0.1:47123 >"$T/qdst.log" 2>&1 &
	qd=$!; PIDS="$PIDS $qd"
	wait_for 30 test -S "$T/qsrc.qmp" && wait_for 30 test -S "$T/qdst.qmp" || { echo "QEMU did not start"; exit 1; }
	sleep 2
	q=$(timeout 600 python3 "$(dirname "$0")/qmp-migrate.py" "$T/qsrc.qmp" 47123 "$DOWNTIME") ||
		{ echo "QEMU migration failed: $q"; exit 1; }
	echo "$(field "$q" total-time) $(field "$q" downtime) $(field "$q" transferred) $(field "$q" normal-bytes)" >> "$T/qemu-results"
	kill -9 $qs $qd 2>/dev/null; wait $qs $qd 2>/dev/null
done
awk -v link="$LINK" -v ours_t="$idle_total" -v ours_d="$idle_down" '
	{ tot[NR] = $1; dt[NR] = $2; by += $3; nz += $4 }
	function median(a, n,   i, j, t) {
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
			if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return a[int((n + 1) / 2)]
	}
	END {
		n = NR; mt = median(tot, n); md = median(dt, n)
		limit_ms = (nz / n) * 8 / (link * 1e6) * 1000
		printf "%-18s total p50 %6d ms  downtime p50 %5d ms  sent %.1f MiB; total / limit = %.2f\n",
			"QEMU 7.2 idle", mt, md, by / n / 1048576, (limit_ms > 0 ? mt / limit_ms : 0)
		if (ours_t != "")
			printf "%-18s vmfs-vmm / QEMU: total %.2fx, downtime %s\n", "", ours_t / mt,
				(md > 0 ? sprintf("%.2fx", ours_d / md) : sprintf("%d ms vs %d ms", ours_d, md))
	}' "$T/qemu-results"
