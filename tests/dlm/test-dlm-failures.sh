#!/bin/bash
# Host failures: a killed host's locks stay held (recovering) and are purged
# only after the fence delay; an isolated host cannot get locks while the
# other two can, and its clients are told the lease is lost; after rejoin
# every host shows the same table.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
FENCE_MS=8000
export VMFS_DLMD_ARGS="--fence-delay $FENCE_MS"
cluster_up 3
. "$VMFS_SRCDIR/tests/dlm/probe.sh"
CTL=$VMFSCTL

# Holders: EX on t/dead held by host3; a waiter on host1.
probe_start h3 3
probe_cmd h3 lock a t dead EX
probe_wait h3 '^granted a '
probe_start w1 1
probe_cmd w1 lock b t dead EX
wait_for 20 "host1's request queued" sh -c "'$VC' exec 2 '$CTL' locks --json --lockspace t dead | grep -q '\"waiting\"'"

echo "# 1. kill host3: its lock stays held, marked recovering, until the fence delay"
kill_time=$(date +%s%3N)
"$VC" kill 3
wait_for 30 "host1 sees host3 gone" sh -c "'$VC' exec 1 '$CTL' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if len(d[\"members\"])==2 else 1)'"
hexec 2 "$CTL" locks --json --lockspace t dead > "$T/after-kill.json"
python3 - "$T/after-kill.json" <<'PY' || die "host3's lock not shown as recovering after the kill"
import json,sys
d=json.load(open(sys.argv[1]))
locks=[l for ls in d["lockspaces"] for r in ls["resources"] for l in r["locks"]]
held=[l for l in locks if l["queue"]=="granted"]
ok = len(held)==1 and held[0]["nodeid"]==3 and held[0]["recovering"]
# On a very slow machine the purge may already have happened; then the lock
# must be the waiter's, and the fence-delay check below decides.
purged = len(held)==1 and held[0]["nodeid"]==1
if purged: print("note: purge already done when looked at", file=sys.stderr)
sys.exit(0 if ok or purged else 1)
PY
probe_wait w1 '^granted b ' 60
grant_time=$(date +%s%3N)
# Safety property, not a performance figure: no grant before T_fence.
[ $((grant_time - kill_time)) -ge $FENCE_MS ] || die "host3's lock was purged $((grant_time - kill_time)) ms after the kill, before the fence delay ($FENCE_MS ms)"
lvb=$(probe_field w1 '^granted b ' lvb)
[ "$lvb" = invalid ] || die "LVB of a dead EX holder should be invalid, got $lvb"
probe_cmd w1 unlock b
probe_wait w1 '^unlocked b'

echo "# 2. restart host3; isolate it: it cannot lock, the others can"
"$VC" start-daemons 3
wait_for 60 "host3 back and synced" sh -c "'$VC' exec 3 '$CTL' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"synced\"] and len(d[\"members\"])==3 else 1)'"
probe_start i3 3
"$VC" isolate 3
probe_wait i3 '^lease valid=0' 60
set +e
hexec 3 "$CTL" lock --lockspace t --timeout 3 iso -- true 2>/dev/null; rc=$?
set -e
[ "$rc" = 75 ] || die "isolated host3 got a lock (exit $rc)"
hexec 1 "$CTL" lock --lockspace t --timeout 20 iso -- true || die "host1 could not lock while host3 is isolated"
probe_start k2 2
probe_cmd k2 lock k t iso2 EX
probe_wait k2 '^granted k ' || die "host2 could not lock while host3 is isolated"

echo "# 3. rejoin: every host shows the same table"
"$VC" rejoin 3
wait_for 60 "host3 rejoined and synced" sh -c "'$VC' exec 3 '$CTL' status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"synced\"] and d[\"quorate\"] and len(d[\"members\"])==3 else 1)'"
probe_wait i3 '^lease valid=1' 30
for h in 1 2 3; do
	hexec "$h" "$CTL" locks --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
for ls in d["lockspaces"]:
    for r in ls["resources"]:
        for l in r["locks"]:
            print(ls["name"], r["name"], l["lkid"], l["queue"], l["mode"], l["epoch"], l["nodeid"])' > "$T/table.$h"
done
cmp -s "$T/table.1" "$T/table.2" && cmp -s "$T/table.1" "$T/table.3" || {
	diff "$T/table.1" "$T/table.3" || true; die "tables differ after rejoin"; }
grep -q "iso2" "$T/table.3" || die "host3 does not see the orphan taken while it was isolated"
probe_stop i3; probe_stop w1; probe_stop k2
echo "PASS"
