#!/bin/bash
# vmfs-vmm --handoff: the disk-lock handoff of a live migration done inside
# the hypervisor (libvmfs-handoff; the lookup before the pause, ONE
# TRANSFER_SET in it) instead of by a program (--handoff-exec), on a 3-host
# cluster whose vmfs volume is mounted -o cluster on host1 and host2, the
# VM's disk a file on it:
#   1. refused: the destination's prepare was withdrawn before the
#      switchover, so nothing is prepared - the migration fails
#      naming the switchover hook, status.handoff says why, the VM runs on
#      in host1 and keeps its disk lock; the destination discards and exits;
#   2. the handoff: `vmfs-migrate prepare PATH` on host2, migrate: the disk's
#      open lock (volume UUID / i<ino>) is granted to host2 alone, the
#      prepare exits 0, the guest runs on host2, status.handoff shows the
#      in-process hook used the lookup made before the pause;
#   3. more hops back and forth, then as many with --handoff-exec
#      (vmfs-migrate handoff NAME): the time in the hook (status
#      handoff.hook_us, microseconds) and the engine's downtime figures,
#      p50 and max of each; finally the guest's disk records are continuous.
# Knobs: VMFS_VMM_HANDOFF_HOPS (hops per mode in step 3, default 3).
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
HOPS=${VMFS_VMM_HANDOFF_HOPS:-3}
[[ $HOPS =~ ^[1-9][0-9]*$ ]] || die "VMFS_VMM_HANDOFF_HOPS must be a positive number"
if [[ ! -e /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
	echo "SKIP: $TEST_NAME: needs /dev/fuse and fusermount3" >&2
	exit 77
fi
for f in "$VMM" "$MIG" "$MKFS" "$MOUNT" "$DISKCHECK" "$GUESTS/guest.bin" "$GUESTS/guest-native.so"; do
	[[ -e $f ]] || die "not built: $f"
done

VM=vm1
MAC=52:54:00:5e:00:02
MNT=/run/vmfs/vol		# in each host's own /run
DISKF=$MNT/$VM.img
VMOPTS="--ram 16 --cpus 1 --dirty-rate 2048 --work-mib 8 --verify-ram"
printf 'vmfs-vmm-handoff-key-%s\n' "$RANDOM$RANDOM" >"$T/key"

_hi_cleanup() {
	local rc=$? f i
	trap - EXIT
	set +e
	for f in "$T"/*.sock; do
		[[ -S $f ]] && timeout 5 "$VMM" --client "$f" stop >/dev/null 2>&1
	done
	if [[ ${_CLUSTER_STARTED:-0} == 1 ]]; then
		for i in 1 2; do
			timeout 30 "$VC" exec "$i" sh -c "mountpoint -q $MNT && fusermount3 -u $MNT" \
				>/dev/null 2>&1 || true
		done
	fi
	if ((rc != 0)); then
		for f in "$T"/*.log "$T"/*.out; do
			[[ -f $f ]] && { echo "---- $f (tail)"; tail -n 15 "$f"; } >&2
		done
	fi
	(exit "$rc")
	_cluster_cleanup
}
trap _hi_cleanup EXIT

# The --handoff-exec hook of step 3: vmfs-migrate itself, not its libtool
# wrapper (a shell script would add its own start to the pause).
mig=$MIG libs=
if LD_LIBRARY_PATH=$B/dlm/.libs "$B/migrate-helper/.libs/vmfs-migrate" --version >/dev/null 2>&1; then
	mig=$B/migrate-helper/.libs/vmfs-migrate libs=$B/dlm/.libs
fi

cat >"$T/j.py" <<'EOF'
import json, sys
cmd = sys.argv[1]
if cmd == "locks":	# "queue host" of every lock on LS/RES
    d = json.load(sys.stdin)
    for ls in d.get("lockspaces", []):
        if ls.get("name") != sys.argv[2]:
            continue
        for r in ls.get("resources", []):
            if r.get("name") == sys.argv[3]:
                for l in r.get("locks", []):
                    print(l.get("queue"), l.get("host"))
elif cmd == "field":	# FIELD or A.B.C
    d = json.load(sys.stdin)
    for k in sys.argv[2].split("."):
        d = (d or {}).get(k)
    print("" if d is None else d)
elif cmd == "stats":	# p50 and max of the numbers on stdin
    v = sorted(float(x) for x in sys.stdin.read().split())
    print("n=%d p50=%g max=%g" % (len(v), v[(len(v) - 1) // 2], v[-1]) if v else "n=0")
EOF
jpy() { python3 "$T/j.py" "$@"; }

# vmm I TAG MODE ARGS...: vmfs-vmm on host I, MODE inproc or exec
vmm() {
	local i=$1 tag=$2 mode=$3 n=0 hook
	shift 3
	if [[ $mode == inproc ]]; then hook=(--handoff); else hook=(--handoff-exec "$T/hook"); fi
	rm -f "$T/$tag.sock" "$T/$tag.pid"
	# shellcheck disable=SC2086,SC2016 # VMOPTS: words; $$ and $@: the inner sh's
	hexec "$i" sh -c 'echo $$ >"$0"; exec "$@"' "$T/$tag.pid" "$VMM" --accel thread \
		--image "$GUESTS/guest.bin" --native-guest "$GUESTS/guest-native.so" $VMOPTS \
		--disk "$DISKF" --name "$VM" --mac "$MAC" --psk-file "$T/key" "${hook[@]}" \
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
	[[ $(wc -l <<<"$l") == 1 && $l == "granted host$1" ]]
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
	vmm "$1" "$2" "$3" --incoming "$("$VC" addr "$1"):0"
	PORT=$(st "$2" incoming_port)
	[[ -n $PORT && $PORT != 0 ]] || die "no incoming port on $2"
}
stop_vmm() {
	ctl "$1" stop >/dev/null 2>&1 || true
	wait_for 20 "$1 to exit" vmm_dead "$1"
	rm -f "$T/$1.sock"
}

# hop N S D MODE: migrate the VM (tag vm-(N-1) on host S) to host D, whose
# vmfs-vmm gets the hook of MODE for the next hop.  Records the figures.
hop() {
	local n=$1 s=$2 d=$3 mode=$4 src=vm-$(($1 - 1)) dst=vm-$1 rc=0 h1 h2 hook
	prepare "$d" "$dst"
	incoming "$d" "$dst" "$mode"
	ctl "$src" migrate "$("$VC" addr "$d"):$PORT" | grep -q '"ok":true' || die "hop $n: migrate refused"
	wait_for 60 "hop $n: source postmigrate" state_is "$src" postmigrate ||
		die "hop $n ($s -> $d) did not complete: $(st "$src" migration.error); $(st "$src" handoff.result)"
	wait_for 20 "hop $n: destination running" state_is "$dst" running
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
hexec 1 "$MKFS" --label hi "$DISK" >"$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out" >&2; die "vmfs-mkfs failed"; }
for i in 1 2; do
	hexec "$i" mkdir -p "$MNT"
	hexec "$i" "$MOUNT" -o cluster "$DISK" "$MNT" || die "host$i: vmfs-mount -o cluster failed"
done
hexec 1 truncate -s 16M "$DISKF" || die "cannot create $DISKF on host1"
IFS=/ read -r LS RES <<<"$(hexec 1 python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.vmfs.id").decode())' "$DISKF")"
[[ -n $LS && $RES == i* ]] || die "bad trusted.vmfs.id on $DISKF: $LS/$RES"
info "disk $DISKF: open lock $LS/$RES"
cat >"$T/hook" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$libs exec "$mig" "\$@" >>"$T/hook.log" 2>&1
EOF
chmod +x "$T/hook"

vmm 1 vm-0 inproc
wait_for 30 "guest ticks" grep -q 'vmfs-guest: tick' "$T/vm-0.serial"
assert_holder 1 "guest started"
[[ $(st vm-0 handoff) == "" ]] || die "status shows a handoff before any migration: $(st vm-0 handoff)"

# ------------------------------------------------------------------ 1. refused

info "1. nothing prepared on host2: the in-process handoff refuses, the VM stays on host1"
# As an operator would: prepare, start the destination, then the prepare is
# withdrawn (vmfs-migrate abort) before the switchover.
prepare 2 f-noprep
incoming 2 f-noprep inproc
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
info "refused: $res ($(st vm-0 handoff.hook_us) us in the pause)"
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
