#!/bin/bash
# `vmfs-migrate qemu` with the guest's disk a FILE on vmfs (vmfs-migrate(8),
# QEMU): a 3-host cluster, the volume mounted -o cluster on host1 and host2,
# a raw image on it; the test guest (multiboot, TCG) runs in QEMU on host1
# with the image as its IDE disk, opened read-write through host1's mount.
#   a. a second QEMU on host2 cannot open the running guest's image: the
#      mount's open lock refuses it (EBUSY), QEMU exits with that message;
#   b. prepare on host2 (the image's PATH on host2's mount), a destination
#      QEMU on host2 with -incoming defer and the same image (its open
#      succeeds because of the prepare), `vmfs-migrate qemu` host1 -> host2:
#      the guest runs on host2, the image's i<ino> lock is host2's with a new
#      epoch, QEMU on host1 is in postmigrate; data written through QEMU's
#      block layer on host1 before the migration reads back on host2, and
#      host2's QEMU writes to the image;
#   c. a second guest (its own image): nothing prepared -> refused before
#      starting; the destination QEMU killed during the migration -> the
#      guest runs on host1 with its lock (same epoch, nothing queued) and
#      still writes to its image;
#   d. vm2 again, vmfs-migrate qemu run on host1 (the source), where it
#      arms vm2's return claim itself; the destination QEMU quits right
#      after the handoff
#      (VMFS_MIGRATE_TEST_FAULT): the disk is given back, the migration ends
#      with exit 1 as any rollback, vm2 runs on host1 and writes through the
#      handle the handoff had fenced.
set -euo pipefail
QEMU=$(command -v qemu-system-x86_64 || command -v qemu-system-i386) || {
	echo "SKIP: test-qemu-vmfs: QEMU (qemu-system-x86) is not installed" >&2; exit 77; }
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
[[ -c /dev/fuse ]] || { echo "SKIP: $TEST_NAME: /dev/fuse missing" >&2; exit 77; }
command -v fusermount3 >/dev/null || { echo "SKIP: $TEST_NAME: fusermount3 missing" >&2; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: $TEST_NAME: python3 missing" >&2; exit 77; }
dlmd_built || die "vmfs-dlmd is not built"
B=${VMFS_BUILDDIR:-$VMFS_SRCDIR}
MOUNT=$B/fs/vmfs-mount
MKFS=$B/fs/vmfs-mkfs
MIG=${VMFS_MIGRATE:-$B/migrate-helper/vmfs-migrate}
GUEST=$B/migrate-helper/guests/guest.elf
for p in "$MOUNT" "$MKFS" "$MIG" "$VMFSCTL"; do
	[[ -x $p ]] || die "$p is not built"
done
[[ -f $GUEST ]] || die "the test guest is not built ($GUEST)"

fail_with() { echo "--- $1:" >&2; cat "$1" >&2; shift; die "$*"; }
is_mounted() { hexec "$1" grep -q " $T/m$1 fuse.vmfs " /proc/self/mounts; }
mount_on() {
	hexec "$1" mkdir -p "$T/m$1"
	hexec "$1" "$MOUNT" -f -o cluster "$DISK" "$T/m$1" >>"$T/mount-h$1.log" 2>&1 &
	wait_for 60 "host$1's mount to appear" is_mounted "$1" || fail_with "$T/mount-h$1.log" "mount on host$1"
}

# 8 MiB of random guest RAM: with --max-bandwidth 1M the migration takes
# seconds, time enough to kill the destination before the switchover.
head -c 8M /dev/urandom >"$T/blob"

# guest I NAME IMAGE [QEMU ARGS...]: QEMU on host I, QMP on $T/NAME.qmp, the
# image as an IDE disk (drive id d0); waits for the QMP socket, or for
# QEMU's exit (1: it refused to start, its stderr in $T/NAME.log).
# auto-read-only=off: -drive defaults to on, and then the source QEMU
# reopens the image read-only when it inactivates it after the switchover
# pause, i.e. after the handoff; the mount refuses that open (the file is
# the destination's now) and the migration fails after the handoff (exit 4).
guest() {
	local i=$1 name=$2 img=$3
	shift 3
	rm -f "$T/$name.qmp" "$T/$name.pid"
	hexec "$i" "$QEMU" -machine pc,accel=tcg -m 32 -display none -no-reboot -monitor none \
		-name "$name" -kernel "$GUEST" -serial "file:$T/$name.serial" \
		-device "loader,file=$T/blob,addr=0x1000000" \
		-drive "file=$img,format=raw,if=ide,id=d0,cache=$CACHE,auto-read-only=off" \
		-qmp "unix:$T/$name.qmp,server=on,wait=off" -pidfile "$T/$name.pid" "$@" \
		>"$T/$name.log" 2>&1 &
	local qpid=$!
	wait_for 30 "QEMU $name's QMP socket or exit" \
		sh -c "test -S '$T/$name.qmp' || ! kill -0 $qpid 2>/dev/null"
	# QEMU listens on QMP before it opens its drives: it runs only if it answers
	[[ $(qstatus "$name") != gone ]]
}

# qmp NAME CMD [ARGS-JSON]: QMP command's return value as JSON ("gone": no QEMU)
cat >"$T/qmp.py" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
cmds = [("qmp_capabilities", None), (sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)]
for c, a in cmds:
    m = {"execute": c}
    if a is not None:
        m["arguments"] = a
    f.write(json.dumps(m) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
    if "error" in r:
        print("error:", r["error"].get("desc"))
        sys.exit(1)
print(json.dumps(r["return"]))
EOF
qmp() { python3 "$T/qmp.py" "$T/$1.qmp" "${@:2}" 2>/dev/null || echo gone; }
qstatus() { qmp "$1" query-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || echo gone; }
status_is() { [[ $(qstatus "$1") == "$2" ]]; }
# qio NAME 'qemu-io command': through QEMU's block layer (HMP qemu-io on d0);
# prints what it said (QEMU writes qemu-io's output on its stdout: the log)
qio() {
	local n r
	n=$(wc -l <"$T/$1.log")
	r=$(qmp "$1" human-monitor-command "{\"command-line\": \"qemu-io d0 \\\"$2\\\"\"}")
	sleep 0.2
	echo "$r $(tail -n +$((n + 1)) "$T/$1.log" | tr '\n' ' ')"
}

# "queue host epoch tag" of every lock on resource $1 of the volume's lockspace
locks_of() {
	hexec 3 "$VMFSCTL" locks --json --lockspace "$UUID" | python3 -c '
import json, sys
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        if r["name"] != sys.argv[1]: continue
        for l in r["locks"]: print(l["queue"], l["host"], l["epoch"], l["tag"])' "$1"
}

# prepare NAME PATH: vmfs-migrate prepare on host2, in the background ($prep)
prepare() {
	hexec 2 "$MIG" prepare --vm "$1" "$2" >"$T/prep-$1.out" 2>&1 &
	prep=$!
	wait_for 20 "prepare of $1" grep -q "^prepared $1" "$T/prep-$1.out" ||
		fail_with "$T/prep-$1.out" "prepare of $1 failed"
}

# migrate NAME SRC DST PORT [OPTIONS]: vmfs-migrate qemu on host MIG_HOST
# (default 2, where the prepare runs), output in $T/mig-NAME-PORT.{out,err};
# no --lockspace: the disks are files, found in their volume's lockspace
migrate() {
	local name=$1 src=$2 dst=$3 port=$4
	shift 4
	# shellcheck disable=SC2086 # MIG_ENV: VAR=VALUE words for env
	hexec "${MIG_HOST:-2}" env ${MIG_ENV:-} "$MIG" qemu "$name" --source-qmp "$T/$src.qmp" \
		--dest-qmp "$T/$dst.qmp" --uri "tcp:$H2:$port" "$@" \
		>"$T/mig-$name-$port.out" 2>"$T/mig-$name-$port.err"
}

cluster_up 3
H2=$(hexec 2 ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }')
[[ -n $H2 ]] || die "no address on host2"
"$MKFS" -q "$DISK" || die "vmfs-mkfs $DISK failed"
mount_on 1
mount_on 2
UUID=$(hexec 1 "$VMFSCTL" volume "$T/m1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
hexec 1 truncate -s 16M "$T/m1/vm1.img" "$T/m1/vm2.img"
RES1=i$(hexec 2 stat -c %i "$T/m2/vm1.img")
RES2=i$(hexec 2 stat -c %i "$T/m2/vm2.img")
# cache=none (O_DIRECT) if the mount takes it, else QEMU's default writeback
if hexec 1 dd if=/dev/zero of="$T/m1/vm1.img" bs=4096 count=1 conv=notrunc oflag=direct 2>"$T/direct.err"; then
	CACHE=none
else
	CACHE=writeback
	info "O_DIRECT on the vmfs mount fails ($(tr '\n' ' ' <"$T/direct.err")): cache=writeback"
fi
info "volume $UUID: vm1.img $RES1, vm2.img $RES2; QEMU cache=$CACHE"

echo "# [${SECONDS}s] 1. vm1 runs on host1 with its disk on host1's mount"
guest 1 vm1 "$T/m1/vm1.img" || fail_with "$T/vm1.log" "QEMU vm1 did not start on host1"
wait_for 60 "vm1 to boot" grep -q 'vmfs-guest: up' "$T/vm1.serial"
read -r q h e0 tag <<<"$(locks_of "$RES1")"
[[ $q == granted && $h == host1 ]] || die "$RES1 is not host1's: $(locks_of "$RES1")"
info "$RES1 granted to host1 for $tag, epoch $e0"
# data through the source QEMU's block layer, read back on the destination later
out=$(qio vm1 'write -P 0x5a 0 64k')
[[ $out == *"wrote 65536/65536"* ]] || die "qemu-io write on host1: $out"

echo "# [${SECONDS}s] 2a. a second QEMU on host2 cannot open vm1's image"
if guest 2 intruder "$T/m2/vm1.img" -S; then
	die "a second QEMU on host2 opened the running guest's image: $(qstatus intruder)"
fi
info "refused: $(tr '\n' ' ' <"$T/intruder.log")"
grep -Eq 'Device or resource busy|Failed to get .write. lock' "$T/intruder.log" ||
	fail_with "$T/intruder.log" "the second QEMU failed for another reason"
[[ $(locks_of "$RES1") == "granted host1 $e0 "* ]] || die "the refused open touched $RES1: $(locks_of "$RES1")"

echo "# [${SECONDS}s] 2b. prepare on host2, destination QEMU there, vmfs-migrate qemu"
prepare vm1 "$T/m2/vm1.img"
prep1=$prep
guest 2 vm1-in "$T/m2/vm1.img" -incoming defer ||
	fail_with "$T/vm1-in.log" "the destination QEMU could not open the prepared image"
status_is vm1-in inmigrate || die "destination not in inmigrate: $(qstatus vm1-in)"
migrate vm1 vm1 vm1-in 4444 --json --downtime-ms 100 || {
	cat "$T/mig-vm1-4444.err" "$T/mig-vm1-4444.out" "$T/vm1.log" "$T/vm1-in.log" >&2
	die "vmfs-migrate qemu vm1 failed"
}
cat "$T/mig-vm1-4444.err"
summary=$(cat "$T/mig-vm1-4444.out")
echo "$summary"
python3 -c '
import json,sys
s=json.loads(sys.argv[1])
assert s["result"]=="completed" and s["handed_over"], s
assert s["source_host"]=="host1" and s["dest_host"]=="host2", s
d=s["disks"]
assert len(d)==1 and d[0]["lockspace"]==sys.argv[2] and d[0]["resource"]==sys.argv[3], s
assert d[0]["epoch"]>d[0]["from_epoch"], s' "$summary" "$UUID" "$RES1" ||
	die "unexpected summary: $summary"
wait_for 10 "vm1 running on host2" status_is vm1-in running || die "host2: $(qstatus vm1-in)"
status_is vm1 postmigrate || die "host1's vm1 is $(qstatus vm1), not postmigrate"
read -r q h e tag <<<"$(locks_of "$RES1")"
[[ $q == granted && $h == host2 && $(locks_of "$RES1" | wc -l) == 1 ]] ||
	die "$RES1 is not host2's alone: $(locks_of "$RES1")"
((e > e0)) || die "$RES1's epoch did not advance: $e0 -> $e"
hexec 3 "$VMFSCTL" locks --lockspace "$UUID" "$RES1" >&2 || true
set +e
wait "$prep1"; rc=$?
set -e
[[ $rc == 0 ]] || fail_with "$T/prep-vm1.out" "prepare exited $rc after the handoff"
out=$(qio vm1-in 'read -P 0x5a 0 64k')
[[ $out == *"read 65536/65536"* ]] || die "host2 does not read what host1's QEMU wrote: $out"
out=$(qio vm1-in 'write -P 0xa5 64k 64k')
[[ $out == *"wrote 65536/65536"* ]] || die "host2's QEMU cannot write after the migration: $out"
hexec 2 python3 -c '
import sys
with open(sys.argv[1], "rb") as f:
    a = f.read(65536); b = f.read(65536)
assert a == b"\x5a" * 65536 and b == b"\xa5" * 65536, "image content"' "$T/m2/vm1.img" ||
	die "vm1.img does not hold both QEMUs' writes"
grep -iE 'error|fail' "$T/vm1.log" "$T/vm1-in.log" >&2 && die "a QEMU complained (above)"
info "vm1 migrated; $RES1 epoch $e0 -> $e, tag $tag"

echo "# [${SECONDS}s] 3. vm2 on host1; nothing prepared: refused before starting"
guest 1 vm2 "$T/m1/vm2.img" || fail_with "$T/vm2.log" "QEMU vm2 did not start on host1"
wait_for 60 "vm2 to boot" grep -q 'vmfs-guest: up' "$T/vm2.serial"
before=$(locks_of "$RES2")
[[ $before == "granted host1 "* ]] || die "$RES2 is not host1's: $before"
# check_vm2_home WHAT: vm2 runs on host1, its lock unchanged, and it writes
check_vm2_home() {
	wait_for 10 "vm2 running on host1 ($1)" status_is vm2 running || die "$1: vm2 is $(qstatus vm2) on host1"
	[[ $(locks_of "$RES2") == "$before" ]] || die "$1: $RES2 changed: $(locks_of "$RES2"), was $before"
	out=$(qio vm2 'write -P 0x33 0 4k')
	[[ $out == *"wrote 4096/4096"* ]] || die "$1: vm2 cannot write on host1: $out"
}
# without a prepare the destination QEMU cannot even open the image
if guest 2 vm2-in "$T/m2/vm2.img" -incoming defer; then
	die "host2's QEMU opened vm2's image without a prepare"
fi
grep -q 'Device or resource busy' "$T/vm2-in.log" || fail_with "$T/vm2-in.log" "unprepared open"
set +e
migrate vm2 vm2 vm2-in 4445; rc=$?
set -e
[[ $rc == 1 ]] || die "migration without prepare: exit $rc ($(cat "$T/mig-vm2-4445.err"))"
grep -q 'nothing is prepared for vm2' "$T/mig-vm2-4445.err" || fail_with "$T/mig-vm2-4445.err" "refusal"
check_vm2_home "nothing prepared"

echo "# [${SECONDS}s] 4. the destination QEMU killed during the migration"
prepare vm2 "$T/m2/vm2.img"
prep2=$prep
guest 2 vm2-in "$T/m2/vm2.img" -incoming defer || fail_with "$T/vm2-in.log" "destination QEMU vm2-in"
migrate vm2 vm2 vm2-in 4446 --max-bandwidth 1M --progress 0.5 &
mig=$!
wait_for 30 "the migration of vm2 to be active" grep -q 'vm2: active' "$T/mig-vm2-4446.out"
kill -KILL "$(cat "$T/vm2-in.pid")"
set +e
wait "$mig"; rc=$?
set -e
cat "$T/mig-vm2-4446.err"
[[ $rc == 1 ]] || fail_with "$T/mig-vm2-4446.out" "migration to a killed destination: exit $rc"
grep -Eq 'destination QEMU went away|migration failed' "$T/mig-vm2-4446.err" ||
	fail_with "$T/mig-vm2-4446.err" "error message"
grep -q 'nothing of vm2 stays prepared' "$T/mig-vm2-4446.out" || fail_with "$T/mig-vm2-4446.out" "abort"
set +e
wait "$prep2"; rc=$?
set -e
[[ $rc == 3 ]] || fail_with "$T/prep-vm2.out" "prepare exited $rc after the failed migration (expected 3)"
check_vm2_home "destination killed"
! locks_of "$RES2" | grep -q '^waiting' || die "a claim is left on $RES2: $(locks_of "$RES2")"

echo "# [${SECONDS}s] 4b. the destination QEMU quits right after the handoff: the disk comes back"
# vmfs-migrate qemu runs on host1, the source: it arms vm2's return claim
# itself (query-block) and drops it at the end
prepare vm2 "$T/m2/vm2.img"
prep3=$prep
guest 2 vm2-in "$T/m2/vm2.img" -incoming defer || fail_with "$T/vm2-in.log" "destination QEMU vm2-in"
set +e
MIG_HOST=1 MIG_ENV=VMFS_MIGRATE_TEST_FAULT=dest-quit-after-handoff migrate vm2 vm2 vm2-in 4447 --json
rc=$?
set -e
cat "$T/mig-vm2-4447.err"
grep -q "return claims of vm2 armed on 1 image(s) here" "$T/mig-vm2-4447.err" ||
	die "vmfs-migrate qemu on the source armed no return claim"
[[ $rc == 1 ]] || fail_with "$T/mig-vm2-4447.out" "give-back after the handoff: exit $rc, not 1"
python3 -c '
import json,sys
s=json.loads(sys.argv[1])
assert s["result"]=="given-back" and s["handed_over"], s' "$(cat "$T/mig-vm2-4447.out")" ||
	die "unexpected summary: $(cat "$T/mig-vm2-4447.out")"
grep -q "the disks of vm2 are back on host1" "$T/mig-vm2-4447.err" || die "no give-back said"
wait "$prep3" || true
# the lock is host1's again (the return claim, a new epoch), nothing waits,
# and host1's QEMU runs and writes through the handle the handoff fenced
wait_for 10 "vm2 running on host1 (given back)" status_is vm2 running || die "vm2 is $(qstatus vm2) on host1"
read -r q h e2 tag <<<"$(locks_of "$RES2")"
[[ $q == granted && $h == host1 && $(locks_of "$RES2" | wc -l) == 1 ]] ||
	die "$RES2 is not host1's alone after the give-back: $(locks_of "$RES2")"
out=$(qio vm2 'write -P 0x44 8k 4k')
[[ $out == *"wrote 4096/4096"* ]] || die "vm2 cannot write on host1 after the give-back: $out"
state=$(hexec 1 "$MIG" return state "$T/m1/vm2.img" 2>&1) || true
[[ $state != *"armed"* && $state != *"waiting"* && $state != *"returned"* ]] ||
	die "vm2's return claim is still there after vmfs-migrate qemu ended: $state"
before=$(locks_of "$RES2")
check_vm2_home "given back"
info "given back: $RES2 granted to host1 again (epoch $e2, $tag)"

echo "# [${SECONDS}s] 5. the source QEMU quits; host2's guest keeps its lock"
pid=$(cat "$T/vm1.pid")
qmp vm1 quit >/dev/null || true
wait_for 20 "host1's vm1 QEMU to exit" sh -c "! kill -0 $pid 2>/dev/null"
[[ $(locks_of "$RES1") == "granted host2 $e "* ]] || die "$RES1 after host1's QEMU quit: $(locks_of "$RES1")"
out=$(qio vm1-in 'write -P 0x77 128k 4k')
[[ $out == *"wrote 4096/4096"* ]] || die "host2's vm1 cannot write after host1's QEMU quit: $out"
for n in vm1-in vm2; do qmp "$n" quit >/dev/null || true; done
echo "PASS: $TEST_NAME"
