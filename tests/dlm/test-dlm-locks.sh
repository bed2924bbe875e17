#!/bin/bash
# Lock semantics across a 3-host cluster: mutual exclusion under load, try and
# timeout (holder named), a killed client's locks released, blocking
# callbacks, the LVB, TRANSFER and its stale-epoch refusal, orphans and
# adoption, and the same table seen from every host.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
cluster_up 3
. "$VMFS_SRCDIR/tests/dlm/probe.sh"
CTL=$VMFSCTL

echo "# 1. mutual exclusion: 3 hosts x 2 clients x 15 increments under EX"
counter=$T/counter
echo 0 > "$counter"
inc='n=$(cat '"$counter"'); sleep 0.01; echo $((n + 1)) > '"$counter"
pids=()
for h in 1 2 3; do
	for c in 1 2; do
		( for _ in $(seq 15); do
			hexec "$h" "$CTL" lock --lockspace t --timeout 60 counter -- sh -c "$inc" || exit 1
		  done ) &
		pids+=($!)
	done
done
for p in "${pids[@]}"; do wait "$p" || die "a locked increment failed"; done
[ "$(cat "$counter")" = 90 ] || die "counter is $(cat "$counter"), expected 90"

echo "# 2. try and timeout: refused with exit 75, naming the holder"
hexec 2 "$CTL" lock --lockspace t --tag vm-a held -- sleep 60 &
holder=$!
wait_for 20 "host2 holds t/held" sh -c "'$VC' exec 1 '$CTL' locks --lockspace t held | grep -q granted"
set +e
out=$(hexec 1 "$CTL" lock --lockspace t --nowait held -- true 2>&1); rc=$?
set -e
[ "$rc" = 75 ] || die "nowait: exit $rc, expected 75 ($out)"
echo "$out" | grep -q host2 || die "nowait message does not name host2: $out"
echo "$out" | grep -q vm-a || die "nowait message does not name the tag: $out"
set +e
hexec 3 "$CTL" lock --lockspace t --timeout 1 held -- true 2>/dev/null; rc=$?
set -e
[ "$rc" = 75 ] || die "timeout: exit $rc, expected 75"

echo "# 3. a killed client's locks are released"
vpid=$(pgrep -f "lock --lockspace t --tag vm-a held -- sleep" | while read -r p; do
	[ "$(cat /proc/"$p"/comm)" = vmfsctl ] && echo "$p"; done | head -1)
[ -n "$vpid" ] || die "cannot find the holding vmfsctl"
kill -KILL "$vpid"
pkill -KILL -P "$vpid" sleep 2>/dev/null || true
pkill -KILL -f "^sleep 60$" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
hexec 1 "$CTL" lock --lockspace t --timeout 20 held -- true || die "lock of a killed client was not released"

echo "# 4. blocking callback names the wanted mode; LVB written on release"
probe_start a 1
probe_start b 2
probe_cmd a lock x t r1 EX
probe_wait a '^granted x '
probe_cmd b lock y t r1 PR
probe_wait a '^blocking lkid=[0-9]+ wanted=PR'
probe_cmd a unlock x lvb=00112233445566778899aabbccddeeff
probe_wait a '^unlocked x'
probe_wait b '^granted y .*lvb=00112233445566778899aabbccddeeff0{32}'

echo "# 5. TRANSFER moves ownership; a stale epoch is refused"
probe_cmd b unlock y
probe_wait b '^unlocked y'
probe_cmd a lock src t disk EX
probe_wait a '^granted src '
src_lkid=$(probe_field a '^granted src ' lkid)
src_epoch=$(probe_field a '^granted src ' epoch)
probe_cmd b lock dst t disk EX tag=migrated
wait_for 20 "host2's request for t/disk is queued" sh -c \
	"'$VC' exec 1 '$CTL' locks --json --lockspace t disk | grep -q '\"waiting\"'"
dst_lkid=$(hexec 1 "$CTL" locks --json --lockspace t disk | python3 -c '
import json,sys
d=json.load(sys.stdin)
for ls in d["lockspaces"]:
    for r in ls["resources"]:
        for l in r["locks"]:
            if l["queue"]=="waiting": print(l["lkid"])')
[ -n "$dst_lkid" ] || die "no waiting lkid found"
probe_start c 3
probe_cmd c transfer "$src_lkid" $((src_epoch + 7)) "$dst_lkid"
probe_wait c '^transfer err=' || die "stale transfer was not refused"
grep -q '^transfer err=.*[Ss]tale\|epoch' "$T/probe-c.out" || die "stale transfer error text: $(cat "$T/probe-c.out")"
probe_cmd c transfer "$src_lkid" "$src_epoch" "$dst_lkid"
probe_wait c '^transfer ok'
probe_wait b '^granted dst '
probe_wait a "^lost lkid=$src_lkid reason=1"
new_epoch=$(probe_field b '^granted dst ' epoch)
[ "$new_epoch" -gt "$src_epoch" ] || die "epoch did not advance on transfer ($src_epoch -> $new_epoch)"
hexec 3 "$CTL" locks --lockspace t disk | grep granted | grep -q host2 || die "host2 is not shown holding t/disk"

echo "# 6. persistent lock becomes an orphan, adopted by a new client"
probe_cmd a lock p t keep PW persistent
probe_wait a '^granted p '
probe_stop a
wait_for 20 "t/keep shown as orphan" sh -c "'$VC' exec 2 '$CTL' locks --json --lockspace t keep | grep -q '\"orphan\": *true'"
probe_start d 1
probe_cmd d lock p2 t keep PW adopt
probe_wait d '^granted p2 '
hexec 2 "$CTL" locks --json --lockspace t keep | grep -q '"orphan": *false' || die "adopted lock still an orphan"

echo "# 7. every host shows the same table"
probe_stop b; probe_stop c; probe_stop d
for h in 1 2 3; do
	hexec "$h" "$CTL" locks --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
for ls in d["lockspaces"]:
    for r in ls["resources"]:
        for l in r["locks"]:
            print(ls["name"], r["name"], l["lkid"], l["queue"], l["mode"], l["epoch"], l["nodeid"], l["orphan"])' > "$T/table.$h"
done
cmp -s "$T/table.1" "$T/table.2" && cmp -s "$T/table.1" "$T/table.3" || {
	diff "$T/table.1" "$T/table.2" || true; diff "$T/table.1" "$T/table.3" || true
	die "tables differ between hosts"; }
echo "PASS"
