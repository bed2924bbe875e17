#!/bin/bash
# The disk-lock handoff of a VM whose disk is a FILE on a vmfs mount
# (vmfs-migrate(8), disks given as paths), on a 3-host cluster with the
# volume mounted (-o cluster) on host1 and host2:
#   1. a handoff with nothing prepared is refused, with a clear message;
#   2. prepare + abort on host2: host1 stays the holder, its writes go on;
#      a prepare killed with SIGKILL is withdrawn by `abort` too;
#   3. prepare on host2, a writer on host2 gets EAGAIN, `handoff vm1` (as
#      vmfs-vmm --handoff-exec runs it) moves the file's open lock to host2
#      in one transfer: host1's writer gets EIO on its next write although it
#      keeps running (fenced), host2's writer writes, the lock table shows
#      i<ino> held by host2, and the file holds every write host1 had
#      acknowledged before the handoff.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
need_vmfs
MIG=${VMFS_MIGRATE:-${VMFS_BUILDDIR:-$VMFS_SRCDIR}/migrate-helper/vmfs-migrate}
[[ -x $MIG ]] || die "$MIG is not built"

# w.py PATH ACK BASE MODE: open PATH O_RDWR and write 4 KiB records
# "rec <BASE+i>" at record BASE+i, each followed by fsync; after each
# acknowledged one, ACK holds the count.  MODE "wait": EAGAIN (incoming
# migration not handed off yet) is retried.  On the first other error it
# prints "error ERRNO after N" and KEEPS RUNNING with the file open until
# ACK.stop exists (a fenced process does not go away by itself).
cat >"$T/w.py" <<'PYEOF'
import errno, os, sys, time
path, ack, base, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
stop = ack + ".stop"
try:
    fd = os.open(path, os.O_RDWR)
except OSError as e:
    print("open", errno.errorcode[e.errno], flush=True)
    sys.exit(1)
print("opened", flush=True)
i = eagain = 0
while not os.path.exists(stop):
    rec = ("rec %d\n" % (base + i)).encode().ljust(4096, b".")
    try:
        os.pwrite(fd, rec, (base + i) * 4096)
        os.fsync(fd)
    except OSError as e:
        if e.errno == errno.EAGAIN and mode == "wait":
            if eagain == 0:
                print("EAGAIN", flush=True)
            eagain += 1
            time.sleep(0.05)
            continue
        print("error", errno.errorcode.get(e.errno, e.errno), "after", i, flush=True)
        while not os.path.exists(stop):
            time.sleep(0.1)
        break
    i += 1
    with open(ack + ".tmp", "w") as f:
        f.write(str(i))
    os.rename(ack + ".tmp", ack)
    if i == 1 and eagain:
        print("wrote after %d EAGAIN" % eagain, flush=True)
    time.sleep(0.01)
print("stopped after", i, flush=True)
PYEOF

# check.py PATH N: records 0..N-1 of PATH are "rec k".
cat >"$T/check.py" <<'PYEOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    for k in range(n):
        f.seek(k * 4096)
        got = f.read(4096)
        want = ("rec %d\n" % k).encode().ljust(4096, b".")
        if got != want:
            print("record %d of %d lost: %r" % (k, n, got[:16]))
            sys.exit(1)
print("all %d acknowledged records present" % n)
PYEOF

is_mounted() { hexec "$1" grep -q " $T/m$1 fuse.vmfs " /proc/self/mounts; }
mount_on() {
	local i=$1
	hexec "$i" mkdir -p "$T/m$i"
	hexec "$i" "$MOUNT" -f -o cluster "$DISK" "$T/m$i" >>"$T/mount-h$i.log" 2>&1 &
	wait_for 60 "host$i's mount to appear" is_mounted "$i" || {
		tail -n 30 "$T/mount-h$i.log" >&2
		return 1
	}
}
ack() { cat "$1" 2>/dev/null || echo 0; }
# holder_of RES: "queue host tag" of every lock on RES in the volume's lockspace.
locks_of() {
	hexec 3 "$VMFSCTL" locks --json --lockspace "$UUID" | "$PY" -c '
import json, sys
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        if r["name"] != sys.argv[1]: continue
        for l in r["locks"]: print(l["queue"], l["host"], l["tag"])' "$1"
}
# end_of PID OUT WHAT: wait (bounded) for a background process; its exit status.
end_of() {
	wait_for 20 "$3 to end" sh -c "! kill -0 $1 2>/dev/null" || fail_with "$2" "$3 did not end"
	wait "$1"
}
fail_with() { echo "--- $1:" >&2; cat "$1" >&2; shift; die "$*"; }

cluster_up 3
"$MKFS" -q "$DISK" || die "vmfs-mkfs $DISK failed"
mount_on 1 || die "vmfs-mount -o cluster on host1 failed"
mount_on 2 || die "vmfs-mount -o cluster on host2 failed"
hexec 1 truncate -s 64M "$T/m1/vm1.img"
INO=$(hexec 2 stat -c %i "$T/m2/vm1.img")
RES=i$INO
UUID=$(hexec 1 "$VMFSCTL" volume "$T/m1" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
info "disk $T/m1/vm1.img: lockspace $UUID resource $RES"

hexec 1 "$PY" "$T/w.py" "$T/m1/vm1.img" "$T/ackA" 0 fail >"$T/wA.out" 2>&1 &
WA=$!
wait_for 20 "host1's writer to write" sh -c "[ \$(cat $T/ackA 2>/dev/null || echo 0) -ge 5 ]" ||
	fail_with "$T/wA.out" "host1's writer does not write"
[[ $(locks_of "$RES") == "granted host1 "* ]] || die "host1 does not hold $RES: $(locks_of "$RES")"

echo "# 1. a handoff with nothing prepared is refused"
set +e
out=$(hexec 3 "$MIG" handoff vm1 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "handoff without prepare: exit $rc, expected 1 ($out)"
[[ $out == *"nothing is prepared for vm1"* ]] || die "handoff without prepare: unclear message: $out"
info "refused: $out"
[[ $(locks_of "$RES") == "granted host1 "* ]] || die "a refused handoff moved $RES"

echo "# 2. prepare + abort: host1 stays the holder and keeps writing"
hexec 2 "$MIG" prepare --vm vm1 "$T/m2/vm1.img" >"$T/prep1.out" 2>&1 &
P1=$!
wait_for 20 "prepare on host2" grep -q '^prepared vm1: 1 disk' "$T/prep1.out" ||
	fail_with "$T/prep1.out" "prepare failed"
grep -q "$UUID/$RES queued behind its holder" "$T/prep1.out" || fail_with "$T/prep1.out" "prepare output"
locks_of "$RES" | grep -q '^waiting host2 vm1$' || die "host2's claim is not queued: $(locks_of "$RES")"
hexec 2 "$MIG" status vm1 "$T/m2/vm1.img" >"$T/status1.out" 2>&1 || fail_with "$T/status1.out" "status failed"
grep -q "$UUID/$RES: lkid [0-9]* on host1 (epoch [0-9]*) -> request [0-9]* on host2" "$T/status1.out" ||
	fail_with "$T/status1.out" "status does not show the planned move"
hexec 2 "$MIG" abort vm1 >"$T/abort1.out" 2>&1 || fail_with "$T/abort1.out" "abort failed"
set +e
end_of "$P1" "$T/prep1.out" "the prepare after abort"; rc=$?
set -e
[[ $rc == 3 ]] || fail_with "$T/prep1.out" "prepare exited $rc after abort, expected 3"
! locks_of "$RES" | grep -q '^waiting' || die "a claim is left after abort: $(locks_of "$RES")"
[[ $(locks_of "$RES") == "granted host1 "* ]] || die "host1 lost $RES after abort: $(locks_of "$RES")"
a0=$(ack "$T/ackA")
wait_for 20 "host1's writes to go on" sh -c "[ \$(cat $T/ackA) -gt $((a0 + 5)) ]" ||
	fail_with "$T/wA.out" "host1's writer stopped after the abort"
grep -q '^error' "$T/wA.out" && fail_with "$T/wA.out" "host1's writer failed after the abort"

echo "# 2b. a prepare killed with SIGKILL: abort withdraws its claim"
hexec 2 "$MIG" prepare --vm vm1 "$T/m2/vm1.img" >"$T/prep2.out" 2>&1 &
P2=$!
wait_for 20 "prepare on host2" grep -q '^prepared vm1' "$T/prep2.out" || fail_with "$T/prep2.out" "prepare failed"
# its pid from its state file (in host2's /run): no pgrep, other clusters run vmfs-migrate too
pid=$(hexec 2 sed -n 's/^pid //p' /run/vmfs-migrate/vm1.prepare)
[[ -n $pid ]] || die "the prepare recorded no pid in host2's /run/vmfs-migrate/vm1.prepare"
hexec 2 kill -KILL "$pid"
end_of "$P2" "$T/prep2.out" "the killed prepare" || true
locks_of "$RES" | grep -q '^waiting host2 vm1$' || die "the killed prepare's claim vanished by itself?"
hexec 2 "$MIG" abort vm1 >"$T/abort2.out" 2>&1 || fail_with "$T/abort2.out" "abort after SIGKILL failed"
! locks_of "$RES" | grep -q '^waiting' || die "abort left the killed prepare's claim: $(locks_of "$RES")"
grep -q '^error' "$T/wA.out" && fail_with "$T/wA.out" "host1's writer failed after the second abort"

echo "# 3. the handoff: host1 fenced, host2 writes"
hexec 2 "$MIG" prepare --vm vm1 "$T/m2/vm1.img" >"$T/prep3.out" 2>&1 &
P3=$!
wait_for 20 "prepare on host2" grep -q '^prepared vm1' "$T/prep3.out" || fail_with "$T/prep3.out" "prepare failed"
hexec 2 "$PY" "$T/w.py" "$T/m2/vm1.img" "$T/ackB" 20000 wait >"$T/wB.out" 2>&1 &
WB=$!
wait_for 20 "host2's writer to see EAGAIN" grep -q '^EAGAIN' "$T/wB.out" ||
	fail_with "$T/wB.out" "host2's writer did not get EAGAIN before the handoff"
[[ $(ack "$T/ackB") == 0 ]] || die "host2 wrote before the handoff"
hexec 3 "$MIG" handoff vm1 >"$T/handoff.out" 2>&1 || fail_with "$T/handoff.out" "handoff failed"
cat "$T/handoff.out"
grep -q 'handed over vm1: 1 disk lock moved to host2' "$T/handoff.out" || fail_with "$T/handoff.out" "handoff output"
acked=$(ack "$T/ackA")
wait_for 20 "host1's writer to be fenced" grep -q '^error' "$T/wA.out" || fail_with "$T/wA.out" "host1's writer was not fenced"
grep -q '^error EIO after' "$T/wA.out" || fail_with "$T/wA.out" "host1's writer failed with something else than EIO"
kill -0 "$WA" 2>/dev/null || die "host1's writer did not keep running"
acked=$(ack "$T/ackA")	# final: the writer stopped at its first error
wait_for 20 "host2's writer to write" grep -q '^wrote after' "$T/wB.out" || fail_with "$T/wB.out" "host2 cannot write after the handoff"
set +e
end_of "$P3" "$T/prep3.out" "the prepare after the handoff"; rc=$?
set -e
[[ $rc == 0 ]] || fail_with "$T/prep3.out" "prepare exited $rc after the handoff"
grep -q '^handed over' "$T/prep3.out" || fail_with "$T/prep3.out" "prepare output after the handoff"
[[ $(locks_of "$RES") == "granted host2 "* ]] || die "$RES is not held by host2: $(locks_of "$RES")"
hexec 3 "$VMFSCTL" locks --lockspace "$UUID" | grep "$RES" >&2 || true
touch "$T/ackA.stop" "$T/ackB.stop"
wait "$WA" "$WB" || true
hexec 2 "$PY" "$T/check.py" "$T/m2/vm1.img" "$acked" >"$T/check.out" 2>&1 || fail_with "$T/check.out" "writes lost"
info "$(cat "$T/check.out"); host2 wrote $(ack "$T/ackB") records after the handoff"
echo "# 4. a second handoff finds nothing prepared"
set +e
out=$(hexec 1 "$MIG" handoff vm1 2>&1); rc=$?
set -e
[[ $rc == 1 ]] || die "second handoff: exit $rc ($out)"
echo "PASS: $TEST_NAME"
