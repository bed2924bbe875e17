#!/bin/bash
# Live migration of a vmfs-vmm guest across the hosts of a 3-host cluster,
# its disk a file on the shared vmfs volume: host1 -> host2 over the cluster
# network, then back and forth (VMFS_CLUSTER_MIGRATE_HOPS, default 20 hops
# in all), each time with `vmfs-migrate prepare PATH` on the destination and
# `vmfs-migrate handoff` as the source's switchover hook.  After every hop:
# the guest runs on the destination (its counters go on, its own memory
# check passes, RAM SHA-256 equal on both sides), the disk's open lock
# (volume UUID / i<ino>) is granted to the destination and nothing waits, and
# the VM bridge's MAC table has the VM's MAC on the destination's port (its
# RARP, sent through the VM's tap, a port of the host's bridge vmbr0).  After the first hop a process on host1 that had the disk open
# O_RDWR before the handoff gets EIO on a write (fenced).  Then faults
# (VMFS_CLUSTER_MIGRATE_FAULTS=0 skips them): cancel, destination killed
# during pre-copy, handoff refused (prepare withdrawn), destination killed
# during stop-and-copy (the source paused, sending the final pages), the
# migration network's link to the destination cut during pre-copy (the
# engine's I/O timeout must end it) - each leaves the VM running on its
# source alone (the destination's vmfs-vmm gone), which keeps its lock, and
# a migration after them still works.  Finally the guest's disk records are
# continuous across everything (disk-check).
#
# Knobs: VMFS_CLUSTER_MIGRATE_HOPS (default 20), VMFS_CLUSTER_MIGRATE_FAULTS
# (default 1), VMFS_CLUSTER_MIGRATE_NET=cluster|mig (migration traffic of
# the hops over the cluster network, default, or the dedicated one; the
# cluster always has it, vmfs-cluster up --mignet, since the last two faults
# shape and cut it: doing that to the cluster network would be a host
# failure, another test), VMFS_CLUSTER_MIGRATE_RAM (MiB, default 32).
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/migrate/cluster-vmm-lib.sh"
HOPS=${VMFS_CLUSTER_MIGRATE_HOPS:-20}
FAULTS=${VMFS_CLUSTER_MIGRATE_FAULTS:-1}
NET=${VMFS_CLUSTER_MIGRATE_NET:-cluster}
RAM=${VMFS_CLUSTER_MIGRATE_RAM:-32}
[[ $HOPS =~ ^[1-9][0-9]*$ ]] || die "VMFS_CLUSTER_MIGRATE_HOPS must be a positive number"
[[ $NET == cluster || $NET == mig ]] || die "VMFS_CLUSTER_MIGRATE_NET must be cluster or mig"
VM=vm1
MAC=52:54:00:5e:00:01
VMOPTS="--ram $RAM --cpus 2 --dirty-rate 4096 --work-mib $((RAM / 2)) --verify-ram"
HOOK=(--handoff-exec "$T/hook")	# vmfs-migrate handoff/abort, the exec path
# the VM's NIC: a tap on the host's VM bridge, which the RARP goes through
VMM_EXTRA=(--tap 'vmtap%d' --bridge vmbr0)

# ------------------------------------------------------------------ helpers

# still_running TAG WHAT: the VM of TAG runs and its guest ticks on.
still_running() {
	local n
	state_is "$1" running || die "$2: the VM ($1) is not running: $(ctl "$1" status)"
	n=$(ticks "$1")
	wait_for 20 "$2: the guest on $1 to tick on" more_ticks "$1" "$n"
	! grep -q 'verify FAILED' "$T/$1.serial" || die "$2: the guest's memory check failed"
}

fdb_is() { [[ $("$VC" fdb "$MAC" 2>/dev/null) == "h$1vm" ]]; }

dest_addr() { "$VC" addr "$1" "${2:-$NET}"; }
INCOMING_NET=$NET

# ------------------------------------------------------------------ setup

cluster_up 3 --disk-size 2G --mignet
SW=$VMFS_CLUSTER_ID-sw		# the switch namespace (tests/cluster/README.md)
info "[${SECONDS}s] vmfs-mkfs, vmfs-mount -o cluster on host1 and host2"
vn_volume vn 64M

info "[${SECONDS}s] guest $VM on host1 (${RAM} MiB, thread accelerator)"
vmm 1 vm-0
wait_for 30 "guest boot" grep -q 'vmfs-guest: up' "$T/vm-0.serial"
wait_for 30 "guest ticks" grep -q 'vmfs-guest: tick' "$T/vm-0.serial"
assert_holder 1 "guest started"
# vmfs-vmm announces the MAC only after an incoming migration: stand in for
# the guest's first frame on host1's VM interface.
hexec 1 python3 - vm0 "$MAC" <<'EOF'
import socket, sys
mac = bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send((b"\xff" * 6 + mac + b"\x80\x35").ljust(60, b"\0"))
EOF
wait_for 10 "the VM's MAC on host1's port" fdb_is 1 || die "fdb: $("$VC" fdb | tr '\n' ';')"

# ------------------------------------------------------------------ hops

# hop N S D: migrate the VM (control socket vm-(N-1), on host S) to host D
hop() {
	local n=$1 s=$2 d=$3 src=vm-$(($1 - 1)) dst=vm-$1 t0 rc=0 h1 h2 e tap
	t0=$(grep 'vmfs-guest: tick' "$T/$src.serial" | tail -n 1 | sed 's/.* t=\([0-9]*\).*/\1/')
	local p0=$SECONDS p1 p2 p3 p4 p5
	prepare "$d" "$dst"
	p1=$SECONDS
	incoming "$d" "$dst"
	p2=$SECONDS
	ctl "$src" migrate "$(dest_addr "$d"):$PORT" | grep -q '"ok":true' || die "hop $n: migrate refused"
	if ! wait_for 60 "hop $n: source postmigrate" state_is "$src" postmigrate; then
		ctl "$src" status >&2
		die "hop $n ($s -> $d) did not complete: $(st "$src" migration.error)"
	fi
	p3=$SECONDS
	wait_for 20 "hop $n: destination running" state_is "$dst" running
	wait_for 20 "hop $n: guest resume report" grep -q "vmfs-guest: resume n=$n" "$T/$dst.serial"
	grep -q "resume n=$n verify ok" "$T/$dst.serial" || die "hop $n: the guest's memory check failed"
	wait_for 20 "hop $n: ticks on host$d" grep -q "vmfs-guest: tick.*resumes=$n" "$T/$dst.serial"
	e=$(grep 'vmfs-guest: tick' "$T/$dst.serial" | tail -n 1 | sed 's/.* t=\([0-9]*\).*/\1/')
	((e > t0)) || die "hop $n: the guest clock went back ($t0 -> $e)"
	h1=$(st "$src" ram_sha256) h2=$(st "$dst" ram_sha256)
	[[ -n $h1 && $h1 == "$h2" ]] || die "hop $n: RAM differs ($h1 / $h2)"
	wait "$PREP_PID" || rc=$?
	[[ $rc == 0 ]] || { cat "$T/prep-$dst.out" >&2; die "hop $n: prepare on host$d exited $rc"; }
	p4=$SECONDS
	assert_holder "$d" "hop $n"
	tap=$(st "$dst" tap)
	[[ -n $tap && $(st "$dst" bridge) == vmbr0 ]] || die "hop $n: no tap on vmbr0: $(ctl "$dst" status)"
	hexec "$d" ip -o link show master vmbr0 | grep -q ": $tap:" ||
		die "hop $n: tap $tap is not a port of host$d's vmbr0: $(hexec "$d" ip -o link show master vmbr0)"
	p5=$SECONDS
	wait_for 10 "hop $n: the VM's MAC on host$d's port (RARP)" fdb_is "$d" ||
		die "hop $n: fdb: $("$VC" fdb | tr '\n' ';')"
	echo "# hop $n host$s -> host$d: $(st "$src" migration.total_time_ms) ms," \
		"downtime $(st "$src" migration.downtime_ms) ms" \
		"(handoff $(st "$src" migration.downtime_breakdown.handoff_ms) ms)," \
		"lock $(locks_on | tr '\n' ' ');" \
		"test: prepare $((p1 - p0)) s, incoming $((p2 - p1)) s, migrate $((p3 - p2)) s," \
		"guest checks $((p4 - p3)) s, lock $((p5 - p4)) s, fdb $((SECONDS - p5)) s"
}

# Hop 1, with the fencing check: a process on host1 opened the disk O_RDWR
# while host1 owned it; after the handoff its write must fail with EIO.
info "[${SECONDS}s] hop 1: host1 -> host2 over the $NET network, a writer on host1 keeps the disk open"
rm -f "$T/writer.go" "$T/writer.ready"
hexec 1 python3 - "$DISKF" "$T/writer.ready" "$T/writer.go" >"$T/writer.out" 2>&1 <<'EOF' &
import os, sys, time
path, ready, go = sys.argv[1:]
fd = os.open(path, os.O_RDWR)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.05)
try:
    # the last block: the guest's records do not reach it
    os.pwrite(fd, b"fenced?\n" * 512, os.fstat(fd).st_size - 4096)
    print("write succeeded")
except OSError as e:
    print("errno", e.errno, os.strerror(e.errno))
EOF
WRITER=$!
wait_for 10 "the writer on host1 to open the disk" test -e "$T/writer.ready" ||
	{ cat "$T/writer.out" >&2; die "the writer on host1 could not open $DISKF"; }
hop 1 1 2
touch "$T/writer.go"
wait "$WRITER" || die "the writer on host1 failed: $(cat "$T/writer.out")"
grep -q "^errno $(python3 -c 'import errno; print(errno.EIO)') " "$T/writer.out" ||
	die "host1's handle was not fenced after the handoff: $(cat "$T/writer.out")"
info "host1's old handle: $(cat "$T/writer.out")"
stop_vmm vm-0

CUR=2 OTHER=1 N=1
while ((N < HOPS)); do
	hop $((N + 1)) "$CUR" "$OTHER"
	stop_vmm "vm-$N"
	N=$((N + 1))
	read -r CUR OTHER <<<"$OTHER $CUR"
done
info "[${SECONDS}s] $HOPS hops done; the VM runs on host$CUR"

# ------------------------------------------------------------------ faults

if [[ $FAULTS == 1 ]]; then
	SRC=vm-$N
	# 1. cancel during pre-copy (the bandwidth cap keeps it there)
	info "[${SECONDS}s] fault: cancel during pre-copy"
	prepare "$OTHER" f-cancel
	incoming "$OTHER" f-cancel
	ctl "$SRC" migrate "$(dest_addr "$OTHER"):$PORT" max-bandwidth=1000000 >/dev/null
	wait_for 20 "pre-copy" mig_is "$SRC" active
	sleep 0.5
	ctl "$SRC" cancel >/dev/null
	wait_for 20 "cancelled" mig_is "$SRC" cancelled
	wait_for 20 "the destination to discard and exit" vmm_dead f-cancel
	abort_prepare "$OTHER" f-cancel
	still_running "$SRC" cancel
	assert_holder "$CUR" cancel

	# 2. destination killed during pre-copy
	info "[${SECONDS}s] fault: destination killed during pre-copy"
	prepare "$OTHER" f-kill
	incoming "$OTHER" f-kill
	ctl "$SRC" migrate "$(dest_addr "$OTHER"):$PORT" max-bandwidth=1000000 >/dev/null
	wait_for 20 "pre-copy" mig_is "$SRC" active
	sleep 0.5
	kill -KILL "$(cat "$T/f-kill.pid")"
	wait_for 30 "the migration to fail" mig_is "$SRC" failed
	abort_prepare "$OTHER" f-kill
	still_running "$SRC" "destination killed"
	assert_holder "$CUR" "destination killed"

	# 3. the handoff refused: the destination's claim withdrawn before the
	# switchover, so the hook finds nothing prepared
	info "[${SECONDS}s] fault: handoff refused (prepare withdrawn)"
	prepare "$OTHER" f-noprep
	incoming "$OTHER" f-noprep
	abort_prepare "$OTHER" f-noprep
	ctl "$SRC" migrate "$(dest_addr "$OTHER"):$PORT" >/dev/null
	wait_for 60 "the migration to fail" mig_is "$SRC" failed
	ctl "$SRC" status | grep -q 'switchover hook' ||
		die "handoff refused: the error does not name the hook: $(st "$SRC" migration.error)"
	wait_for 20 "the destination to exit" vmm_dead f-noprep
	still_running "$SRC" "handoff refused"
	assert_holder "$CUR" "handoff refused"
	info "hook said: $(grep -v '^==' "$T/hook.log" | tail -n 1)"

	# 4. destination killed during stop-and-copy.  The migration network's
	# port to the destination is shaped to RAM/8 MB/s (4 MB/s for 32 MiB)
	# and the switchover forced after one round (the downtime target out of
	# reach): round 1 sends the guest's non-zero pages (its RAM/2 work area,
	# ~4 s) while it dirties that at 4 MiB/s, so the final pages take
	# seconds to go, the VM paused.
	info "[${SECONDS}s] fault: destination killed during stop-and-copy"
	tc -n "$SW" qdisc replace dev "h${OTHER}mig" root tbf rate "${RAM}mbit" burst 65536 \
		latency 50ms
	prepare "$OTHER" f-sckill
	INCOMING_NET=mig incoming "$OTHER" f-sckill
	h0=$(grep -c '^== .*handoff' "$T/hook.log" || true)
	ctl "$SRC" migrate "$(dest_addr "$OTHER" mig):$PORT" max-rounds=1 force=1 downtime-ms=1 \
		>/dev/null
	# status "device" = the VM paused, final pages, state, handoff; polled
	# fast, since it is a window of seconds
	n=0
	while :; do
		ms=$(st "$SRC" migration.status)
		[[ $ms == device ]] && break
		[[ $ms == setup || $ms == active || $ms == none || -z $ms ]] ||
			die "stop-and-copy: the migration went $ms before the kill: $(ctl "$SRC" status)"
		((++n < 1200)) || die "stop-and-copy: still '$ms' after 60 s: $(ctl "$SRC" status)"
		sleep 0.05
	done
	sc=$(ctl "$SRC" status)
	kill -KILL "$(cat "$T/f-sckill.pid")"
	jpy field state <<<"$sc" | grep -qx paused || die "stop-and-copy: the source was not paused: $sc"
	[[ $(grep -c '^== .*handoff' "$T/hook.log" || true) == "$h0" ]] ||
		die "stop-and-copy: the handoff had already run when the destination was killed"
	info "killed the destination with the source paused," \
		"$(jpy field migration.transferred_bytes <<<"$sc") bytes sent"
	wait_for 30 "the migration to fail" mig_is "$SRC" failed
	wait_for 10 "the killed destination to be gone" vmm_dead f-sckill
	tc -n "$SW" qdisc del dev "h${OTHER}mig" root
	abort_prepare "$OTHER" f-sckill
	[[ $(grep -c '^== .*handoff' "$T/hook.log" || true) == "$h0" ]] ||
		die "stop-and-copy: the switchover hook ran after the destination was killed"
	info "source: $(st "$SRC" migration.error), downtime $(st "$SRC" migration.downtime_ms) ms"
	still_running "$SRC" "destination killed in stop-and-copy"
	assert_holder "$CUR" "destination killed in stop-and-copy"

	# 5. the link cut during pre-copy: the destination's migration-network
	# port goes down, so nothing is refused or reset - the source's send
	# stalls and the destination's receive waits.  Both must give up on
	# their own (the engine's I/O timeout, 10 s by default: vmfs-vmm has no
	# knob for it) and the VM go on on the source.  The waits below are
	# bounded so that a hang fails here, saying so.
	info "[${SECONDS}s] fault: migration link to host$OTHER cut during pre-copy"
	prepare "$OTHER" f-cut
	INCOMING_NET=mig incoming "$OTHER" f-cut
	ctl "$SRC" migrate "$(dest_addr "$OTHER" mig):$PORT" max-bandwidth=1000000 >/dev/null
	wait_for 20 "pre-copy" mig_is "$SRC" active
	sleep 1
	ip -n "$SW" link set "h${OTHER}mig" down
	t_cut=$SECONDS
	wait_for 60 "the source to give up after the link cut" mig_is "$SRC" failed ||
		die "link cut: the source still migrates $((SECONDS - t_cut)) s after the cut" \
			"(no I/O timeout?): $(ctl "$SRC" status)"
	t_src=$((SECONDS - t_cut))
	wait_for 60 "the destination to give up after the link cut" \
		grep -q 'incoming migration failed' "$T/f-cut.log" ||
		die "link cut: the destination still waits $((SECONDS - t_cut)) s after the cut:" \
			"$(ctl f-cut status)"
	t_dst=$((SECONDS - t_cut))
	p_dst=$(ps -o stat=,wchan:24= -p "$(cat "$T/f-cut.pid")" || true)
	wait_for 60 "the destination's vmfs-vmm to exit" vmm_dead f-cut ||
		die "link cut: the destination's vmfs-vmm gave up but still runs" \
			"$((SECONDS - t_cut)) s after the cut: $(ps -o pid,stat,wchan:24,cmd -p "$(cat "$T/f-cut.pid")")"
	ip -n "$SW" link set "h${OTHER}mig" up
	abort_prepare "$OTHER" f-cut
	still_running "$SRC" "link cut"
	info "link cut: the source failed after ${t_src} s ($(st "$SRC" migration.error))," \
		"the destination gave up after ${t_dst} s (then: ${p_dst:-gone})" \
		"and exited after $((SECONDS - t_cut)) s"
	assert_holder "$CUR" "link cut"
	[[ $(grep -c '^== .*handoff' "$T/hook.log" || true) == "$h0" ]] ||
		die "link cut: the switchover hook ran"

	# After the faults the VM still migrates.
	info "[${SECONDS}s] a migration after the faults"
	rm -f "$T/vm-$((N + 1)).sock"
	hop $((N + 1)) "$CUR" "$OTHER"
	stop_vmm "vm-$N"
	N=$((N + 1))
	read -r CUR OTHER <<<"$OTHER $CUR"
fi

# ------------------------------------------------------------------ the disk

info "[${SECONDS}s] stopping the VM on host$CUR; checking its disk records"
stop_vmm "vm-$N"
hexec "$CUR" "$DISKCHECK" "$DISKF" "$N" || die "disk records not continuous across $N migrations"
echo "# $TEST_NAME: $N migrations, hook log: $(grep -c '^== .*handoff' "$T/hook.log") handoffs"
