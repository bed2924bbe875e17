#!/bin/bash
# Per-file open locks (fs/openlock.c) across a 3-host cluster: a write open
# excludes other hosts at once, naming the holder; read-only opens share;
# multi-writer files let every host write; a host's opens share one lock
# that is converted up and down; close and a killed holder release it; a
# migration's TRANSFER to a prepared request fences the source's handles and
# makes the destination's writable.  One openlock-probe per host stands for
# that host's vmfs-mount.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
DLM_PROBE=${VMFS_BUILDDIR:-.}/tests/fs/openlock-probe
[[ -x $DLM_PROBE ]] || die "$DLM_PROBE is not built (make check builds it)"
OL_LS=5d3c2b1a-0000-4000-8000-00000000ol01
export OL_LS
cluster_up 3
. "$VMFS_SRCDIR/tests/dlm/probe.sh"

# expect_line NAME REGEX WHAT: the probe printed a matching line, else fail.
expect_line() {
	probe_wait "$1" "$2" 20 >/dev/null || {
		echo "--- probe $1 output:" >&2; cat "$T/probe-$1.out" >&2
		die "$3"; }
}

# lock_field RES QUEUE HOST FIELD: FIELD of the lock on resource RES in
# queue QUEUE (granted/waiting) held by HOST, from host1's table.
lock_field() {
	hexec 1 "$VMFSCTL" locks --json --lockspace "$OL_LS" | python3 -c '
import json, sys
res, queue, host, field = sys.argv[1:]
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        if r["name"] != res: continue
        for l in r["locks"]:
            if l["queue"] == queue and l["host"] == host: print(l[field])' "$@"
}

# no_locks RES: nobody holds or waits for RES.
no_locks() {
	! hexec 1 "$VMFSCTL" locks --json --lockspace "$OL_LS" | python3 -c '
import json, sys
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        if r["name"] == sys.argv[1] and r["locks"]: sys.exit(0)
sys.exit(1)' "$1"
}

probe_start a 1
probe_start b 2
probe_start c 3

echo "# 1. a write open excludes other hosts at once, naming holder and tag"
probe_cmd a open w1 100 rw prog=qemu-test pid=4242
expect_line a '^opened w1 epoch=[1-9]' "host1: write open of a free file failed"
probe_cmd b open x1 100 rw
expect_line b '^(opened|refused) x1 ' "host2: no answer to a conflicting write open"
grep -q '^opened x1' "$T/probe-b.out" && die "host2 opened for write a file host1 has open for write"
line=$(grep '^refused x1 ' "$T/probe-b.out")
[[ $line == *err=EBUSY* ]] || die "host2's refusal is not EBUSY: $line"
[[ $line == *host1* ]] || die "refusal does not name host1: $line"
[[ $line == *"qemu-test[4242]"* ]] || die "refusal does not name the opener's tag: $line"
[[ $line == *exclusive* && $line == *vmfs-mount* ]] || die "refusal does not say how/who: $line"
info "refusal: ${line#*why=}"
probe_cmd c open x2 100 ro
expect_line c '^refused x2 err=EBUSY' "host3: read open of a file open for write elsewhere was not refused"

echo "# 2. read-only opens share; a write open is refused, also an up-convert"
probe_cmd a open r1 200 ro
expect_line a '^opened r1 ' "host1: read-only open failed"
probe_cmd c open r3 200 ro
expect_line c '^opened r3 ' "host3: second read-only open (shared) failed"
probe_cmd b open w2 200 rw
expect_line b '^refused w2 err=EBUSY why=.*read-only shared by host' \
	"host2: write open of a file opened read-only elsewhere was not refused"
probe_cmd a open w1b 200 rw
expect_line a '^refused w1b err=EBUSY why=.*cannot become exclusive.*host3' \
	"host1: up-convert to write while host3 reads was not refused"
probe_cmd a check r1
expect_line a '^check r1 rc=OK' "host1: its read-only open suffered from the refused up-convert"

echo "# 3. multi-writer: write opens on all 3 hosts"
for p in a b c; do
	probe_cmd $p open m$p 300 rw multi
	expect_line $p "^opened m$p " "multi-writer write open on probe $p failed"
	probe_cmd $p check m$p
	expect_line $p "^check m$p rc=OK" "multi-writer handle of probe $p not writable"
done
probe_cmd a open n1 300 rw
expect_line a '^refused n1 err=EBUSY' "a normal (exclusive) write open of a multi-writer-open file was not refused"

echo "# 4. close releases: host2 can then open for write"
probe_cmd a close w1
expect_line a '^closed w1' "host1: close"
probe_cmd b open x3 100 rw
expect_line b '^opened x3 ' "host2: write open after host1's close failed"
probe_cmd b close x3
expect_line b '^closed x3' "host2: close"

echo "# 5. one lock per host: up-convert, and down-convert at the stronger open's close"
probe_cmd a open r7 700 ro
expect_line a '^opened r7 ' "host1: read-only open of 700"
probe_cmd a open w7 700 rw
expect_line a '^opened w7 ' "host1: up-convert to write (nobody else) failed"
[[ $(lock_field i700 granted host1 mode) == EX ]] || die "host1's lock on 700 is not EX after the up-convert"
[[ -z $(lock_field i700 granted host1 lkid | sed 1d) ]] || die "host1 holds two locks on 700"
probe_cmd c open r7c 700 ro
expect_line c '^refused r7c err=EBUSY' "host3: read open while host1 writes was not refused"
probe_cmd a close w7
expect_line a '^closed w7' "host1: close w7"
[[ $(lock_field i700 granted host1 mode) == PR ]] || die "host1's lock on 700 was not converted down to PR"
probe_cmd c open r7d 700 ro
expect_line c '^opened r7d ' "host3: read open after host1's down-convert failed"

echo "# 6. migration: TRANSFER to a prepared request fences the source, frees the destination"
probe_cmd a open src 400 rw prog=vmfs-vmm pid=777
expect_line a '^opened src ' "host1: write open of the VM disk"
probe_cmd b prepare 400 vm1
expect_line b '^prepared 400' "host2: prepare of an incoming VM failed"
probe_cmd b open dst 400 rw prog=vmfs-vmm pid=888
expect_line b '^opened dst ' "host2: write open of a prepared (incoming) file failed"
probe_cmd b check dst
expect_line b '^check dst rc=EAGAIN' "host2: incoming handle writable before the handoff"
probe_cmd a check src
expect_line a '^check src rc=OK' "host1: source handle not writable before the handoff"
src_lkid=$(lock_field i400 granted host1 lkid)
src_epoch=$(lock_field i400 granted host1 epoch)
dst_lkid=$(lock_field i400 waiting host2 lkid)
[[ $(lock_field i400 waiting host2 tag) == vm1 ]] || die "host2's request is not tagged with the VM name"
[[ -n $src_lkid && -n $src_epoch && -n $dst_lkid ]] ||
	die "cannot find the source lock / prepared request (src=$src_lkid/$src_epoch dst=$dst_lkid)"
hexec 3 "$VMFSCTL" transfer "$src_lkid" "$src_epoch" "$dst_lkid" >/dev/null ||
	die "vmfsctl transfer $src_lkid $src_epoch $dst_lkid failed"
probe_cmd a waitcheck src EIO 10
expect_line a '^check src rc=EIO' "host1: source handle still writable after its lock was transferred"
probe_cmd b waitcheck dst OK 10
expect_line b '^check dst rc=OK' "host2: destination handle not writable after the handoff"
probe_cmd b epoch dst
expect_line b '^epoch dst [0-9]' "host2: epoch"
dst_epoch=$(awk '$1 == "epoch" && $2 == "dst" { e = $3 } END { print e }' "$T/probe-b.out")
((dst_epoch > src_epoch)) || die "the destination's epoch $dst_epoch is not past the source's $src_epoch"
probe_cmd a open src2 400 ro
expect_line a '^refused src2 err=EBUSY why=.*host2.*vm1' "host1: open after the handoff not refused naming host2/vm1"
probe_cmd a check src
expect_line a '^check src rc=EIO' "host1: fenced handle became writable again"
n=$(grep -c 'open lock of inode 400 .*lost: transferred' "$T/probe-a.out" || true)
[[ $n == 1 ]] || die "host1 logged the loss of inode 400's lock $n times, expected once"
probe_cmd b unprepare 400
expect_line b '^unprepared 400' "host2: unprepare after the handoff"
probe_cmd b check dst
expect_line b '^check dst rc=OK' "host2: unprepare took the lock from an open handle"
probe_cmd b close dst
expect_line b '^closed dst' "host2: close dst"
wait_for 20 "i400 to be free after the destination closed" no_locks i400
probe_cmd a close src
expect_line a '^closed src' "host1: close of a fenced handle"

echo "# 7. prepare of a free file keeps it; unprepare of a waiting request cancels it"
probe_cmd c prepare 500 vm2
expect_line c '^prepared 500' "host3: prepare of a free file"
[[ $(lock_field i500 granted host3 tag) == vm2 ]] || die "host3 does not hold the free file for vm2"
probe_cmd a open f5 500 ro
expect_line a '^refused f5 err=EBUSY why=.*vm2' "host1: open of a file claimed by an incoming VM not refused"
probe_cmd c unprepare 500
expect_line c '^unprepared 500' "host3: unprepare"
wait_for 20 "i500 to be free after unprepare" no_locks i500
probe_cmd a open w5 500 rw
expect_line a '^opened w5 ' "host1: write open after unprepare"
probe_cmd b prepare 500 vm3
expect_line b '^prepared 500' "host2: prepare behind host1"
[[ -n $(lock_field i500 waiting host2 lkid) ]] || die "host2's prepared request is not waiting"
probe_cmd b unprepare 500
expect_line b '^unprepared 500' "host2: unprepare of a waiting request"
[[ -z $(lock_field i500 waiting host2 lkid) ]] || die "host2's request still waits after unprepare"
probe_cmd a check w5
expect_line a '^check w5 rc=OK' "host1: its handle suffered from host2's cancelled request"

echo "# 8. a killed holder's lock is released"
probe_cmd a open k6 600 rw
expect_line a '^opened k6 ' "host1: write open of 600"
apid=$(sed -n 's/^ready pid=//p' "$T/probe-a.out" | head -1)
[[ -n $apid ]] || die "no pid from host1's probe"
kill -KILL "$apid"
wait_for 30 "host1's locks to be released after its probe was killed" no_locks i600
probe_cmd b open k6b 600 rw
expect_line b '^opened k6b ' "host2: write open after host1's holder was killed"

echo "# 9. lease lost (host isolated): its handles are not writable"
probe_cmd c check mc
expect_line c '^check mc rc=OK' "host3: multi-writer handle not writable before the isolation"
"$VC" isolate 3
probe_cmd c waitcheck mc EIO 60
expect_line c '^check mc rc=EIO' "host3: handle still writable after the host lost its lease"
"$VC" rejoin 3
"$VC" wait >/dev/null || die "the cluster did not re-form after host3 rejoined"

probe_stop b
probe_stop c
echo "PASS"
