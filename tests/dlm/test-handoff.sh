#!/bin/bash
# The disk-lock handoff of a live migration on a 3-host cluster
# (vmfs-migrate(8), TRANSFER_SET): host1 runs "vm1" holding two disk locks;
# a handoff without a complete prepare is refused and changes nothing; an
# abort leaves ownership with host1; after host1 re-acquired a disk, a
# transfer set with a stale epoch, and a handoff conditional on the VM's old
# epoch, move nothing; the real handoff moves both locks to host2 in one step,
# with new epochs, and host1's holders are told LOST(TRANSFERRED).
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
MIG=${VMFS_MIGRATE:-${VMFS_BUILDDIR:-$VMFS_SRCDIR}/migrate-helper/vmfs-migrate}
[[ -x $MIG ]] || { echo "SKIP: $TEST_NAME: vmfs-migrate is not built ($MIG)" >&2; exit 77; }
cluster_up 3
CTL=$VMFSCTL
LS=vmd

# "res queue host epoch lkid orphan" per lock tagged vm1 in lockspace vmd,
# as host $1 sees the table.
table() {
	hexec "$1" "$CTL" locks --json --lockspace "$LS" | python3 -c '
import json,sys
d=json.load(sys.stdin)
for ls in d["lockspaces"]:
    for r in ls["resources"]:
        for l in r["locks"]:
            if l["tag"]=="vm1":
                print(r["name"], l["queue"], l["host"], l["epoch"], l["lkid"], l["orphan"])'
}
# field N of the line of table $1 matching "res queue"
field() { table "$1" | awk -v r="$2" -v q="$3" -v f="$4" '$1 == r && $2 == q { print $f }'; }
nwaiting() { table 1 | awk '$2 == "waiting"' | wc -l; }

# hold LS/$1 on host1 tagged vm1 until $T/stop or $T/stop-$1 exists
hold() {
	hexec 1 "$CTL" lock --lockspace "$LS" --tag vm1 "$1" -- \
		sh -c "while [ ! -e '$T/stop' ] && [ ! -e '$T/stop-$1' ]; do sleep 0.2; done" \
		2>"$T/holder-$1.err" &
	eval "holder_$1=\$!"
}

echo "# 1. host1 runs vm1 holding disk0 and disk1 (EX, tagged vm1)"
hold disk0
hold disk1
wait_for 20 "host1 holds both disks" sh -c "[ \$('$VC' exec 3 '$CTL' locks --lockspace $LS | grep -c granted) = 2 ]"
e0=$(field 2 disk0 granted 4)
e1=$(field 2 disk1 granted 4)
l0=$(field 2 disk0 granted 5)
l1=$(field 2 disk1 granted 5)
[[ $(field 3 disk0 granted 3) == host1 && $(field 3 disk1 granted 3) == host1 ]] || die "host1 does not hold the disks: $(table 3)"

echo "# 2. a disk without a prepared request: handoff refused, nothing changes"
hexec 2 "$MIG" prepare --vm vm1 --lockspace "$LS" disk0 >"$T/prep1.out" 2>&1 &
prep1=$!
wait_for 20 "prepare of disk0" grep -q '^prepared vm1' "$T/prep1.out" || { cat "$T/prep1.out"; die "prepare failed"; }
before=$(table 1)
set +e
out=$(hexec 3 "$MIG" handoff vm1 --lockspace "$LS" 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "handoff with disk1 unprepared: exit $rc, expected 1 ($out)"
echo "$out" | grep -q 'disk1.*no prepared request' || die "refusal does not name disk1: $out"
[[ $(table 1) == "$before" ]] || die "the table changed after a refused handoff"

echo "# 3. abort: the prepare ends, ownership stays with host1"
hexec 2 "$MIG" abort --vm vm1 --lockspace "$LS" >"$T/abort.out" 2>&1 || { cat "$T/abort.out"; die "abort failed"; }
grep -q 'aborted: .*with host1' "$T/abort.out" || die "abort output: $(cat "$T/abort.out")"
set +e
wait "$prep1"; rc=$?
set -e
[[ $rc == 3 ]] || die "aborted prepare exited $rc, expected 3 ($(cat "$T/prep1.out"))"
[[ $(nwaiting) == 0 ]] || die "requests still queued after abort: $(table 1)"
[[ $(field 1 disk0 granted 3) == host1 && $(field 1 disk0 granted 4) == "$e0" ]] || die "disk0 moved by abort: $(table 1)"
set +e
hexec 2 "$MIG" abort vm1 --lockspace "$LS" >"$T/abort2.out" 2>&1; rc=$?
set -e
[[ $rc == 0 ]] && grep -q 'nothing prepared' "$T/abort2.out" || die "second abort: exit $rc $(cat "$T/abort2.out")"

echo "# 4. host1 re-acquires disk1 (new epoch); prepare both disks"
touch "$T/stop-disk1"
wait "$holder_disk1" || die "host1's disk1 holder failed"
rm -f "$T/stop-disk1"
hold disk1
wait_for 20 "host1 holds disk1 again" sh -c "'$VC' exec 3 '$CTL' locks --lockspace $LS disk1 | grep -q granted"
old_e1=$e1
e1=$(field 2 disk1 granted 4)
l1=$(field 2 disk1 granted 5)
((e1 > old_e1)) || die "re-acquired disk1 has epoch $e1, not above $old_e1"
hexec 2 "$MIG" prepare --vm vm1 --lockspace "$LS" disk0 disk1 >"$T/prep2.out" 2>&1 &
prep2=$!
wait_for 20 "prepare of both disks" grep -q '^prepared vm1: 2 disks' "$T/prep2.out" || { cat "$T/prep2.out"; die "prepare failed"; }
t0=$(field 1 disk0 waiting 5)
t1=$(field 1 disk1 waiting 5)
[[ -n $t0 && -n $t1 ]] || die "host2's requests are not queued: $(table 1)"
hexec 3 "$MIG" status vm1 --lockspace "$LS" >"$T/status.out" || die "status failed"
grep -q "disk0: lkid $l0 on host1 (epoch $e0) -> request $t0 on host2" "$T/status.out" || die "status: $(cat "$T/status.out")"
before=$(table 1)
set +e
out=$(hexec 3 "$CTL" transfer "$l0" "$e0" "$t0" "$l1" $((e1 - 1)) "$t1" 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "stale transfer set: exit $rc ($out)"
echo "$out" | grep -qi 'none moved' || die "stale transfer set message: $out"
[[ $(table 1) == "$before" ]] || die "a refused transfer set changed the table: $(table 1)"
echo "# 4b. a handoff conditional on vm1's old disk1 epoch is refused, nothing moves"
set +e
out=$(hexec 1 "$MIG" handoff vm1 --lockspace "$LS" --epoch "disk0=$e0" --epoch "disk1=$old_e1" 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "handoff with a stale epoch: exit $rc, expected 1 ($out)"
echo "$out" | grep -q 'epoch is not current' || die "stale handoff message: $out"
[[ $(table 1) == "$before" ]] || die "a refused handoff changed the table: $(table 1)"
grep -q lost "$T/holder-disk0.err" "$T/holder-disk1.err" && die "host1's holders were told LOST by a refused transfer"

echo "# 5. the handoff: both locks to host2 in one transfer, new epochs"
hexec 1 "$MIG" handoff --vm vm1 --lockspace "$LS" --epoch "disk0=$e0" --epoch "disk1=$e1" \
	>"$T/handoff.out" 2>&1 || { cat "$T/handoff.out"; die "handoff failed"; }
cat "$T/handoff.out"
grep -q 'handed over vm1: 2 disk locks moved to host2' "$T/handoff.out" || die "handoff output"
for h in 1 2 3; do
	[[ $(field "$h" disk0 granted 3) == host2 && $(field "$h" disk1 granted 3) == host2 ]] ||
		die "host$h does not show host2 holding both disks: $(table "$h")"
done
n0=$(field 3 disk0 granted 4)
n1=$(field 3 disk1 granted 4)
((n0 > e0 && n1 > e1)) || die "epochs did not advance: $e0 -> $n0, $e1 -> $n1"
[[ $(table 3 | grep -c host1) == 0 ]] || die "host1 still holds a lock of vm1: $(table 3)"
set +e
wait "$prep2"; rc=$?
set -e
[[ $rc == 0 ]] || die "prepare exited $rc after the handoff: $(cat "$T/prep2.out")"
grep -q "^received $LS/disk0 lkid $t0 epoch $n0" "$T/prep2.out" || die "prepare output: $(cat "$T/prep2.out")"
# the prepare is gone: its PERSISTENT locks are orphans of host2
[[ $(field 3 disk0 granted 6) == True && $(field 3 disk1 granted 6) == True ]] || die "host2's locks are not orphans: $(table 3)"
for d in disk0 disk1; do
	wait_for 10 "host1's $d holder told LOST(TRANSFERRED)" grep -q 'lost: transferred to another holder' "$T/holder-$d.err"
done

echo "# 6. a second handoff finds nothing prepared and changes nothing"
before=$(table 1)
set +e
out=$(hexec 2 "$MIG" handoff vm1 --lockspace "$LS" 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "second handoff: exit $rc ($out)"
[[ $(table 1) == "$before" ]] || die "a refused handoff changed the table"

touch "$T/stop"
wait
echo "PASS"
