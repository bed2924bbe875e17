#!/bin/bash
# The way back after the handoff: the destination fails AFTER the disk locks
# moved to it but BEFORE it acknowledged the resume (the point of no
# return), so the VM resumes on the source - which must own its disks
# again.  On a 3-host cluster (vmfs volume mounted -o cluster on host1 and
# host2, the VM's disk a file on it), vmfs-vmm --handoff on host1:
#   1. the destination is killed just before its resume
#      (VMFS_VMM_TEST_FAULT=dest-resume-kill): the migration fails, the
#      source gives the disks back (its return claim, armed before the
#      pause, gets the destination's lock in one transfer), the guest runs
#      on in host1 with no disk error, the disk lock is host1's alone;
#   1b. the destination is killed when the device state arrives
#      (dest-state-kill): the source's transfer before the pause already moved
#      the lock, the switchover hook was not reached; same checks;
#      in both the source holds the guest's disk 50 ms before the transfer
#      (VMFS_VMM_TEST_HOLD_MS), so a record write is held and must run on
#      the source after the give-back (logged; records continuous);
#   2. the destination stays alive but never resumes nor acknowledges
#      (dest-resume-stall): the source times out waiting for the ack and
#      actively transfers the locks back; same checks;
#   3. `vmfs-migrate return` on the source (arm, state) and `vmfs-migrate
#      abort` on the source with nothing to give back;
#   4. a normal migration to host2 afterwards: the handoff works, the
#      return claim is dropped (the lock is host2's alone, nothing of host1
#      waits on it);
#   5. back towards host1 with the hook as a program (--handoff-exec:
#      vmfs-migrate handoff/abort), the destination killed again: the
#      abort hook (`vmfs-migrate abort` on the source) gives the disks
#      back; finally the guest's disk records are continuous (disk-check,
#      read independently of vmfs-vmm).
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/migrate/cluster-vmm-lib.sh"

VM=vm1
MAC=52:54:00:5e:00:03
VMOPTS="--ram 16 --cpus 1 --dirty-rate 2048 --work-mib 8 --verify-ram"

# after_fault WHAT [TAG HOST]: the VM (TAG, default vm-0) runs on in HOST
# (default 1) owning its disk, with no disk error, its records going on.
after_fault() {
	local what=$1 tag=${2:-vm-0} h=${3:-1} n res
	state_is "$tag" running || die "$what: the VM does not run on host$h: $(ctl "$tag" status)"
	res=$(st "$tag" handoff.result)
	if [[ $(st "$tag" handoff.mode) == in-process ]]; then
		[[ $res == *"given back"* ]] || die "$what: status.handoff does not say the disks were given back: $res"
	fi
	grep -q "the disks are back" "$T/$tag.log" || die "$what: no log line for the give-back"
	assert_holder "$h" "$what"
	n=$(ticks "$tag")
	wait_for 20 "$what: the guest on host$h to tick on" more_ticks "$tag" "$n"
	sleep 0.5	# >= 50 disk records after the resume
	if grep -q 'vmfs-guest: disk error' "$T/$tag.serial"; then
		die "$what: the guest got a disk error after the resume: $(grep -A2 'disk error' "$T/$tag.serial" | head -3)"
	fi
	grep -q 'fenced' "$T/$tag.log" && die "$what: the source logged fenced disks"
	info "$what: $res; downtime $(st "$tag" migration.downtime_ms) ms"
}

# ------------------------------------------------------------------ setup

cluster_up 3 --disk-size 1G
vn_volume gb 16M

vmm 1 vm-0 VMFS_VMM_TEST_HOLD_MS=50
wait_for 30 "guest ticks" grep -q 'vmfs-guest: tick' "$T/vm-0.serial"
assert_holder 1 "guest started"

# dest_dies TAG FAULT N: migrate vm-0 to host2, whose vmfs-vmm (TAG) dies
# at FAULT (VMFS_VMM_TEST_FAULT); the migration fails and host1 logs its
# Nth give-back of the disk.
held_ok() { grep -c "ran the disk command held during the handoff (write block [0-9]*): ok" \
	"$T/vm-0.log" || true; }
more_held_ok() { (($(held_ok) > $1)); }
dest_dies() {
	local tag=$1 fault=$2 n=$3 held
	held=$(held_ok)
	prepare 2 "$tag"
	incoming 2 "$tag" VMFS_VMM_TEST_FAULT="$fault"
	ctl vm-0 migrate "$("$VC" addr 2):$PORT" | grep -q '"ok":true' || die "migrate refused at once"
	wait_for 60 "the migration to fail" mig_is vm-0 failed || die "status: $(ctl vm-0 status)"
	wait_for 10 "the destination to die" vmm_dead "$tag"
	grep -q "$fault" "$T/$tag.log" || die "the destination did not reach the fault $fault"
	# (the prepare may see its claim granted, or gone again: given back)
	wait "$PREP_PID" || true
	[[ $(grep -c "give-back $LS/$RES: host2 -> host1" "$T/vm-0.log") == "$n" ]] ||
		die "$fault: the source did not give the disk back: $(tail -n 5 "$T/vm-0.log")"
	wait_for 10 "$fault: the held record write to run on the source" more_held_ok "$held" ||
		die "$fault: no held disk write ran on the source after the give-back"
	rm -f "$T/$tag.pid"
}

# ------------------------------------------------------------------ 1. killed

info "[${SECONDS}s] 1. the destination dies after the handoff, before its ack"
dest_dies f-kill dest-resume-kill 1
after_fault "destination killed"

# ------------------------------------------------------------------ 1b. at the state

info "[${SECONDS}s] 1b. the destination dies at the device state: after the transfer before the pause, before the switchover"
dest_dies f-skill dest-state-kill 2
[[ $(st vm-0 handoff.result) == *"failed after the transfer before the pause"* ]] ||
	die "status.handoff does not say the transfer before the pause was undone: $(st vm-0 handoff.result)"
after_fault "destination killed at the device state"

# ------------------------------------------------------------------ 2. stalled

info "[${SECONDS}s] 2. the destination stalls after the handoff, never acknowledges"
prepare 2 f-stall
incoming 2 f-stall VMFS_VMM_TEST_FAULT=dest-resume-stall
ctl vm-0 migrate "$("$VC" addr 2):$PORT" io-timeout-ms=3000 | grep -q '"ok":true' || die "migrate refused at once"
wait_for 60 "the migration to fail (the ack times out)" mig_is vm-0 failed || die "status: $(ctl vm-0 status)"
grep -q 'dest-resume-stall' "$T/f-stall.log" || die "the destination did not reach the stall"
vmm_dead f-stall && die "the stalled destination died by itself"
wait "$PREP_PID" || true
[[ $(grep -c "give-back $LS/$RES: host2 -> host1" "$T/vm-0.log") == 3 ]] ||
	die "the source did not log the third give-back"
after_fault "destination stalled"
kill -KILL "$(cat "$T/f-stall.pid")"
wait_for 10 "the stalled destination to die" vmm_dead f-stall
rm -f "$T/f-stall.pid" "$T/f-stall.sock"
assert_holder 1 "stalled destination killed"

# ------------------------------------------------------------------ 3. CLI

info "[${SECONDS}s] 3. vmfs-migrate return / abort on the source"
hexec 1 "$MIG" return state "$DISKF" | grep -q ': none$' || die "a return claim is left after the faults"
hexec 1 "$MIG" return arm --vm "$VM" "$DISKF" >"$T/ret.out" 2>&1 || { cat "$T/ret.out" >&2; die "return arm failed"; }
hexec 1 "$MIG" return state "$DISKF" | grep -q ": armed $VM\$" || die "return state does not say armed"
[[ $(locks_on | grep -c "^waiting host1 return:$VM ") == 1 ]] || die "no return claim in the lock table: $(locks_on | tr '\n' ';')"
hexec 1 "$MIG" abort "$VM" >"$T/abort.out" 2>&1 || { cat "$T/abort.out" >&2; die "abort on the source with nothing handed off failed"; }
grep -q "back on host1" "$T/abort.out" || die "abort did not say the disks are here: $(cat "$T/abort.out")"
if hexec 2 "$MIG" return arm --vm "$VM" "$DISKF" >"$T/ret2.out" 2>&1; then
	die "return arm succeeded on host2, where the file is not open"
fi
grep -q "not open" "$T/ret2.out" || die "unclear refusal on host2: $(cat "$T/ret2.out")"
hexec 1 "$MIG" return drop "$DISKF" >/dev/null || die "return drop failed"
assert_holder 1 "return claim dropped"
n=$(ticks vm-0)
wait_for 20 "the guest on host1 to tick on" more_ticks vm-0 "$n"

# ------------------------------------------------------------------ 4. success

info "[${SECONDS}s] 4. a normal migration to host2"
prepare 2 vm-1
HOOK=(--handoff-exec "$T/hook")	# for step 5
incoming 2 vm-1
migrate_done "the migration to host2" vm-0 vm-1 2
wait "$PREP_PID" || die "prepare on host2 failed"
assert_holder 2 "after the migration"
[[ $(st vm-0 handoff.lookups_in_pause) == 0 ]] || die "the hook looked up in the pause"
grep -q "handed over 1 disk lock in one transfer" "$T/vm-0.log" || die "the source did not log the handoff"
stop_vmm vm-0
n=$(ticks vm-1)
wait_for 20 "the guest on host2 to tick on" more_ticks vm-1 "$n"
grep -q 'vmfs-guest: disk error' "$T/vm-1.serial" && die "disk error on host2"

# ------------------------------------------------------------------ 5. exec

info "[${SECONDS}s] 5. --handoff-exec: the destination (host1) dies after the handoff"
prepare 1 f-kill2
HOOK=(--handoff)
incoming 1 f-kill2 VMFS_VMM_TEST_FAULT=dest-resume-kill
ctl vm-1 migrate "$("$VC" addr 1):$PORT" | grep -q '"ok":true' || die "migrate refused at once"
wait_for 60 "the migration to fail" mig_is vm-1 failed || die "status: $(ctl vm-1 status)"
wait_for 10 "the destination to die" vmm_dead f-kill2
wait "$PREP_PID" || true
grep -q "aborted: $VM's disks are back on host2" "$T/hook.log" ||
	die "the abort hook did not give the disks back: $(cat "$T/hook.log")"
after_fault "exec hook, destination killed" vm-1 2
rm -f "$T/f-kill2.pid"
stop_vmm vm-1
hexec 2 "$DISKCHECK" "$DISKF" 1 || die "disk records not continuous"
echo "PASS: $TEST_NAME (${SECONDS}s)"
