#!/bin/bash
# vmfs-vmm --handoff: the disk-lock handoff of a live migration done inside
# the hypervisor (libvmfs-handoff; the lookup before the pause, ONE
# TRANSFER_SET in it) instead of by a program (--handoff-exec), on a 3-host
# cluster whose vmfs volume is mounted -o cluster on host1 and host2, the
# VM's disk a file on it:
#   1. refused: the destination's prepare was withdrawn before the
#      switchover, so nothing is prepared - the migration fails before any
#      pause (the transfer is made just before it), naming the switchover
#      hook, status.handoff says why, the VM runs on in host1 and keeps its
#      disk lock; the destination discards and exits;
#   2. the handoff: `vmfs-migrate prepare PATH` on host2, migrate: the disk's
#      open lock (volume UUID / i<ino>) is granted to host2 alone, the
#      prepare exits 0, the guest runs on host2, status.handoff shows the
#      in-process hook used the lookup made before the pause; every source
#      holds the guest's disk 50 ms before its transfer
#      (VMFS_VMM_TEST_HOLD_MS), and the record write held meanwhile runs
#      on the destination at its resume (logged there);
#   3. more hops back and forth, then as many with --handoff-exec
#      (vmfs-migrate handoff NAME): the time in the hook (status
#      handoff.hook_us, microseconds) and the engine's downtime figures,
#      p50 and max of each; finally the guest's disk records are continuous.
# Knobs: VMFS_VMM_HANDOFF_HOPS (hops per mode in step 3, default 3).
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/migrate/cluster-vmm-lib.sh"
HOPS=${VMFS_VMM_HANDOFF_HOPS:-3}
[[ $HOPS =~ ^[1-9][0-9]*$ ]] || die "VMFS_VMM_HANDOFF_HOPS must be a positive number"
VM=vm1
MAC=52:54:00:5e:00:02
VMOPTS="--ram 16 --cpus 1 --dirty-rate 2048 --work-mib 8 --verify-ram"

# use_hook inproc|exec: the switchover hook of the next vmfs-vmm
use_hook() {
	if [[ $1 == inproc ]]; then HOOK=(--handoff); else HOOK=(--handoff-exec "$T/hook"); fi
}

# hop N S D MODE: migrate the VM (tag vm-(N-1) on host S) to host D, whose
# vmfs-vmm gets the hook of MODE for the next hop.  Records the figures.
hop() {
	local n=$1 s=$2 d=$3 mode=$4 src=vm-$(($1 - 1)) dst=vm-$1 rc=0 h1 h2 hook
	prepare "$d" "$dst"
	use_hook "$mode"
	incoming "$d" "$dst" VMFS_VMM_TEST_HOLD_MS=50
	migrate_done "hop $n (host$s -> host$d)" "$src" "$dst" "$d"
	wait_for 20 "hop $n: guest resume report" grep -q "vmfs-guest: resume n=$n" "$T/$dst.serial"
	grep -q "resume n=$n verify ok" "$T/$dst.serial" || die "hop $n: the guest's memory check failed"
	h1=$(st "$src" ram_sha256) h2=$(st "$dst" ram_sha256)
	[[ -n $h1 && $h1 == "$h2" ]] || die "hop $n: RAM differs ($h1 / $h2)"
	wait "$PREP_PID" || rc=$?
	[[ $rc == 0 ]] || { cat "$T/prep-$dst.out" >&2; die "hop $n: prepare on host$d exited $rc"; }
	assert_holder "$d" "hop $n"
	hook=$(st "$src" handoff.mode)
	[[ $hook == "$SRC_MODE_NAME" ]] || die "hop $n: the source's hook ran as '$hook', not $SRC_MODE_NAME"
	if [[ $hook == in-process ]]; then
		[[ $(st "$src" handoff.lookups_in_pause) == 0 ]] ||
			die "hop $n: the hook looked the handoff up in the pause: $(ctl "$src" status)"
		[[ $(st "$src" handoff.disks) == 1 ]] || die "hop $n: not 1 disk moved: $(ctl "$src" status)"
		# the source held the disk 50 ms before the transfer: a record
		# write waited and ran on the destination at its resume
		grep -q "ran the disk command held during the handoff (write block [0-9]*): ok" \
			"$T/$dst.log" || die "hop $n: no held disk write ran on the destination"
	fi
	st "$src" handoff.hook_us >>"$T/hook_us.$hook"
	st "$src" migration.downtime_breakdown.handoff_ms >>"$T/handoff_ms.$hook"
	st "$src" migration.downtime_ms >>"$T/downtime_ms.$hook"
	echo "# hop $n host$s -> host$d ($hook): hook $(st "$src" handoff.hook_us) us," \
		"engine handoff $(st "$src" migration.downtime_breakdown.handoff_ms) ms," \
		"downtime $(st "$src" migration.downtime_ms) ms; $(st "$src" handoff.result)"
	stop_vmm "$src"
}

# ------------------------------------------------------------------ setup

cluster_up 3 --disk-size 1G
vn_volume hi 16M

use_hook inproc
vmm 1 vm-0 VMFS_VMM_TEST_HOLD_MS=50
wait_for 30 "guest ticks" grep -q 'vmfs-guest: tick' "$T/vm-0.serial"
assert_holder 1 "guest started"
[[ $(st vm-0 handoff) == "" ]] || die "status shows a handoff before any migration: $(st vm-0 handoff)"

# ------------------------------------------------------------------ 1. refused

info "1. nothing prepared on host2: the in-process handoff refuses, the VM stays on host1"
# As an operator would: prepare, start the destination, then the prepare is
# withdrawn (vmfs-migrate abort) before the switchover.
prepare 2 f-noprep
incoming 2 f-noprep
rc=0
hexec 2 "$MIG" abort "$VM" >>"$T/prep-f-noprep.out" 2>&1 || die "vmfs-migrate abort on host2 failed"
wait "$PREP_PID" || rc=$?
[[ $rc == 3 ]] || { cat "$T/prep-f-noprep.out" >&2; die "the prepare exited $rc after abort, not 3"; }
ctl vm-0 migrate "$("$VC" addr 2):$PORT" | grep -q '"ok":true' || die "migrate refused at once"
wait_for 60 "the migration to fail" mig_is vm-0 failed || die "status: $(ctl vm-0 status)"
[[ $(st vm-0 migration.error) == *"switchover hook"* ]] ||
	die "the error does not name the hook: $(st vm-0 migration.error)"
res=$(st vm-0 handoff.result)
[[ $(st vm-0 handoff.mode) == in-process && $res == refused:* ]] ||
	die "status.handoff does not say the in-process hook refused: $(ctl vm-0 status)"
[[ $res == *"nothing to hand over"* || $res == *"prepare"* ]] || die "unclear refusal: $res"
[[ $(st vm-0 migration.downtime_ms) == 0 ]] ||
	die "the refused migration paused the VM: $(st vm-0 migration.downtime_ms) ms"
info "refused: $res (no pause)"
grep -q "handoff refused, the VM stays here" "$T/vm-0.log" || die "no log line for the refusal"
wait_for 20 "the destination to discard and exit" vmm_dead f-noprep
state_is vm-0 running || die "the VM does not run on host1 after the refusal: $(ctl vm-0 status)"
n=$(ticks vm-0)
wait_for 20 "the guest on host1 to tick on" more_ticks vm-0 "$n"
assert_holder 1 "after the refused handoff"

# ------------------------------------------------------------------ 2. handoff

info "2. prepared on host2: the in-process handoff moves the lock"
SRC_MODE_NAME=in-process
hop 1 1 2 inproc
n=$(ticks vm-1)
wait_for 20 "the guest on host2 to tick on" more_ticks vm-1 "$n"
grep -q "handed over 1 disk lock in one transfer" "$T/vm-0.log" || die "the source did not log the handoff"

# ------------------------------------------------------------------ 3. figures

info "3. $HOPS more in-process hops, then $HOPS with --handoff-exec"
N=1 CUR=2 OTHER=1
for ((k = 1; k <= 2 * HOPS; k++)); do
	# the last in-process hop starts the first vmfs-vmm with the exec hook
	if ((k < HOPS)); then mode=inproc; else mode=exec; fi
	hop $((N + 1)) "$CUR" "$OTHER" "$mode"
	N=$((N + 1))
	read -r CUR OTHER <<<"$OTHER $CUR"
	((k != HOPS)) || SRC_MODE_NAME=exec
done
for m in in-process exec; do
	echo "# $m: hook_us $(jpy stats <"$T/hook_us.$m"); engine handoff_ms" \
		"$(jpy stats <"$T/handoff_ms.$m"); downtime_ms $(jpy stats <"$T/downtime_ms.$m")"
done
grep -q "handed over $VM" "$T/hook.log" ||
	die "the --handoff-exec hops did not run vmfs-migrate: $(cat "$T/hook.log")"

stop_vmm "vm-$N"
hexec "$CUR" "$DISKCHECK" "$DISKF" "$N" || die "disk records not continuous across $N migrations"
echo "PASS: $TEST_NAME"
