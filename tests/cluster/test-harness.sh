#!/bin/bash
# The harness itself: up, exec, isolate/rejoin, shape, kill, start-daemons,
# a second up, down — and nothing of the cluster left afterwards.
. "$(dirname "$0")/lib.sh"
skip_unless_root_and_tools

if ! dlmd_built; then
	info "vmfs-dlmd is not built: running with VMFS_CLUSTER_NO_DLM=1 (corosync only)"
	export VMFS_CLUSTER_NO_DLM=1
fi
with_dlm() { [[ ${VMFS_CLUSTER_NO_DLM:-0} != 1 ]]; }

# dlm_sees I NODES QUORATE(true|false): vmfs-dlmd on host I reports that.
dlm_sees() {
	local out
	out=$(hexec "$1" "$VMFSCTL" status --json 2>/dev/null) || return 1
	python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(not (len(s.get("members") or []) == int(sys.argv[1]) and
              s.get("quorate") is (sys.argv[2] == "true")))' "$2" "$3" <<<"$out"
}

cluster_up 3 --disk-size 1G

# The shared disk: a sparse file of the asked size, visible from every host.
[[ -f $DISK ]] || die "up did not print the disk path (got '$DISK')"
[[ $(stat -c %s "$DISK") == $((1 << 30)) ]] || die "disk $DISK is not 1 GiB"
(($(stat -c %b "$DISK") == 0)) || die "disk $DISK is not sparse"
hexec 3 test -f "$DISK" || die "host3 cannot see the disk $DISK"

for i in 1 2 3; do
	host_sees "$i" 3 || die "host$i: corosync not quorate with 3 nodes ($(host_quorum "$i"))"
	if with_dlm; then
		dlm_sees "$i" 3 true || die "host$i: vmfs-dlmd does not report 3 members, quorate"
	fi
	[[ $(hexec "$i" hostname) == "host$i" ]] || die "host$i: hostname is $(hexec "$i" hostname)"
	hexec "$i" ip -br addr show dev eth0 | grep -q "\.$i/24" || die "host$i: no address .$i on eth0"
done

# exec passes stdin, stdout and the exit status through.
[[ $(echo ping | hexec 2 cat) == ping ]] || die "exec does not pass stdin/stdout"
rc=0
hexec 2 sh -c 'exit 42' || rc=$?
((rc == 42)) || die "exec returned $rc, not the command's 42"
# Hosts have their own /run (corosync's pid file).
[[ $(hexec 1 cat /run/corosync.pid) != $(hexec 2 cat /run/corosync.pid) ]] ||
	die "host1 and host2 share /run"

# isolate 3: host3 loses quorum; host1 and host2 stay quorate with 2 members.
"$VC" isolate 3
wait_for 30 "host3 to lose quorum" host_sees 3 1 No
wait_for 30 "host1 to see 2 members, quorate" host_sees 1 2 Yes
if with_dlm; then
	wait_for 30 "vmfs-dlmd on host1: 2 members, quorate" dlm_sees 1 2 true
	wait_for 30 "vmfs-dlmd on host3: not quorate" dlm_sees 3 1 false
fi

"$VC" rejoin 3
for i in 1 2 3; do
	wait_for 30 "host$i to see 3 members again" host_sees "$i" 3 Yes
done
"$VC" wait

# shape: a tbf qdisc on both ends of host1's link, and off again.
"$VC" shape 1 100mbit
hexec 1 tc qdisc show dev eth0 | grep -q 'tbf.*rate 100Mbit' || die "shape: no tbf on host1's eth0"
"$VC" shape 1 off
if hexec 1 tc qdisc show dev eth0 | grep -q tbf; then
	die "shape off: tbf still on host1's eth0"
fi

# kill 2: every process of host2 dies, a process started by exec included.
hexec 2 setsid -f sleep 600 </dev/null >/dev/null 2>&1
[[ -n $(ip netns pids "$VMFS_CLUSTER_ID-h2") ]] || die "host2 has no processes before kill"
"$VC" kill 2
pids=$(ip netns pids "$VMFS_CLUSTER_ID-h2")
[[ -z $pids ]] || die "host2 still has processes after kill: $pids"
wait_for 30 "host1 to see 2 members after host2 died" host_sees 1 2 Yes

# start-daemons 2: host2 rejoins after its crash.
"$VC" start-daemons 2
wait_for 30 "host2 back as a member" host_sees 2 3 Yes
"$VC" wait

# up while up: a clear error, exit 1, and the running cluster is untouched.
rc=0
err=$("$VC" up 3 2>&1 >/dev/null) || rc=$?
((rc == 1)) || die "second up exited $rc, not 1"
grep -q 'already up' <<<"$err" || die "second up: unclear error: $err"
host_sees 1 3 Yes || die "second up disturbed the running cluster"

"$VC" status >/dev/null || die "status failed"
logs=$("$VC" logs 1)
grep -q '^==== host1: corosync.log' <<<"$logs" || die "logs has no corosync.log of host1"

# down leaves nothing behind, and is idempotent.
"$VC" down
"$VC" down || die "a second down failed"
leaks=$(leaks_of "$VMFS_CLUSTER_ID")
[[ -z $leaks ]] || die "down left: $leaks"
echo "PASS: $TEST_NAME"
