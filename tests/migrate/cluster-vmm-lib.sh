# cluster-vmm-lib.sh — what the vmfs-vmm tests on a 3-host cluster share
# (sourced after tests/cluster/lib.sh): a vmfs volume mounted -o cluster on
# host1 and host2 with the VM's disk file on it, vmfs-vmm processes started
# inside the hosts and driven through their control sockets, and the disk's
# open lock as vmfsctl on host3 shows it.
#
# The test sets VM, MAC and VMOPTS (vmfs-vmm options: RAM, dirty rate...)
# and may set HOOK (the switchover hook options, default --handoff) and
# VMM_EXTRA (more options for every vmfs-vmm), then calls
# `vn_volume LABEL SIZE` after cluster_up.  Every process it starts runs
# inside a host, so `down` kills what the cleanup missed.

B=${VMFS_BUILDDIR:-$VMFS_SRCDIR}
VMM=$B/migrate-helper/vmfs-vmm
MIG=$B/migrate-helper/vmfs-migrate
GUESTS=$B/migrate-helper/guests
DISKCHECK=$B/tests/migrate/disk-check
MKFS=$B/fs/vmfs-mkfs
MOUNT=$B/fs/vmfs-mount
MNT=/run/vmfs/vol		# in each host's own /run
HOOK=(--handoff)
VMM_EXTRA=()
if [[ ! -e /dev/fuse ]] || ! command -v fusermount3 >/dev/null; then
	echo "SKIP: $TEST_NAME: needs /dev/fuse and fusermount3" >&2
	exit 77
fi
for f in "$VMM" "$MIG" "$MKFS" "$MOUNT" "$DISKCHECK" "$GUESTS/guest.bin" "$GUESTS/guest-native.so"; do
	[[ -e $f ]] || die "not built: $f"
done
printf 'vmfs-vmm-cluster-key-%s\n' "$RANDOM$RANDOM" >"$T/key"

# The exit trap: stop the hypervisors (politely, then by pid), unmount
# cleanly (a clean unmount frees the host slot), show the logs of a failed
# run, then the cluster's own cleanup.
_vn_cleanup() {
	local rc=$? f i
	trap - EXIT
	set +e	# a failing step of the cleanup must not skip the rest
	for f in "$T"/*.sock; do
		[[ -S $f ]] && timeout 5 "$VMM" --client "$f" stop >/dev/null 2>&1
	done
	for f in "$T"/*.pid; do
		[[ -s $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null
	done
	if [[ ${_CLUSTER_STARTED:-0} == 1 ]]; then
		for i in 1 2 3; do
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
trap _vn_cleanup EXIT

# The --handoff-exec hook: vmfs-migrate, its output and a line per call
# (time, host, arguments) in $T/hook.log.
cat >"$T/hook" <<EOF
#!/bin/sh
echo "== \$(date +%T.%N) \$(hostname): \$*" >>"$T/hook.log"
exec "$MIG" "\$@" >>"$T/hook.log" 2>&1
EOF
chmod +x "$T/hook"

# JSON helpers (one python3 per call).
cat >"$T/j.py" <<'EOF'
import json, sys
cmd = sys.argv[1]
if cmd == "locks":	# "queue host tag epoch" of every lock on LS/RES
    d = json.load(sys.stdin)
    for ls in d.get("lockspaces", []):
        if ls.get("name") != sys.argv[2]:
            continue
        for r in ls.get("resources", []):
            if r.get("name") == sys.argv[3]:
                for l in r.get("locks", []):
                    print(l.get("queue"), l.get("host"), l.get("tag") or "-", l.get("epoch"))
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

# vn_volume LABEL SIZE: vmfs-mkfs, the mounts on host1 and host2, the VM's
# disk file DISKF of SIZE (created on host1, seen on host2), and its open
# lock: LS (the volume's UUID) and RES (i<ino>).
vn_volume() {
	DISKF=$MNT/$VM.img	# the same path on every host, each through its mount
	hexec 1 "$MKFS" --label "$1" "$DISK" >"$T/mkfs.out" 2>&1 ||
		{ cat "$T/mkfs.out" >&2; die "vmfs-mkfs failed"; }
	for i in 1 2; do
		hexec "$i" mkdir -p "$MNT"
		hexec "$i" "$MOUNT" -o cluster "$DISK" "$MNT" || die "host$i: vmfs-mount -o cluster failed"
	done
	hexec 1 truncate -s "$2" "$DISKF" || die "cannot create $DISKF on host1"
	hexec 2 test -f "$DISKF" || die "host2 does not see $DISKF"
	IFS=/ read -r LS RES <<<"$(lock_id 1)"
	[[ -n $LS && $RES == i* ]] || die "bad trusted.vmfs.id on $DISKF: $LS/$RES"
	[[ $(lock_id 2) == "$LS/$RES" ]] || die "trusted.vmfs.id differs between host1 and host2"
	info "disk $DISKF: open lock $LS/$RES"
}
# lock_id I: the disk's open lock "LS/RES" as host I's mount names it
lock_id() {
	hexec "$1" python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.vmfs.id").decode())' \
		"$DISKF"
}

# vmm I TAG [VAR=VALUE...] [ARGS...]: vmfs-vmm on host I (with those
# variables in its environment), files $T/TAG.{sock,serial,log,out,pid};
# returns once its control socket is there.
vmm() {
	local i=$1 tag=$2 n=0 envs=()
	shift 2
	while [[ ${1:-} =~ ^[A-Z_][A-Z0-9_]*= ]]; do envs+=("$1"); shift; done
	rm -f "$T/$tag.sock" "$T/$tag.pid"
	# shellcheck disable=SC2086,SC2016 # VMOPTS: words; $$ and $@: the inner sh's
	hexec "$i" env "${envs[@]}" sh -c 'echo $$ >"$0"; exec "$@"' "$T/$tag.pid" "$VMM" \
		--accel thread --image "$GUESTS/guest.bin" --native-guest "$GUESTS/guest-native.so" \
		$VMOPTS --disk "$DISKF" --name "$VM" --mac "$MAC" --psk-file "$T/key" "${HOOK[@]}" \
		"${VMM_EXTRA[@]}" --ctrl "$T/$tag.sock" --serial "$T/$tag.serial" \
		--log-file "$T/$tag.log" "$@" >"$T/$tag.out" 2>&1 &
	until [[ -S $T/$tag.sock ]]; do
		if [[ -s $T/$tag.pid ]] && ! kill -0 "$(cat "$T/$tag.pid")" 2>/dev/null; then
			cat "$T/$tag.out" >&2
			die "vmfs-vmm $tag on host$i exited at start (above)"
		fi
		((++n < 300)) || die "timed out waiting for the control socket of $tag (host$i)"
		sleep 0.1
	done
}
# incoming I TAG [VAR=VALUE...] [ARGS...]: a destination vmfs-vmm on host I,
# listening on its address on INCOMING_NET (cluster, default, or mig);
# sets PORT
incoming() {
	local i=$1 tag=$2
	shift 2
	vmm "$i" "$tag" "$@" --incoming "$("$VC" addr "$i" "${INCOMING_NET:-cluster}"):0"
	PORT=$(st "$tag" incoming_port)
	[[ -n $PORT && $PORT != 0 ]] || die "no incoming port on $tag"
}
ctl() { "$VMM" --client "$T/$1.sock" "${@:2}"; }
st() { ctl "$1" status 2>/dev/null | jpy field "$2"; }
state_is() { [[ $(st "$1" state) == "$2" ]]; }
mig_is() { [[ $(st "$1" migration.status) == "$2" ]]; }
# gone, or a zombie (exited; the reaper may be slow, tests/cluster/README.md)
vmm_dead() { [[ $(ps -o stat= -p "$(cat "$T/$1.pid")" 2>/dev/null) != [^Z]* ]]; }
# stop_vmm TAG: stop a vmfs-vmm and wait until it is gone
stop_vmm() {
	ctl "$1" stop >/dev/null 2>&1 || true
	wait_for 20 "$1 to exit" vmm_dead "$1"
	rm -f "$T/$1.sock" "$T/$1.pid"
}
ticks() { grep -c 'vmfs-guest: tick' "$T/$1.serial" 2>/dev/null || true; }
more_ticks() { (($(ticks "$1") > $2)); }

# locks_on: "queue host tag epoch" lines of the disk's lock (host3's view)
locks_on() { hexec 3 "$VMFSCTL" locks --json | jpy locks "$LS" "$RES"; }
# only_holder I: host I alone holds the disk's lock, granted; nothing waits.
only_holder() {
	local l
	l=$(locks_on)
	[[ $(wc -l <<<"$l") == 1 && $l == "granted host$1 "* ]]
}
assert_holder() {
	wait_for 20 "$2: the disk lock held by host$1 alone" only_holder "$1" ||
		die "$2: disk lock $LS/$RES: $(locks_on | tr '\n' ';')"
}

# prepare D TAG: vmfs-migrate prepare on host D, in the background (PREP_PID)
prepare() {
	hexec "$1" "$MIG" prepare --vm "$VM" "$DISKF" >"$T/prep-$2.out" 2>&1 &
	PREP_PID=$!
	wait_for 30 "prepare on host$1 ($2)" grep -q "^prepared $VM" "$T/prep-$2.out" ||
		{ cat "$T/prep-$2.out" >&2; die "vmfs-migrate prepare on host$1 failed"; }
}
# migrate_done WHAT SRC DST D: migrate vmfs-vmm SRC's guest to DST, the
# incoming vmfs-vmm on host D (at PORT); returns once SRC is postmigrate
# and DST runs, or dies naming WHAT.
migrate_done() {
	local what=$1 src=$2 dst=$3 d=$4
	ctl "$src" migrate "$("$VC" addr "$d"):$PORT" | grep -q '"ok":true' || die "$what: migrate refused"
	wait_for 60 "$what: source postmigrate" state_is "$src" postmigrate ||
		die "$what did not complete: $(st "$src" migration.error); $(st "$src" handoff.result)"
	wait_for 20 "$what: destination running" state_is "$dst" running ||
		die "$what: the destination does not run: $(st "$dst" state)"
}
# abort_prepare D TAG: vmfs-migrate abort on host D; the prepare exits 3
abort_prepare() {
	local rc=0
	hexec "$1" "$MIG" abort "$VM" >>"$T/prep-$2.out" 2>&1 ||
		{ cat "$T/prep-$2.out" >&2; die "vmfs-migrate abort on host$1 failed"; }
	wait "$PREP_PID" || rc=$?
	[[ $rc == 3 ]] || { cat "$T/prep-$2.out" >&2; die "prepare ($2) exited $rc after the abort, not 3"; }
}
