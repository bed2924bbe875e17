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
B=${VMFS_BUILDDIR:-$VMFS_SRCDIR}
VMM=$B/migrate-helper/vmfs-vmm
MIG=$B/migrate-helper/vmfs-migrate
GUESTS=$B/migrate-helper/guests
DISKCHECK=$B/tests/migrate/disk-check
MKFS=$B/fs/vmfs-mkfs
MOUNT=$B/fs/vmfs-mount
if [[ ! -e /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
	echo "SKIP: $TEST_NAME: needs /dev/fuse and fusermount3" >&2
	exit 77
fi
for f in "$VMM" "$MIG" "$MKFS" "$MOUNT" "$DISKCHECK" "$GUESTS/guest.bin" "$GUESTS/guest-native.so"; do
	[[ -e $f ]] || die "not built: $f"
done

VM=vm1
MAC=52:54:00:5e:00:03
MNT=/run/vmfs/vol		# in each host's own /run
DISKF=$MNT/$VM.img
VMOPTS="--ram 16 --cpus 1 --dirty-rate 2048 --work-mib 8 --verify-ram"
printf 'vmfs-giveback-key-%s\n' "$RANDOM$RANDOM" >"$T/key"

_gb_cleanup() {
	local rc=$? f i
	trap - EXIT
	set +e
	for f in "$T"/*.pid; do
		[[ -s $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null
	done
	sleep 0.2
	if [[ ${_CLUSTER_STARTED:-0} == 1 ]]; then
		for i in 1 2; do
			timeout 30 "$VC" exec "$i" sh -c "mountpoint -q $MNT && fusermount3 -u $MNT" \
				>/dev/null 2>&1 || true
		done
	fi
	if ((rc != 0)); then
		for f in "$T"/*.log "$T"/*.out; do
			[[ -f $f ]] && { echo "---- $f (tail)"; tail -n 20 "$f"; } >&2
		done
	fi
	(exit "$rc")
	_cluster_cleanup
}
trap _gb_cleanup EXIT

cat >"$T/j.py" <<'EOF'
import json, sys
cmd = sys.argv[1]
if cmd == "locks":	# "queue host tag" of every lock on LS/RES
    d = json.load(sys.stdin)
    for ls in d.get("lockspaces", []):
        if ls.get("name") != sys.argv[2]:
            continue
        for r in ls.get("resources", []):
            if r.get("name") == sys.argv[3]:
                for l in r.get("locks", []):
                    print(l.get("queue"), l.get("host"), l.get("tag") or "-")
elif cmd == "field":	# FIELD or A.B.C
    d = json.load(sys.stdin)
    for k in sys.argv[2].split("."):
        d = (d or {}).get(k)
    print("" if d is None else d)
EOF
jpy() { python3 "$T/j.py" "$@"; }

# vmm I TAG [VAR=VALUE...] -- ARGS...: vmfs-vmm on host I with the hook
# $HOOK (--handoff, or --handoff-exec PROG)
HOOK=(--handoff)
vmm() {
	local i=$1 tag=$2 n=0 envs=()
	shift 2
	while [[ $1 != -- ]]; do envs+=("$1"); shift; done
	shift
	rm -f "$T/$tag.sock" "$T/$tag.pid"
	# shellcheck disable=SC2086,SC2016 # VMOPTS: words; $$ and $@: the inner sh's
	hexec "$i" env "${envs[@]}" sh -c 'echo $$ >"$0"; exec "$@"' "$T/$tag.pid" "$VMM" \
		--accel thread --image "$GUESTS/guest.bin" --native-guest "$GUESTS/guest-native.so" \
		$VMOPTS --disk "$DISKF" --name "$VM" --mac "$MAC" --psk-file "$T/key" "${HOOK[@]}" \
		--ctrl "$T/$tag.sock" --serial "$T/$tag.serial" --log-file "$T/$tag.log" "$@" \
		>"$T/$tag.out" 2>&1 &
	until [[ -S $T/$tag.sock ]]; do
		if [[ -s $T/$tag.pid ]] && ! kill -0 "$(cat "$T/$tag.pid")" 2>/dev/null; then
			cat "$T/$tag.out" >&2
			die "vmfs-vmm $tag on host$i exited at start (above)"
		fi
		((++n < 300)) || die "timed out waiting for the control socket of $tag (host$i)"
		sleep 0.1
	done
}
ctl() { "$VMM" --client "$T/$1.sock" "${@:2}"; }
st() { ctl "$1" status 2>/dev/null | jpy field "$2"; }
state_is() { [[ $(st "$1" state) == "$2" ]]; }
mig_is() { [[ $(st "$1" migration.status) == "$2" ]]; }
vmm_dead() { ! kill -0 "$(cat "$T/$1.pid")" 2>/dev/null; }
ticks() { grep -c 'vmfs-guest: tick' "$T/$1.serial" 2>/dev/null || true; }
more_ticks() { (($(ticks "$1") > $2)); }
locks_on() { hexec 3 "$VMFSCTL" locks --json | jpy locks "$LS" "$RES"; }
only_holder() {
	local l
	l=$(locks_on)
	[[ $(wc -l <<<"$l") == 1 && $l == "granted host$1 "* ]]
}
assert_holder() {
	wait_for 20 "$2: the disk lock held by host$1 alone" only_holder "$1" ||
		die "$2: disk lock $LS/$RES: $(locks_on | tr '\n' ';')"
}
prepare() {
	hexec "$1" "$MIG" prepare --vm "$VM" "$DISKF" >"$T/prep-$2.out" 2>&1 &
	PREP_PID=$!
	wait_for 30 "prepare on host$1 ($2)" grep -q "^prepared $VM" "$T/prep-$2.out" ||
		{ cat "$T/prep-$2.out" >&2; die "vmfs-migrate prepare on host$1 failed"; }
}
incoming() {
	local i=$1 tag=$2
	shift 2
	vmm "$i" "$tag" "$@" -- --incoming "$("$VC" addr "$i"):0"
	PORT=$(st "$tag" incoming_port)
	[[ -n $PORT && $PORT != 0 ]] || die "no incoming port on $tag"
}
stop_vmm() {
	ctl "$1" stop >/dev/null 2>&1 || true
	wait_for 20 "$1 to exit" vmm_dead "$1"
	rm -f "$T/$1.sock" "$T/$1.pid"
}

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
hexec 1 "$MKFS" --label gb "$DISK" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; die "vmfs-mkfs failed"; }
for i in 1 2; do
	hexec "$i" mkdir -p "$MNT"
	hexec "$i" "$MOUNT" -o cluster "$DISK" "$MNT" || die "host$i: vmfs-mount -o cluster failed"
done
hexec 1 truncate -s 16M "$DISKF" || die "cannot create $DISKF on host1"
IFS=/ read -r LS RES <<<"$(hexec 1 python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.vmfs.id").decode())' "$DISKF")"
[[ -n $LS && $RES == i* ]] || die "bad trusted.vmfs.id on $DISKF: $LS/$RES"
info "disk $DISKF: open lock $LS/$RES"
# The --handoff-exec hook of step 5: vmfs-migrate itself, not its libtool
# wrapper.
mig=$MIG libs=
if LD_LIBRARY_PATH=$B/dlm/.libs "$B/migrate-helper/.libs/vmfs-migrate" --version >/dev/null 2>&1; then
	mig=$B/migrate-helper/.libs/vmfs-migrate libs=$B/dlm/.libs
fi
cat >"$T/hook" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$libs exec "$mig" "\$@" >>"$T/hook.log" 2>&1
EOF
chmod +x "$T/hook"

vmm 1 vm-0 --
wait_for 30 "guest ticks" grep -q 'vmfs-guest: tick' "$T/vm-0.serial"
assert_holder 1 "guest started"

# ------------------------------------------------------------------ 1. killed

info "[${SECONDS}s] 1. the destination dies after the handoff, before its ack"
prepare 2 f-kill
incoming 2 f-kill VMFS_VMM_TEST_FAULT=dest-resume-kill
ctl vm-0 migrate "$("$VC" addr 2):$PORT" | grep -q '"ok":true' || die "migrate refused at once"
wait_for 60 "the migration to fail" mig_is vm-0 failed || die "status: $(ctl vm-0 status)"
wait_for 10 "the destination to die" vmm_dead f-kill
grep -q 'dest-resume-kill' "$T/f-kill.log" || die "the destination did not reach the fault (the handoff did not happen?)"
# (the prepare may see its claim granted, or gone again: given back)
wait "$PREP_PID" || true
grep -q "give-back $LS/$RES: host2 -> host1" "$T/vm-0.log" || die "the source did not log the give-back"
after_fault "destination killed"
rm -f "$T/f-kill.pid"

# ------------------------------------------------------------------ 2. stalled

info "[${SECONDS}s] 2. the destination stalls after the handoff, never acknowledges"
prepare 2 f-stall
incoming 2 f-stall VMFS_VMM_TEST_FAULT=dest-resume-stall
ctl vm-0 migrate "$("$VC" addr 2):$PORT" io-timeout-ms=3000 | grep -q '"ok":true' || die "migrate refused at once"
wait_for 60 "the migration to fail (the ack times out)" mig_is vm-0 failed || die "status: $(ctl vm-0 status)"
grep -q 'dest-resume-stall' "$T/f-stall.log" || die "the destination did not reach the stall"
vmm_dead f-stall && die "the stalled destination died by itself"
wait "$PREP_PID" || true
[[ $(grep -c "give-back $LS/$RES: host2 -> host1" "$T/vm-0.log") == 2 ]] ||
	die "the source did not log the second give-back"
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
[[ $(locks_on | grep -c "^waiting host1 return:$VM\$") == 1 ]] || die "no return claim in the lock table: $(locks_on | tr '\n' ';')"
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
ctl vm-0 migrate "$("$VC" addr 2):$PORT" | grep -q '"ok":true' || die "migrate refused"
wait_for 60 "source postmigrate" state_is vm-0 postmigrate ||
	die "the migration did not complete: $(st vm-0 migration.error); $(st vm-0 handoff.result)"
wait_for 20 "destination running" state_is vm-1 running
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
