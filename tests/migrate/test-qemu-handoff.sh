#!/bin/bash
# `vmfs-migrate qemu` on a 3-host cluster: a QEMU guest (the test guest as a
# multiboot kernel, TCG) runs on host1 holding a disk lock; with the lock
# prepared on host2, it live-migrates to host2 over TCP between the hosts,
# the lock moving at QEMU's pre-switchover pause (guest running on host2,
# postmigrate on host1, lock granted to host2 with a new epoch).  Then three
# failures before the switchover leave a second guest running on host1 with
# its lock and nothing queued: nothing prepared (refused before starting),
# the prepare aborted during the migration (handoff refused at the pause,
# migrate_cancel resumes the paused guest), the destination QEMU killed
# during the migration.  Finally that guest still migrates.
set -euo pipefail
QEMU=$(command -v qemu-system-x86_64 || command -v qemu-system-i386) || {
	echo "SKIP: test-qemu-handoff: QEMU (qemu-system-x86) is not installed" >&2; exit 77; }
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
B=${VMFS_BUILDDIR:-$VMFS_SRCDIR}
MIG=${VMFS_MIGRATE:-$B/migrate-helper/vmfs-migrate}
GUEST=$B/migrate-helper/guests/guest.elf
[[ -x $MIG ]] || die "vmfs-migrate is not built ($MIG)"
[[ -f $GUEST ]] || die "the test guest is not built ($GUEST)"
cluster_up 3
CTL=$VMFSCTL
LS=vmd
H2=$(hexec 2 ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')
[[ -n $H2 ]] || die "no address on host2"

# 8 MiB of random guest RAM: with --max-bandwidth 1M the migration takes
# seconds, time enough to inject a failure before the switchover.
head -c 8M /dev/urandom >"$T/blob"

# guest I NAME [QEMU ARGS...]: start QEMU on host I, QMP on $T/NAME.qmp
guest() {
	local i=$1 name=$2
	shift 2
	hexec "$i" "$QEMU" -machine pc,accel=tcg -m 32 -display none -no-reboot -monitor none \
		-name "$name" -kernel "$GUEST" -serial "file:$T/$name.serial" \
		-device "loader,file=$T/blob,addr=0x1000000" \
		-qmp "unix:$T/$name.qmp,server=on,wait=off" -pidfile "$T/$name.pid" "$@" \
		>"$T/$name.log" 2>&1 &
	wait_for 30 "QEMU $name's QMP socket" test -S "$T/$name.qmp"
}

# qstatus NAME: the guest's run state (query-status), or "gone"
qstatus() {
	python3 - "$T/$1.qmp" <<'EOF' 2>/dev/null || echo gone
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for c in ("qmp_capabilities", "query-status"):
    f.write(json.dumps({"execute": c}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
print(r["return"]["status"])
EOF
}
status_is() { [[ $(qstatus "$1") == "$2" ]]; }

# "queue host epoch" of the locks of lockspace vmd on resource $2, as host $1 sees them
locks_of() {
	hexec "$1" "$CTL" locks --json --lockspace "$LS" | python3 -c '
import json,sys
d=json.load(sys.stdin)
for ls in d["lockspaces"]:
    for r in ls["resources"]:
        if r["name"]==sys.argv[1]:
            for l in r["locks"]:
                print(l["queue"], l["host"], l["epoch"], l["tag"])' "$2"
}

# hold LS/$1 on host1 tagged $2 until $T/stop
hold() {
	hexec 1 "$CTL" lock --lockspace "$LS" --tag "$2" "$1" -- \
		sh -c "while [ ! -e '$T/stop' ]; do sleep 0.2; done" 2>"$T/holder-$1.err" &
	wait_for 20 "host1 to hold $1" sh -c "'$VC' exec 3 '$CTL' locks --lockspace $LS $1 | grep -q granted"
}

# prepare NAME RES: vmfs-migrate prepare on host2, in the background ($prep)
prepare() {
	hexec 2 "$MIG" prepare --vm "$1" --lockspace "$LS" "$2" >"$T/prep-$1.out" 2>&1 &
	prep=$!
	wait_for 20 "prepare of $1" grep -q "^prepared $1" "$T/prep-$1.out" ||
		{ cat "$T/prep-$1.out"; die "prepare of $1 failed"; }
}

# migrate NAME SRC DST PORT [OPTIONS]: vmfs-migrate qemu on host2 (the
# destination, where the prepare runs), output in $T/mig-NAME-PORT.{out,err}
migrate() {
	local name=$1 src=$2 dst=$3 port=$4
	shift 4
	hexec 2 "$MIG" qemu "$name" --lockspace "$LS" --source-qmp "$T/$src.qmp" \
		--dest-qmp "$T/$dst.qmp" --uri "tcp:$H2:$port" "$@" \
		>"$T/mig-$name-$port.out" 2>"$T/mig-$name-$port.err"
}

echo "# [${SECONDS}s] 1. vm1 runs on host1 (QEMU, TCG) holding $LS/disk0"
guest 1 vm1
wait_for 60 "vm1 to boot" grep -q 'vmfs-guest: up' "$T/vm1.serial"
hold disk0 vm1
read -r _ h e0 _ <<<"$(locks_of 3 disk0)"
[[ $h == host1 ]] || die "disk0 not held by host1: $(locks_of 3 disk0)"

echo "# [${SECONDS}s] 2. destination QEMU on host2 (-incoming defer), prepare there, migrate"
guest 2 vm1-in -incoming defer
status_is vm1-in inmigrate || die "destination not in inmigrate: $(qstatus vm1-in)"
prepare vm1 disk0
prep1=$prep
migrate vm1 vm1 vm1-in 4444 --json --downtime-ms 100 ||
	{ cat "$T/mig-vm1-4444.err" "$T/mig-vm1-4444.out"; die "vmfs-migrate qemu vm1 failed"; }
cat "$T/mig-vm1-4444.err"
summary=$(cat "$T/mig-vm1-4444.out")
echo "$summary"
python3 -c '
import json,sys
s=json.loads(sys.argv[1])
assert s["result"]=="completed" and s["handed_over"], s
assert s["source_host"]=="host1" and s["dest_host"]=="host2", s
assert s["transferred"]>8*1024*1024 and s["downtime_ms"]>0 and s["total_ms"]>0, s
d=s["disks"]
assert len(d)==1 and d[0]["resource"]=="disk0" and d[0]["epoch"]>d[0]["from_epoch"], s' "$summary" ||
	die "unexpected summary: $summary"
grep -q 'pre-switchover' "$T/mig-vm1-4444.err" || die "no pre-switchover in the progress"
wait_for 10 "vm1 running on host2" status_is vm1-in running || die "host2: $(qstatus vm1-in)"
status_is vm1 postmigrate || die "host1's vm1 is $(qstatus vm1), not postmigrate"
for h in 1 2 3; do
	read -r q hh e _ <<<"$(locks_of $h disk0)"
	[[ $q == granted && $hh == host2 ]] || die "host$h: disk0 is not host2's: $(locks_of $h disk0)"
done
((e > e0)) || die "disk0's epoch did not advance: $e0 -> $e"
set +e
wait "$prep1"; rc=$?
set -e
[[ $rc == 0 ]] || die "prepare exited $rc: $(cat "$T/prep-vm1.out")"
wait_for 10 "host1's holder told LOST(TRANSFERRED)" grep -q 'lost: transferred' "$T/holder-disk0.err"

echo "# [${SECONDS}s] 3. vm2 on host1 holding $LS/disk1; nothing prepared: refused before starting"
guest 1 vm2
wait_for 60 "vm2 to boot" grep -q 'vmfs-guest: up' "$T/vm2.serial"
hold disk1 vm2
before=$(locks_of 3 disk1)
read -r _ _ e1 _ <<<"$before"
# check_vm2_home WHAT: vm2 runs on host1 with disk1 and its epoch, nothing queued
check_vm2_home() {
	wait_for 10 "vm2 running on host1 ($1)" status_is vm2 running || die "$1: vm2 is $(qstatus vm2) on host1"
	[[ $(locks_of 3 disk1) == "$before" ]] || die "$1: disk1 changed: $(locks_of 3 disk1), was $before"
}
guest 2 vm2-in -incoming defer
set +e
migrate vm2 vm2 vm2-in 4445; rc=$?
set -e
[[ $rc == 1 ]] || die "migration without prepare: exit $rc ($(cat "$T/mig-vm2-4445.err"))"
grep -q 'no prepared request' "$T/mig-vm2-4445.err" || die "refusal: $(cat "$T/mig-vm2-4445.err")"
check_vm2_home "nothing prepared"
status_is vm2-in inmigrate || die "the destination was touched: $(qstatus vm2-in)"

echo "# [${SECONDS}s] 4. prepare aborted during the migration: handoff refused at the pause, migration cancelled"
prepare vm2 disk1
prep2=$prep
migrate vm2 vm2 vm2-in 4446 --max-bandwidth 1M --progress 0.5 &
mig=$!
wait_for 30 "the migration of vm2 to be active" grep -q 'vm2: active' "$T/mig-vm2-4446.out"
hexec 2 "$MIG" abort vm2 --lockspace "$LS" >"$T/abort.out" 2>&1 || die "abort: $(cat "$T/abort.out")"
set +e
wait "$prep2"; rc=$?
[[ $rc == 3 ]] || die "aborted prepare exited $rc"
wait "$mig"; rc=$?
set -e
cat "$T/mig-vm2-4446.err"
[[ $rc == 1 ]] || die "migration after abort: exit $rc ($(cat "$T/mig-vm2-4446.out"))"
grep -q 'pre-switchover' "$T/mig-vm2-4446.out" || die "did not reach the pause: $(cat "$T/mig-vm2-4446.out")"
grep -q 'handoff of vm2 refused' "$T/mig-vm2-4446.err" || die "no refusal: $(cat "$T/mig-vm2-4446.err")"
grep -q 'migration of vm2 cancelled: the source guest is running' "$T/mig-vm2-4446.out" ||
	die "cancel: $(cat "$T/mig-vm2-4446.out")"
check_vm2_home "refused at the pause"
# the destination QEMU quits when its incoming migration fails
wait_for 20 "the destination QEMU to exit" sh -c "! kill -0 \$(cat '$T/vm2-in.pid') 2>/dev/null"

echo "# [${SECONDS}s] 5. the destination QEMU killed during the migration"
rm -f "$T/vm2-in.qmp"
guest 2 vm2-in -incoming defer
prepare vm2 disk1
prep3=$prep
migrate vm2 vm2 vm2-in 4447 --max-bandwidth 1M --progress 0.5 &
mig=$!
wait_for 30 "the migration of vm2 to be active" grep -q 'vm2: active' "$T/mig-vm2-4447.out"
kill -KILL "$(cat "$T/vm2-in.pid")"
set +e
wait "$mig"; rc=$?
set -e
cat "$T/mig-vm2-4447.err"
[[ $rc == 1 ]] || die "migration to a killed destination: exit $rc ($(cat "$T/mig-vm2-4447.out"))"
grep -Eq 'destination QEMU went away|migration failed' "$T/mig-vm2-4447.err" ||
	die "error: $(cat "$T/mig-vm2-4447.err")"
grep -q 'nothing of vm2 stays prepared' "$T/mig-vm2-4447.out" || die "abort: $(cat "$T/mig-vm2-4447.out")"
set +e
wait "$prep3"; rc=$?
set -e
[[ $rc == 3 ]] || die "prepare exited $rc after the failed migration (expected 3: aborted)"
check_vm2_home "destination killed"

echo "# [${SECONDS}s] 6. after those failures vm2 still migrates"
rm -f "$T/vm2-in.qmp"
guest 2 vm2-in -incoming defer
prepare vm2 disk1
migrate vm2 vm2 vm2-in 4448 --max-bandwidth 1G || { cat "$T/mig-vm2-4448.err"; die "final migration of vm2 failed"; }
cat "$T/mig-vm2-4448.out"
wait_for 10 "vm2 running on host2" status_is vm2-in running
read -r q hh _ _ <<<"$(locks_of 3 disk1)"
[[ $q == granted && $hh == host2 ]] || die "disk1 is not host2's: $(locks_of 3 disk1)"

touch "$T/stop"
echo "PASS"
