#!/bin/bash
# Cluster-wide POSIX record locks and flock (fs/plock.c) on a 3-host
# cluster, driven by plock-probe (one lock table per process, as one
# vmfs-mount has): byte locks conflict exactly across hosts, read locks
# share, long ranges lock the whole file, F_SETLKW waits for the holder
# (and an interrupted wait ends with EINTR),
# flock SH/EX, owners on one host conflict, a killed holder's locks go,
# QEMU's image-locking pattern, and EIO without a lease.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools

# PLOCK_PROBE: another build of the probe (e.g. one with a deliberate bug,
# to see this test fail).
PROBE=${PLOCK_PROBE:-${VMFS_BUILDDIR:-$VMFS_SRCDIR}/tests/fs/plock-probe}
[[ -x $PROBE ]] || die "plock-probe is not built ($PROBE)"
cluster_up 3

LS=0f0e0d0c-0b0a-4909-8807-060504030201	# a volume UUID: the lockspace
INO=42

# probe H 'CMDS': run the probe on host H; fails the test on a mismatch.
probe() {
	local h=$1
	shift
	hexec "$h" "$PROBE" "$LS" "$INO" "$@" || die "probe on host$h failed: $*"
}
# bgprobe NAME H 'CMDS': in the background, output in $T/NAME.out.
bgprobe() {
	local name=$1 h=$2
	shift 2
	hexec "$h" "$PROBE" "$LS" "$INO" "$@" >"$T/$name.out" 2>"$T/$name.err" &
	eval "pid_$name=$!"
}
# bgwait NAME: wait for a background probe; fail if it failed.
bgwait() {
	local p
	p=$(eval echo "\$pid_$1")
	wait "$p" || { cat "$T/$1.out" "$T/$1.err" >&2; die "background probe $1 failed"; }
}
# ts NAME 'CMD-TEXT': wall-clock ms at which CMD-TEXT completed in NAME.out.
ts() { grep -F "] $2 ->" "$T/$1.out" | head -1 | sed 's/^\[\([0-9]*\)\].*/\1/'; }
waitfile() { wait_for 30 "$1" test -e "$T/$1"; }

echo "# 1. a write lock on byte 100 (host1): host2 refused on 100, fine on 101"
bgprobe a 1 "w 100 100 =ok; touch $T/a1; waitfile $T/go1"
waitfile a1
probe 2 'w 100 100 =EAGAIN; r 100 100 =EAGAIN; w 101 101 =ok; g w 100 100 =wrlck 100 100 pid 0; g r 102 102 =unlck'
echo "# 1b. the whole file (write or read) conflicts with a byte lock elsewhere"
probe 3 'w 0 eof =EAGAIN; r 0 eof =EAGAIN; w 5000 9000 =EAGAIN; g w 0 eof =wrlck 0 eof'
touch "$T/go1"
bgwait a

echo "# 2. read locks share across hosts; a writer is refused; getlk names a reader"
bgprobe a 1 "r 100 110 =ok; r 0 eof =ok; touch $T/a2; waitfile $T/go2"
waitfile a2
probe 2 'r 100 100 =ok; r 0 eof =ok; w 105 105 =EAGAIN; w 0 eof =EAGAIN; g w 0 10 =rdlck'
probe 3 'r 110 110 =ok; w 111 111 =EAGAIN'
touch "$T/go2"
bgwait a

echo "# 3. a whole-file write lock (host1) refuses any byte elsewhere"
bgprobe a 1 "w 0 eof =ok; touch $T/a3; waitfile $T/go3"
waitfile a3
probe 2 'r 7 7 =EAGAIN; w 123456 123456 =EAGAIN; fx =ok; fu =ok'
touch "$T/go3"
bgwait a

echo "# 4. F_SETLKW on host2 waits until host1 unlocks"
bgprobe a 1 "w 100 100 =ok; touch $T/a4; waitfile $T/b4; sleep 2; u 100 100 =ok"
waitfile a4
bgprobe b 2 "touch $T/b4; W 100 100 =ok; g w 100 100 =unlck"
bgwait b
bgwait a
before=$(ts a 'sleep 2')
granted=$(ts b 'W 100 100')
[[ -n $before && -n $granted ]] || die "timestamps missing: $(cat "$T/a.out" "$T/b.out")"
((granted >= before)) || die "F_SETLKW granted at $granted, before host1 unlocked at $before"
echo "#    host1 unlocked after $before, host2 granted at $granted"
# And a range F_SETLKW waits without holding part of its range: host3
# waits for [100,101] while host1 holds 101; host2 can take 100 meanwhile.
bgprobe a 1 "w 101 101 =ok; touch $T/a4b; waitfile $T/go4b; u 101 101 =ok"
waitfile a4b
bgprobe c 3 "W 100 101 =ok"
wait_for 30 "host3's request to queue" sh -c \
	"'$VC' exec 1 '$VMFSCTL' locks --json --lockspace $LS | grep -q '\"waiting\"'"
probe 2 "w 100 100 =ok; u 100 100 =ok"
touch "$T/go4b"
bgwait c
bgwait a

echo "# 4c. an interrupted F_SETLKW / blocking flock (FUSE INTERRUPT) fails with EINTR, nothing left queued"
bgprobe a 1 "w 100 100 =ok; fx =ok; touch $T/a4c; waitfile $T/go4c"
waitfile a4c
probe 2 'intr 0.5; W 100 100 =EINTR; intr 0.5; fX =EINTR; intr 0.5; R 90 200 =EINTR; g w 100 100 =wrlck 100 100 pid 0'
if hexec 1 "$VMFSCTL" locks --json --lockspace "$LS" | grep -q '"waiting"'; then
	die "an interrupted request stayed queued: $(hexec 1 "$VMFSCTL" locks --lockspace "$LS")"
fi
touch "$T/go4c"
bgwait a
probe 2 'W 100 100 =ok; fX =ok; u 100 100 =ok; fu =ok'

echo "# 5. flock: SH shared across hosts, EX exclusive, blocking EX waits"
bgprobe a 1 "fs =ok; touch $T/a5; waitfile $T/go5b; fu =ok"
waitfile a5
probe 2 'fs =ok; fx =EAGAIN; fu =ok'
probe 3 'fx =EAGAIN; fs =ok'
bgprobe b 2 "fX =ok; fu =ok"
sleep 1
[[ ! -s $T/b.out ]] || die "blocking flock EX granted while host1 holds SH: $(cat "$T/b.out")"
touch "$T/go5b"
bgwait b
bgwait a
grep -q 'fX -> ok' "$T/b.out" || die "blocking flock EX: $(cat "$T/b.out")"

echo "# 6. two owners on one host conflict (same table, and two processes)"
probe 1 'owner 1; w 300 300 =ok; r 301 301 =ok; owner 2; w 300 300 =EAGAIN; r 301 301 =ok; w 301 301 =EAGAIN; g w 300 300 =wrlck 300 300; owner 1; w 301 301 =EAGAIN; release; owner 2; w 300 301 =ok'
bgprobe a 1 "w 400 400 =ok; touch $T/a6; waitfile $T/go6"
waitfile a6
probe 1 'w 400 400 =EAGAIN; w 401 401 =ok'
touch "$T/go6"
bgwait a

echo "# 7. one owner: relocking converts, part of a long range stays locked until all of it is unlocked"
probe 1 "r 500 500 =ok; w 500 500 =ok; r 500 500 =ok; w 0 999 =ok; u 0 499 =ok; touch $T/a7; waitfile $T/go7; u 500 999 =ok; touch $T/a7b; waitfile $T/go7b" &
p7=$!
waitfile a7
probe 2 'w 700 700 =EAGAIN; w 100 100 =EAGAIN'
touch "$T/go7"
waitfile a7b
probe 2 'w 100 100 =ok; w 700 700 =ok'
touch "$T/go7b"
wait "$p7" || die "step 7 host1 probe failed"

echo "# 8. QEMU-like: read 100,101 and write 201 held; another host cannot write 100"
bgprobe a 1 "r 100 100 =ok; r 101 101 =ok; w 201 201 =ok; fs =ok; touch $T/a8; waitfile $T/go8"
waitfile a8
probe 2 'w 100 100 =EAGAIN; r 100 100 =ok; r 101 101 =ok; w 201 201 =EAGAIN; r 201 201 =EAGAIN; g r 201 201 =wrlck 201 201; w 202 202 =ok'
touch "$T/go8"
bgwait a

echo "# 9. a killed holder's locks go away"
bgprobe k 1 "pidfile $T/k.pid; w 600 600 =ok; fx =ok; touch $T/a9; hold"
waitfile a9
probe 2 'w 600 600 =EAGAIN; fs =EAGAIN'
kill -KILL "$(cat "$T/k.pid")"
wait "$pid_k" 2>/dev/null || true
probe 2 'W 600 600 =ok; fS =ok'

echo "# 10. without a lease: a waiting F_SETLKW and new requests fail with EIO; unlocks work"
bgprobe a 1 "pidfile $T/a.pid; w 700 700 =ok; touch $T/a10; hold"
waitfile a10
bgprobe d 3 "w 900 900 =ok; r 901 901 =ok; fx =ok; touch $T/d10; waitfile $T/go10; u 900 900 =ok; u 0 eof =ok; fu =ok; w 1 1 =EIO"
waitfile d10
bgprobe c 3 "touch $T/c10; W 700 700 =EIO"
waitfile c10
sleep 1
"$VC" isolate 3
wait_for 30 "host3 to lose quorum" host_sees 3 1 No
bgwait c
touch "$T/go10"
bgwait d
probe 3 'w 800 800 =EIO; fs =EIO; u 800 800 =ok'
kill -KILL "$(cat "$T/a.pid")"
wait "$pid_a" 2>/dev/null || true
echo "PASS"
