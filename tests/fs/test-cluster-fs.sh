#!/bin/bash
# vmfs-mount on a 3-host cluster sharing one disk: metadata changes made on
# one host are visible on the others at once; concurrent creates in one
# directory lose nothing; per-file open locks (exclusive, read-shared,
# multi-writer) and POSIX/flock/OFD locks work across hosts; a killed host
# is recovered (fsync'd files survive, its open files are freed, fsck is
# clean); an isolated host loses its lease, fails with EIO and stops
# writing the disk while the others go on.
#
# Each numbered step reports "FAIL: step N: ..." and the test goes on with
# the next step (a step that cannot start without an earlier one says so);
# the exit status is 1 if any step failed.  The mounts run in the
# foreground with their log in $T/mount-hI.log (kept when the test fails);
# a command that hangs is killed after a timeout and the hung mount's
# threads are dumped with gdb into $T/hang-*.txt.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
need_vmfs
TMO=${VMFS_TEST_TIMEOUT:-60}	# seconds for one command on one host
export PY T

# ------------------------------------------------------------ the helper
# h.py PATH OPENMODE OP...: open PATH (r, w, rw, c = create+write; "-" for
# no open) and run OPs in order, printing one line each; errors print the
# errno name instead of raising (exit 0), so the shell can compare words.
cat >"$T/h.py" <<'PYEOF'
import errno, fcntl, os, signal, struct, sys, time

def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def flk(kind, start, length):
    t = {"r": fcntl.F_RDLCK, "w": fcntl.F_WRLCK, "u": fcntl.F_UNLCK}[kind]
    return struct.pack("hhqqi", t, os.SEEK_SET, start, length, 0)

def tname(t):
    return {fcntl.F_RDLCK: "RDLCK", fcntl.F_WRLCK: "WRLCK", fcntl.F_UNLCK: "UNLCK"}.get(t, str(t))

def waitfile(p, secs=120):
    end = time.time() + secs
    while not os.path.exists(p):
        if time.time() > end:
            return False
        time.sleep(0.05)
    return True

path, mode, ops = sys.argv[1], sys.argv[2], sys.argv[3:]
fd = -1
if mode != "-":
    flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR,
             "c": os.O_WRONLY | os.O_CREAT | os.O_TRUNC}[mode]
    try:
        fd = os.open(path, flags, 0o644)
        print("open OK", flush=True)
    except OSError as e:
        print("open", ename(e), flush=True)
        sys.exit(0)
for op in ops:
    a = op.split(":")
    try:
        if a[0] in ("setlk", "ofdset"):
            cmd = fcntl.F_SETLK if a[0] == "setlk" else fcntl.F_OFD_SETLK
            fcntl.fcntl(fd, cmd, flk(a[1], int(a[2]), int(a[3])))
            print(a[0], a[2], "OK", flush=True)
        elif a[0] in ("getlk", "ofdget"):
            cmd = fcntl.F_GETLK if a[0] == "getlk" else fcntl.F_OFD_GETLK
            r = fcntl.fcntl(fd, cmd, flk(a[1], int(a[2]), int(a[3])))
            print(a[0], a[2], tname(struct.unpack("hhqqi", r)[0]), flush=True)
        elif a[0] == "flock":
            fcntl.flock(fd, (fcntl.LOCK_EX if a[1] == "ex" else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            print("flock OK", flush=True)
        elif a[0] in ("flockw", "setlkw"):	# blocking, interrupted by SIGALRM after 1 s
            class Alarm(Exception):
                pass
            def on_alarm(sig, frame):
                raise Alarm()
            signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(1)
            try:
                if a[0] == "flockw":
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    fcntl.fcntl(fd, fcntl.F_SETLKW, flk(a[1], int(a[2]), int(a[3])))
                print(a[0], "OK", flush=True)
            except Alarm:
                print(a[0], "EINTR", flush=True)
            signal.alarm(0)
        elif a[0] == "pwrite":	# pwrite:OFF:BYTE:LEN
            n = os.pwrite(fd, bytes([int(a[2], 0)]) * int(a[3]), int(a[1]))
            print("pwrite", a[1], "OK" if n == int(a[3]) else "SHORT", flush=True)
        elif a[0] == "check":	# check:OFF:BYTE:LEN
            d = os.pread(fd, int(a[3]), int(a[1]))
            ok = d == bytes([int(a[2], 0)]) * int(a[3])
            print("check", a[1], "OK" if ok else "BAD(%d bytes, first %r)" % (len(d), d[:8]), flush=True)
        elif a[0] == "write":	# write:TEXT (at the current offset)
            os.write(fd, a[1].encode())
            print("write OK", flush=True)
        elif a[0] == "fsync":
            os.fsync(fd)
            print("fsync OK", flush=True)
        elif a[0] == "setxattr":
            os.setxattr(path, a[1], a[2].encode())
            print("setxattr OK", flush=True)
        elif a[0] == "getxattr":
            print("getxattr", os.getxattr(path, a[1]).decode(), flush=True)
        elif a[0] == "rmxattr":
            os.removexattr(path, a[1])
            print("rmxattr OK", flush=True)
        elif a[0] == "listxattr":
            print("listxattr", ",".join(sorted(os.listxattr(path))), flush=True)
        elif a[0] == "utime":	# utime:ATIME:MTIME (seconds)
            os.utime(path, (int(a[1]), int(a[2])))
            print("utime OK", flush=True)
        elif a[0] == "stat":
            st = os.stat(path)
            print("stat OK", flush=True)
        elif a[0] == "sig":	# sig:FILE: create FILE with "pid N"
            with open(a[1] + ".tmp", "w") as f:
                f.write("pid %d\n" % os.getpid())
            os.rename(a[1] + ".tmp", a[1])
        elif a[0] == "wait":	# wait:FILE
            if not waitfile(a[1]):
                print("wait TIMEOUT", a[1], flush=True)
                sys.exit(1)
        elif a[0] == "hold":	# until killed
            while True:
                signal.pause()
        else:
            print("bad op", op, flush=True)
            sys.exit(2)
    except OSError as e:
        print(" ".join([a[0]] + a[2:3] + [ename(e)]), flush=True)
PYEOF

# work.py DIR LOG: create DIR/f<i> with known content, fsync the file and
# the directory, then append i to LOG (outside the volume): LOG's last line
# is the last file that must survive a crash.  Until killed.
cat >"$T/work.py" <<'PYEOF'
import errno, os, sys
d, log = sys.argv[1], sys.argv[2]
def content(i):
    return (("file %d;" % i) * (1 + i % 700)).encode()
if sys.argv[3:] == ["verify"]:	# work.py DIR LAST verify
    bad = 0
    for i in range(1, int(log) + 1):
        try:
            with open("%s/f%d" % (d, i), "rb") as f:
                got = f.read()
        except OSError as e:
            print("f%d: %s" % (i, errno.errorcode.get(e.errno, e.errno)))
            bad += 1
            continue
        if got != content(i):
            print("f%d: wrong content (%d bytes, %d expected)" % (i, len(got), len(content(i))))
            bad += 1
    print("verified 1..%s" % log if not bad else "%d bad" % bad)
    sys.exit(0)
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
lf = open(log, "a")
i = 0
while True:
    i += 1
    fd = os.open("%s/f%d" % (d, i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, content(i))
    os.fsync(fd)
    os.close(fd)
    try:
        os.fsync(dfd)
    except OSError:
        pass	# a directory fsync is not required: the file's fsync commits the journal
    lf.write("%d\n" % i)
    lf.flush()
PYEOF


# ------------------------------------------------------------- plumbing
FAILED=()
STEP=0
# VMFS_TEST_STEPS="2 4": run only those steps (after step 1), to iterate.
want_step() { [[ -z ${VMFS_TEST_STEPS:-} || " $VMFS_TEST_STEPS " == *" $1 "* ]]; }
bad() {
	echo "FAIL: $TEST_NAME: step $STEP: $*" >&2
	FAILED+=("step $STEP: $*")
}
step() {
	local i
	STEP=$1
	shift
	echo "# $STEP. $* ($(date +%T))"
	for i in 1 2 3; do
		LOGPOS[i]=$({ wc -l <"$T/mount-h$i.log"; } 2>/dev/null || echo 0)
	done
}
# step_errors: lines a mount logged at level error since the step began
# (a mount that detects an inconsistency logs it and goes on: the step's
# own checks may not notice).
LOGPOS=(0 0 0 0)
step_errors() {
	local i lines
	for i in 1 2 3; do
		lines=$(tail -n +"$((LOGPOS[i] + 1))" "$T/mount-h$i.log" 2>/dev/null | grep ' error: ' |
			grep -v 'not in a quorate partition' | head -n 5) || true
		[[ -z $lines ]] || bad "host$i's mount logged errors: $(tr '\n' '|' <<<"$lines")"
	done
}

# vol_uuid: the volume's UUID, which names its lockspace.
vol_uuid() {
	"$VMFSCTL" volume "$DISK" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'
}

# hang_report I WHAT: a command on host I hung: dump its mount's threads.
hang_report() {
	local i=$1 pid out
	pid=$(cat "$T/mount-h$i.pid" 2>/dev/null) || return 0
	out=$T/hang-step$STEP-h$i.txt
	[[ ! -e $out ]] || return 0	# once per step and host
	if command -v gdb >/dev/null && [[ -d /proc/$pid ]]; then
		timeout 60 gdb -p "$pid" -batch -ex "thread apply all bt" >"$out" 2>&1 || true
		echo "# host$i's vmfs-mount (pid $pid) threads: $out" >&2
	fi
	echo "---- last lines of host$i's mount log:" >&2
	tail -n 20 "$T/mount-h$i.log" >&2 || true
	# the lock table names who holds what and who waits (once per step)
	out=$T/hang-step$STEP-locks.txt
	if [[ ! -e $out ]]; then
		hexec "$i" timeout 20 "$VMFSCTL" locks --lockspace "$(vol_uuid)" >"$out" 2>&1 || true
		echo "# the lock table at the hang: $out" >&2
	fi
}

# on I SCRIPT: run SCRIPT with bash in host I, M = host I's mount point,
# H = the helper, within TMO seconds (a hang is reported, exit status 124).
on() {
	local i=$1 rc=0
	shift
	hexec "$i" timeout -k 5 "$TMO" env M="$T/m$i" H="$PY $T/h.py" I="$i" bash -c "$*" || rc=$?
	if ((rc == 124 || rc == 137)); then
		echo "# host$i: timed out after ${TMO}s: $*" >&2
		hang_report "$i" "$*"
		rc=124
	fi
	return $rc
}

# expect_on "HOSTS" WHAT WANT SCRIPT: SCRIPT prints WANT on every host.
expect_on() {
	local hosts=$1 what=$2 want=$3 script=$4 h got
	for h in $hosts; do
		got=$(on "$h" "$script" 2>&1) || true
		if [[ $got != "$want" ]]; then
			bad "$what: host$h got '$got', expected '$want'"
			return 1
		fi
	done
}

# do_on I WHAT SCRIPT: SCRIPT must succeed on host I.  Traced, with the
# time, in $T/trace (to match the mount logs).
do_on() {
	local out
	echo "$(date +%T.%N | cut -c1-12) step $STEP host$1: $2: $3" >>"$T/trace"
	out=$(on "$1" "$3" 2>&1) || { bad "$2 on host$1 failed: $out"; return 1; }
	[[ -z $out ]] || echo "$out"
}

is_mounted() { hexec "$1" grep -q " $T/m$1 fuse.vmfs " /proc/self/mounts; }

# mount_on I: start vmfs-mount -f -o cluster in host I (log: mount-hI.log).
mount_on() {
	local i=$1
	hexec "$i" mkdir -p "$T/m$i"
	echo "==== mount at $(date +%T.%N)" >>"$T/mount-h$i.log"
	hexec "$i" bash -c 'echo $$ >"$1"; exec "$2" -f -o cluster "$3" "$4"' _ \
		"$T/mount-h$i.pid" "$MOUNT" "$DISK" "$T/m$i" >>"$T/mount-h$i.log" 2>&1 &
	wait_for 60 "host$i's mount to appear" is_mounted "$i" || {
		tail -n 30 "$T/mount-h$i.log" >&2
		return 1
	}
}

# umount_on I: unmount host I's volume and wait for its vmfs-mount to exit.
umount_on() {
	local i=$1 pid
	pid=$(cat "$T/mount-h$i.pid" 2>/dev/null) || true
	hexec "$i" timeout 60 fusermount3 -u "$T/m$i" || return 1
	[[ -z $pid ]] || wait_for 60 "host$i's vmfs-mount to exit" sh -c "! kill -0 $pid 2>/dev/null"
}

# A background process holding a file, started with h.py ... sig:FILE hold:
# its pid once it is ready, or nothing when it printed an error.
# holder I NAME PATH OPENMODE OP...: start; waits until it is ready or has
# given up; prints its output.
holder() {
	local i=$1 name=$2 path=$3 mode=$4
	shift 4
	rm -f "$T/sig-$name"
	hexec "$i" "$PY" "$T/h.py" "$path" "$mode" "$@" "sig:$T/sig-$name" hold \
		>"$T/out-$name" 2>&1 &
	wait_for 30 "holder $name to start" sh -c "[ -e '$T/sig-$name' ] || \
		grep -qv ' OK\$' '$T/out-$name' 2>/dev/null" || true
	cat "$T/out-$name"
}
holder_pid() { sed -n 's/^pid //p' "$T/sig-$1" 2>/dev/null; }
holder_stop() {
	local pid
	pid=$(holder_pid "$1")
	[[ -z $pid ]] || kill "$pid" 2>/dev/null || true
	rm -f "$T/sig-$1"
}

# slot_hb SLOT: "STATE COUNTER" of a host slot's heartbeat on the disk
# (vmfsctl hosts samples twice, 1.5 periods apart, and shows the second).
# A survivor that recovers the slot writes it once more (FREE, counter+1).
slot_hb() {
	"$VMFSCTL" hosts "$DISK" --json | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["slots"][int(sys.argv[1])]
print(s["state"], s["counter"])' "$1"
}
# slot_of I: host I's slot, from its mount log ("claimed host slot N").
slot_of() { sed -n 's/.*claimed host slot \([0-9]*\).*/\1/p' "$T/mount-h$1.log" | tail -n 1; }

# plocks_of PATH: the POSIX-lock resources of PATH's inode in host1's table
# ("p<ino>", "p<ino>.<byte>", "f<ino>"), with holders.
plocks_of() {
	local ino uuid
	ino=$(hexec 1 stat -c %i "$1")
	uuid=$(vol_uuid)
	hexec 1 "$VMFSCTL" locks --json --lockspace "$uuid" | "$PY" -c '
import json, sys
out = []
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        n = r["name"]
        if n in ("p" + sys.argv[1], "f" + sys.argv[1]) or n.startswith("p" + sys.argv[1] + "."):
            out.append("%s: %s" % (n, ", ".join("%s %s %s" % (l.get("host"), l.get("queue"),
                        l.get("mode") or l.get("rqmode")) for l in r["locks"])))
print("; ".join(out) or "none")' "$ino"
}

# ----------------------------------------------------------------- steps
cluster_up 3
info "disk $DISK, private dir $T"

step 1 "mkfs, mount on 3 hosts"
# 64 host slots: resource groups of 32 MiB (128 of them), so step 3b's
# files span more groups than one operation locks at once.
"$MKFS" -q --max-hosts 64 "$DISK" || die "vmfs-mkfs $DISK failed"
for i in 1 2 3; do
	mount_on "$i" || die "step 1: vmfs-mount -o cluster on host$i failed (log above)"
done
for i in 1 2 3; do
	grep -qi 'single-host' "$T/mount-h$i.log" && die "step 1: host$i mounted single-host"
done
hexec 1 "$VMFSCTL" hosts "$DISK" >&2 || true

step2() {
	local big=$T/big
	head -c 300000 /dev/urandom >"$big"
	do_on 1 "mkdir" 'mkdir $M/s2 $M/s2/a $M/s2/b' || return 1
	# create
	do_on 1 "create" ': > $M/s2/f' || return 1
	expect_on "2 3" "create on host1" "0" 'stat -c %s $M/s2/f' || return 1
	# write + fsync (inline and block-mapped content)
	do_on 2 "write+fsync" 'printf "hello from host2" | dd of=$M/s2/f conv=fsync,notrunc status=none' || return 1
	expect_on "1 3" "write+fsync on host2" "hello from host2" 'cat $M/s2/f' || return 1
	do_on 1 "big write" 'dd if='"$big"' of=$M/s2/big bs=64k conv=fsync status=none' || return 1
	expect_on "2 3" "300000-byte write on host1" "same" 'cmp '"$big"' $M/s2/big && echo same' || return 1
	# truncate: shrink, then grow (zeros)
	do_on 3 "truncate" 'truncate -s 5000 $M/s2/big' || return 1
	expect_on "1 2" "truncate to 5000 on host3" "5000 same" \
		'echo $(stat -c %s $M/s2/big) $(cmp -n 5000 '"$big"' $M/s2/big && echo same)' || return 1
	do_on 2 "truncate up" 'truncate -s 1048576 $M/s2/big' || return 1
	expect_on "1 3" "truncate to 1 MiB on host2" "1048576 same zeros" \
		'echo $(stat -c %s $M/s2/big) $(cmp -n 5000 '"$big"' $M/s2/big && echo same) \
		$(tail -c +5001 $M/s2/big | cmp -s - <(head -c $((1048576 - 5000)) /dev/zero) && echo zeros)' ||
		return 1
	# rename across directories, replacing
	do_on 1 "files to rename" 'echo X > $M/s2/a/x && echo Y > $M/s2/b/y' || return 1
	expect_on "2" "files created on host1" "X Y" 'echo $(cat $M/s2/a/x $M/s2/b/y)' || return 1
	do_on 2 "rename a/x over b/y" 'mv -T $M/s2/a/x $M/s2/b/y' || return 1
	expect_on "1 3" "rename a/x over b/y on host2" "X gone" \
		'echo $(cat $M/s2/b/y) $([ -e $M/s2/a/x ] && echo present || echo gone)' || return 1
	expect_on "1 3" "directory listing after the rename" "a: | b: y" \
		'echo "a:" $(ls $M/s2/a) "| b:" $(ls $M/s2/b)' || return 1
	# unlink
	do_on 3 "unlink" 'rm $M/s2/b/y' || return 1
	expect_on "1 2" "unlink on host3" "gone" '[ -e $M/s2/b/y ] && echo present || echo gone' || return 1
	# mkdir / rmdir
	do_on 1 "mkdir" 'mkdir $M/s2/dd' || return 1
	expect_on "2 3" "mkdir on host1" "directory 2" 'stat -c "%F %h" $M/s2/dd' || return 1
	expect_on "2 3" "parent's link count after mkdir" "5" 'stat -c %h $M/s2' || return 1
	do_on 2 "rmdir" 'rmdir $M/s2/dd' || return 1
	expect_on "1 3" "rmdir on host2" "gone 4" \
		'echo $([ -e $M/s2/dd ] && echo present || echo gone) $(stat -c %h $M/s2)' || return 1
	# hard link
	do_on 2 "link" 'ln $M/s2/f $M/s2/hl' || return 1
	expect_on "1 3" "link on host2" "2 2 same hello from host2" \
		'echo $(stat -c %h $M/s2/f) $(stat -c %h $M/s2/hl) \
		$([ $(stat -c %i $M/s2/f) = $(stat -c %i $M/s2/hl) ] && echo same) $(cat $M/s2/hl)' || return 1
	# symlink / readlink
	do_on 3 "symlink" 'ln -s ../some/where $M/s2/sl' || return 1
	expect_on "1 2" "symlink on host3" "../some/where symbolic link" \
		'echo $(readlink $M/s2/sl) $(stat -c %F $M/s2/sl)' || return 1
	# chmod, chown, utimens
	do_on 1 "chmod" 'chmod 640 $M/s2/f' || return 1
	expect_on "2 3" "chmod 640 on host1" "640" 'stat -c %a $M/s2/f' || return 1
	do_on 2 "chown" 'chown 1234:5678 $M/s2/f' || return 1
	expect_on "1 3" "chown 1234:5678 on host2" "1234:5678" 'stat -c %u:%g $M/s2/f' || return 1
	do_on 3 "utimens" '$H $M/s2/f - utime:981173106:981176706' || return 1
	expect_on "1 2" "utimens on host3" "981173106 981176706" 'stat -c "%X %Y" $M/s2/f' || return 1
	# user.* xattrs: set, replace, list, remove
	do_on 1 "setxattr" '$H $M/s2/f - setxattr:user.color:blue setxattr:user.size:big' || return 1
	expect_on "2 3" "setxattr on host1" "getxattr blue" '$H $M/s2/f - getxattr:user.color' || return 1
	do_on 2 "replace xattr" '$H $M/s2/f - setxattr:user.color:green' || return 1
	expect_on "1 3" "xattr replaced on host2" "getxattr green" '$H $M/s2/f - getxattr:user.color' || return 1
	do_on 3 "removexattr" '$H $M/s2/f - rmxattr:user.size' || return 1
	expect_on "1 2" "removexattr on host3" "listxattr user.color" '$H $M/s2/f - listxattr' || return 1
	# and the first host sees what the last one did, once more after all that
	expect_on "1 2 3" "final listing of s2" "a b big f hl sl" 'echo $(ls $M/s2)' || return 1
}
step 2 "metadata changes on one host are visible on the others at once"
if want_step 2; then step2 || true; step_errors; fi

step3() {
	local n=${VMFS_TEST_CREATES:-200} i pids=() rc=0 want got h
	do_on 1 "mkdir cc" 'mkdir $M/cc' || return 1
	for i in 1 2 3; do
		TMO=600 on "$i" 'for j in $(seq '"$n"'); do : > $M/cc/h$I-$j || exit 1; done' \
			>"$T/cc-$i.out" 2>&1 &
		pids+=($!)
	done
	for i in 1 2 3; do
		wait "${pids[i - 1]}" || { rc=1; bad "host$i's creates failed: $(tail -n 3 "$T/cc-$i.out")"; }
	done
	((rc == 0)) || return 1
	for h in 1 2 3; do
		for i in $(seq "$n"); do
			echo "h$h-$i"
		done
	done | sort >"$T/cc-want"
	for h in 1 2 3; do
		# ls -f: readdir's order and duplicates, as they come
		on "$h" 'ls -f $M/cc' >"$T/cc-raw-$h" 2>&1 || { bad "ls on host$h failed: $(cat "$T/cc-raw-$h")"; return 1; }
		grep -vx '\.\|\.\.' "$T/cc-raw-$h" | sort >"$T/cc-got-$h"
		got=$(uniq -d "$T/cc-got-$h" | head -5 | tr '\n' ' ')
		[[ -z $got ]] || { bad "host$h lists duplicate entries: $got"; rc=1; }
		if ! cmp -s "$T/cc-want" <(sort -u "$T/cc-got-$h"); then
			bad "host$h: entries lost or extra: $(diff "$T/cc-want" <(sort -u "$T/cc-got-$h") | grep '^[<>]' | head -5 | tr '\n' ' ')"
			rc=1
		fi
	done
	cmp -s "$T/cc-got-1" "$T/cc-got-2" && cmp -s "$T/cc-got-1" "$T/cc-got-3" ||
		{ bad "the hosts list different sets"; rc=1; }
	got=$(on 2 'stat -c %s $M/cc/h3-'"$n" 2>&1) || true
	[[ $got == 0 ]] || { bad "host2 cannot stat host3's last file: $got"; rc=1; }
	info "$((3 * n)) concurrent creates: every host lists $(wc -l <"$T/cc-got-1") entries"
	return $rc
}
step 3 "concurrent creates in one directory from all 3 hosts"
if want_step 3; then step3 || true; step_errors; fi

# groups_of I: the resource-group locks ("a<N>") host I holds, sorted.
groups_of() {
	local uuid
	uuid=$(vol_uuid)
	hexec 1 "$VMFSCTL" locks --json --lockspace "$uuid" | "$PY" -c '
import json, re, sys
out = []
for ls in json.load(sys.stdin)["lockspaces"]:
    for r in ls["resources"]:
        if re.fullmatch(r"a[0-9]+", r["name"]) and any(
                l.get("host") == "host" + sys.argv[1] and l.get("queue") == "granted"
                for l in r["locks"]):
            out.append(int(r["name"][1:]))
print(" ".join("a%d" % n for n in sorted(out)))' "$1"
}

step3b() {
	local rc=0 h pids=() g1 g2 g3 out
	do_on 1 "mkdir rg" 'mkdir $M/rg' || return 1
	# (a) the three hosts allocate at once, each in groups of its own
	for h in 1 2 3; do
		TMO=300 on "$h" 'head -c $((48 << 20)) /dev/urandom >$T/rg-src$I &&
			dd if=$T/rg-src$I of=$M/rg/w$I bs=1M conv=fsync status=none' >"$T/rg-$h.out" 2>&1 &
		pids+=($!)
	done
	for h in 1 2 3; do
		wait "${pids[h - 1]}" || { bad "host$h's 48 MiB write failed: $(tail -n 3 "$T/rg-$h.out")"; rc=1; }
	done
	((rc == 0)) || return 1
	g1=$(groups_of 1) g2=$(groups_of 2) g3=$(groups_of 3)
	info "group locks held: host1 {$g1} host2 {$g2} host3 {$g3}"
	[[ -n $g1 && -n $g2 && -n $g3 ]] || { bad "a host holds no group lock after writing"; rc=1; }
	out=$(printf '%s\n' $g1 $g2 $g3 | sort | uniq -d | tr '\n' ' ')
	[[ -z $out ]] || { bad "hosts writing at once share group locks: $out"; rc=1; }
	for h in 1 2 3; do
		expect_on "1 2 3" "host$h's file" "same" 'cmp $T/rg-src'"$h"' $M/rg/w'"$h"' && echo same' || rc=1
	done
	# (b) frees in groups other hosts hold: the locks move to whoever frees
	do_on 2 "truncate host1's file" 'truncate -s $(((1 << 20) + 5)) $M/rg/w1' || rc=1
	do_on 2 "remove host3's file" 'rm $M/rg/w3' || rc=1
	expect_on "1 3" "truncate and remove on host2" "1048581 gone" \
		'echo $(stat -c %s $M/rg/w1) $([ -e $M/rg/w3 ] && echo present || echo gone)' || rc=1
	expect_on "1 3" "the kept MiB of host1's file" "same" \
		'cmp -n $(((1 << 20) + 5)) $T/rg-src1 $M/rg/w1 && echo same' || rc=1
	# (c) a file over more groups than one lock set (alloc.h RG_NEED_MAX):
	# allocated, punched, truncated and removed in steps, on three hosts
	do_on 3 "fallocate 640 MiB" 'fallocate -l 640M $M/rg/big && echo tail >>$M/rg/big' || rc=1
	do_on 1 "punch 300 MiB" 'fallocate -p -o $((100 << 20)) -l $((300 << 20)) $M/rg/big' || rc=1
	do_on 2 "truncate to 50 MiB" 'truncate -s $((50 << 20)) $M/rg/big' || rc=1
	expect_on "1 3" "the big file after punch and truncate" "52428800" 'stat -c %s $M/rg/big' || rc=1
	do_on 3 "grow and remove" 'fallocate -l 500M $M/rg/big2 && rm $M/rg/big $M/rg/big2' || rc=1
	expect_on "1 2 3" "the listing of rg" "w1 w2" 'echo $(ls $M/rg)' || rc=1
	return $rc
}
step 3b "resource-group locks: hosts allocate apart, free anywhere, in steps"
if want_step 3b; then step3b || true; step_errors; fi

# Three hosts at once for 20 s: host1 writes files, host3 fallocates until
# the volume is full, host2 removes, truncates and punches whatever it
# finds; then it all goes.  Any block lost on the way (or freed twice)
# shows in step 6's fsck.
step3c() {
	local rc=0 h pids=() out
	do_on 1 "mkdir fill" 'mkdir $M/fill' || return 1
	TMO=90 on 1 'i=0; while [ $SECONDS -lt 20 ]; do i=$((i + 1))
		dd if=/dev/zero of=$M/fill/f$i bs=1M count=$((1 + i % 5)) conv=fsync status=none 2>/dev/null
		done; echo $i' >"$T/fill-1.out" 2>&1 &
	pids+=($!)
	TMO=90 on 2 'n=0; while [ $SECONDS -lt 20 ]; do for f in $(ls $M/fill | head -n 5); do
		case $((n % 3)) in
		0) rm -f $M/fill/$f 2>/dev/null ;;	# EBUSY while host1 writes it
		1) truncate -s 100000 $M/fill/$f 2>/dev/null ;;
		2) fallocate -p -o 0 -l 2M $M/fill/$f 2>/dev/null ;;
		esac; n=$((n + 1)); done; done; echo $n' >"$T/fill-2.out" 2>&1 &
	pids+=($!)
	TMO=90 on 3 'i=0; while [ $SECONDS -lt 20 ]; do i=$((i + 1))
		fallocate -l 40M $M/fill/g$i 2>/dev/null; done; echo $i' >"$T/fill-3.out" 2>&1 &
	pids+=($!)
	for h in 1 2 3; do
		wait "${pids[h - 1]}" || { bad "host$h's loop failed: $(tail -n 3 "$T/fill-$h.out")"; rc=1; }
	done
	info "in 20 s: host1 wrote $(cat "$T/fill-1.out") files, host2 changed $(cat "$T/fill-2.out"), host3 fallocated $(cat "$T/fill-3.out")"
	out=$(TMO=120 on 2 'rm -rf $M/fill && echo gone' 2>&1) || true
	[[ $out == gone ]] || { bad "host2: removing fill: $out"; rc=1; }
	return $rc
}
step 3c "three hosts allocate, fill the volume and free at once"
if want_step 3c; then step3c || true; step_errors; fi

# Small files (fs/pages.h): a VM's configuration and logs cost 4 KiB pages,
# not a 1 MiB block each; other hosts read them, grow one out of pages,
# truncate, punch, overwrite and remove them.  The same changes go to
# copies in $T (the model); step 6's fsck checks the pages' accounting.
step3d() {
	local rc=0 n out
	mkdir -p "$T/small"
	for n in $(seq 1 24); do
		head -c $((n * 9000 + n)) /dev/urandom >"$T/small/f$n"
	done
	do_on 1 "write 24 small files" 'mkdir $M/small && cp $T/small/f* $M/small/ && sync' || return 1
	out=$(on 1 'du -s -B1 $M/small | cut -f1' 2>&1) || true
	info "24 files of 9-216 KB (2.6 MB) take $out bytes"
	[[ $out =~ ^[0-9]+$ ]] && ((out < 4 << 20)) ||
		{ bad "24 small files take $out bytes (a 1 MiB block each?)"; rc=1; }
	expect_on "2 3" "the small files host1 wrote" "same" \
		'for n in $(seq 1 24); do cmp -s $T/small/f$n $M/small/f$n || echo "f$n differs"; done; echo same' || rc=1
	# host2 grows one past the pages into a block, host3 truncates and
	# extends one, host1 punches one, host3 overwrites the middle of one
	cat "$T/small/f5" "$T/small/f24" "$T/small/f24" >"$T/small/grown"
	do_on 2 "grow f5 out of pages" 'cat $T/small/f24 $T/small/f24 >>$M/small/f5' || rc=1
	cp "$T/small/grown" "$T/small/f5"
	do_on 3 "truncate f6, extend it" 'truncate -s 5000 $M/small/f6 && truncate -s 100000 $M/small/f6' || rc=1
	truncate -s 5000 "$T/small/f6" && truncate -s 100000 "$T/small/f6"
	do_on 1 "punch f7" 'fallocate -p -o 6000 -l 30000 $M/small/f7' || rc=1
	fallocate -p -o 6000 -l 30000 "$T/small/f7"
	do_on 3 "overwrite f8" 'dd if=$T/small/f1 of=$M/small/f8 bs=4096 seek=3 conv=notrunc,fsync status=none' || rc=1
	dd if="$T/small/f1" of="$T/small/f8" bs=4096 seek=3 conv=notrunc status=none
	expect_on "1 2 3" "the small files after changes on three hosts" "same" \
		'for n in $(seq 1 24); do cmp -s $T/small/f$n $M/small/f$n || echo "f$n differs"; done; echo same' || rc=1
	expect_on "1 3" "f5's size (grown into a block)" "$(stat -c %s "$T/small/f5")" 'stat -c %s $M/small/f5' || rc=1
	# frees of pages in the groups host1 allocated them in
	do_on 2 "remove 12 small files" 'for n in $(seq 1 2 24); do rm $M/small/f$n; done' || rc=1
	expect_on "1 3" "the files left" "12" 'ls $M/small | wc -l' || rc=1
	return $rc
}
step 3d "small files in pages: written on one host, changed and freed on the others"
if want_step 3d; then step3d || true; step_errors; fi

step4() {
	local out pid line t0 rc=0 h
	do_on 1 "mkdir ex" 'mkdir $M/ex && echo disk > $M/ex/vm.img && echo base > $M/ex/base.img' || return 1
	# (a) exclusive
	out=$(holder 1 ex1 "$T/m1/ex/vm.img" rw)
	[[ $out == "open OK" ]] || { bad "host1: write open of vm.img: $out"; return 1; }
	pid=$(holder_pid ex1)
	t0=$SECONDS
	out=$(TMO=10 on 2 '$H $M/ex/vm.img rw' 2>&1) || true
	[[ $out == "open EBUSY" ]] ||
		{ bad "host2: write open of a file host1 has open for write: '$out' (expected EBUSY at once, took $((SECONDS - t0)) s)"; rc=1; }
	out=$(TMO=10 on 3 '$H $M/ex/vm.img r' 2>&1) || true
	[[ $out == "open EBUSY" ]] ||
		{ bad "host3: read open of a file host1 has open for write: '$out' (expected EBUSY)"; rc=1; }
	line=$(grep 'refused' "$T/mount-h2.log" | tail -n 1)
	[[ $line == *host1* && $line == *"[$pid]"* ]] ||
		{ bad "host2's mount log does not name host1 and the holder [$pid]: '$line'"; rc=1; }
	info "host2 logged: ${line##*: open}"
	hexec 2 "$VMFSCTL" fileinfo "$T/m2/ex/vm.img" --json >"$T/fileinfo.json" 2>&1 ||
		{ bad "vmfsctl fileinfo on host2 failed: $(cat "$T/fileinfo.json")"; rc=1; }
	"$PY" - "$T/fileinfo.json" "$pid" <<'PY' || { bad "vmfsctl fileinfo on host2 does not show host1's EX hold: $(cat "$T/fileinfo.json")"; rc=1; }
import json, sys
j = json.load(open(sys.argv[1]))
hs = j["lock"]["holders"] or []
sys.exit(0 if any(h.get("host") == "host1" and h.get("mode") == "EX" and
                  "[%s]" % sys.argv[2] in (h.get("tag") or "") for h in hs) else 1)
PY
	# the holder closes: host2 may open for write
	holder_stop ex1
	wait_for 20 "host2's write open after host1 closed" \
		sh -c "'$VC' exec 2 '$PY' '$T/h.py' '$T/m2/ex/vm.img' rw | grep -qx 'open OK'" ||
		{ bad "host2 still cannot open vm.img for write after host1's holder exited"; rc=1; }

	# (b) read-only shared
	out=$(holder 1 ro1 "$T/m1/ex/base.img" r)
	[[ $out == "open OK" ]] || { bad "host1: read-only open of base.img: $out"; return 1; }
	out=$(holder 2 ro2 "$T/m2/ex/base.img" r)
	[[ $out == "open OK" ]] || { bad "host2: second read-only open of base.img (shared) failed: $out"; rc=1; }
	out=$(TMO=10 on 3 '$H $M/ex/base.img rw' 2>&1) || true
	[[ $out == "open EBUSY" ]] || { bad "host3: write open of a file read-shared by host1+2: '$out' (expected EBUSY)"; rc=1; }
	out=$(TMO=10 on 3 'cat $M/ex/base.img' 2>&1) || true
	[[ $out == base ]] || { bad "host3: third read-only open (cat): '$out'"; rc=1; }
	holder_stop ro1
	holder_stop ro2

	# (c) multi-writer: write opens everywhere, writes at different offsets all land
	do_on 1 "multiwriter file" ': > $M/ex/shared.img && $H $M/ex/shared.img - setxattr:user.vmfs.multiwriter:1' >/dev/null || return 1
	rm -f "$T"/mw-*
	local mwpids=()
	for h in 1 2 3; do
		hexec "$h" timeout 120 "$PY" "$T/h.py" "$T/m$h/ex/shared.img" rw "sig:$T/mw-open-$h" \
			"wait:$T/mw-go" "pwrite:$(((h - 1) * 65536)):$((0x40 + h)):65536" fsync \
			"sig:$T/mw-done-$h" "wait:$T/mw-end" >"$T/mw-out-$h" 2>&1 &
		mwpids+=($!)
	done
	for h in 1 2 3; do
		wait_for 30 "host$h's multi-writer open" sh -c "[ -e $T/mw-open-$h ] || grep -q 'open E' $T/mw-out-$h" || true
		[[ -e $T/mw-open-$h ]] || { bad "host$h: write open of a multi-writer file: $(cat "$T/mw-out-$h")"; rc=1; }
	done
	touch "$T/mw-go"
	for h in 1 2 3; do
		[[ -e $T/mw-open-$h ]] || continue
		wait_for 60 "host$h's multi-writer write" sh -c "[ -e $T/mw-done-$h ] || grep -q 'TIMEOUT\| E[A-Z]' $T/mw-out-$h" || true
		grep -q '^pwrite [0-9]* OK' "$T/mw-out-$h" && grep -q '^fsync OK' "$T/mw-out-$h" ||
			{ bad "host$h: multi-writer write: $(tr '\n' ' ' <"$T/mw-out-$h")"; rc=1; }
	done
	# read back while every writer still has the file open
	for h in 1 2 3; do
		out=$(on "$h" '$H $M/ex/shared.img r check:0:0x41:65536 check:65536:0x42:65536 check:131072:0x43:65536; stat -c %s $M/ex/shared.img' 2>&1) || true
		[[ $out == *"open OK"* && $(grep -c '^check [0-9]* OK' <<<"$out") == 3 && ${out##*$'\n'} == 196608 ]] ||
			{ bad "host$h reads the multi-writer file wrong (each host wrote 64 KiB at its offset): $(tr '\n' ' ' <<<"$out")"; rc=1; }
	done
	touch "$T/mw-end"
	for h in 1 2 3; do
		wait "${mwpids[h - 1]}" || true
	done
	return $rc
}
step 4 "per-file open locks across hosts"
if want_step 4; then step4 || true; step_errors; fi

step5() {
	local out rc=0
	do_on 1 "files for locks" 'mkdir $M/lk && echo f > $M/lk/fl && : > $M/lk/rec && : > $M/lk/qemu.img && \
		$H $M/lk/rec - setxattr:user.vmfs.multiwriter:1 && \
		$H $M/lk/qemu.img - setxattr:user.vmfs.multiwriter:1' >/dev/null || return 1
	# (a) flock
	out=$(holder 1 fl1 "$T/m1/lk/fl" r flock:ex)
	[[ $out == *"flock OK"* ]] || { bad "host1: flock -x: $out"; return 1; }
	out=$(TMO=10 on 2 'flock -n $M/lk/fl true; echo rc=$?' 2>&1) || true
	[[ $out == rc=1 ]] || { bad "host2: flock -n while host1 holds flock -x: '$out' (expected failure, rc=1)"; rc=1; }
	out=$(TMO=10 on 3 '$H $M/lk/fl r flock:sh' 2>&1) || true
	[[ $out == *"flock EAGAIN"* || $out == *"flock EWOULDBLOCK"* ]] ||
		{ bad "host3: shared flock while host1 holds exclusive: '$out'"; rc=1; }
	# a blocking flock and F_SETLKW waiting for host1 end when their
	# process gets a signal (FUSE INTERRUPT), leaving nothing queued
	out=$(holder 1 rw1 "$T/m1/lk/rec" rw setlk:w:0:10)
	[[ $out == *"setlk 0 OK"* ]] || { bad "host1: fcntl lock for the interrupt check: $out"; return 1; }
	out=$(TMO=20 on 2 '$H $M/lk/fl r flockw; $H $M/lk/rec rw setlkw:w:5:1' 2>&1) || true
	[[ $out == *"flockw EINTR"*"setlkw EINTR"* ]] ||
		{ bad "host2: blocking flock/F_SETLKW interrupted by a signal: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	holder_stop rw1
	if hexec 1 "$VMFSCTL" locks --json | grep -q '"waiting"'; then
		bad "host2's interrupted lock requests stayed queued: $(hexec 1 "$VMFSCTL" locks)"; rc=1
	fi
	holder_stop fl1
	wait_for 20 "host2's flock after host1's holder exited" \
		sh -c "'$VC' exec 2 flock -n '$T/m2/lk/fl' true" ||
		{ bad "host2 cannot flock after host1's holder exited"; rc=1; }

	# (b) fcntl byte ranges (classic POSIX locks)
	out=$(holder 1 rc1 "$T/m1/lk/rec" rw setlk:w:0:10 setlk:r:200:10)
	[[ $out == *"setlk 0 OK"*"setlk 200 OK"* ]] || { bad "host1: fcntl locks: $out"; return 1; }
	out=$(TMO=20 on 2 '$H $M/lk/rec rw setlk:w:5:1 setlk:w:100:10 setlk:r:200:10 getlk:w:0:1 getlk:w:50:1' 2>&1) || true
	[[ $out == *"setlk 5 EAGAIN"* || $out == *"setlk 5 EACCES"* ]] ||
		{ bad "host2: write lock on byte 5 while host1 write-locks 0-9: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"setlk 100 OK"* ]] || { bad "host2: write lock on 100-109 (free): $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"setlk 200 OK"* ]] || { bad "host2: read lock shared with host1's on 200-209: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"getlk 0 WRLCK"* ]] || { bad "host2: F_GETLK does not report host1's write lock: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"getlk 50 UNLCK"* ]] || { bad "host2: F_GETLK on a free byte: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	out=$(TMO=20 on 3 '$H $M/lk/rec rw setlk:w:205:2 setlk:r:3:1' 2>&1) || true
	[[ $out == *"setlk 205 EAGAIN"* || $out == *"setlk 205 EACCES"* ]] ||
		{ bad "host3: write lock over host1's read lock: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"setlk 3 EAGAIN"* || $out == *"setlk 3 EACCES"* ]] ||
		{ bad "host3: read lock over host1's write lock: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	holder_stop rc1
	wait_for 20 "host3's write lock on 0-9 after host1's holder exited" \
		sh -c "'$VC' exec 3 '$PY' '$T/h.py' '$T/m3/lk/rec' rw setlk:w:0:10 | grep -q 'setlk 0 OK'" ||
		{ bad "host3 cannot write-lock 0-9 after host1's holder exited"; rc=1; }

	# (c) QEMU-style OFD byte locks (raw-posix: bytes 100+perm "I use",
	# 200+perm "I do not share"; checks with F_OFD_GETLK F_WRLCK)
	out=$(holder 1 q1 "$T/m1/lk/qemu.img" rw ofdset:r:100:1 ofdset:r:101:1 ofdset:r:201:1)
	[[ $(grep -c '^ofdset [0-9]* OK' <<<"$out") == 3 ]] || { bad "host1: OFD read locks: $out"; return 1; }
	out=$(TMO=20 on 2 '$H $M/lk/qemu.img rw ofdget:w:201:1 ofdget:w:101:1 ofdget:w:202:1 ofdset:r:101:1 ofdset:w:201:1' 2>&1) || true
	[[ $out == *"ofdget 201 RDLCK"* && $out == *"ofdget 101 RDLCK"* ]] ||
		{ bad "host2: OFD GETLK does not see host1's QEMU byte locks: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"ofdget 202 UNLCK"* ]] || { bad "host2: OFD GETLK on a free byte: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"ofdset 101 OK"* ]] || { bad "host2: shared OFD read lock on byte 101: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	[[ $out == *"ofdset 201 EAGAIN"* || $out == *"ofdset 201 EACCES"* ]] ||
		{ bad "host2: OFD write lock on byte 201 read-locked by host1: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	holder_stop q1
	wait_for 20 "host1's QEMU byte locks to go with its holder" \
		sh -c "'$VC' exec 2 '$PY' '$T/h.py' '$T/m2/lk/qemu.img' rw ofdget:w:201:1 | grep -q 'ofdget 201 UNLCK'" ||
		{ bad "host1's OFD locks still seen after its holder exited (closed): $(plocks_of "$T/m1/lk/qemu.img")"; rc=1; }

	# (d) more blocked flock waiters on host2 than its mount has FUSE
	# workers (16): the mount still serves, and each waiter gets the lock
	# once host1's holder lets go
	out=$(holder 1 fl2 "$T/m1/lk/fl" r flock:ex)
	[[ $out == *"flock OK"* ]] || { bad "host1: flock -x for the waiters: $out"; return 1; }
	hexec 2 bash -c 'for i in $(seq 24); do
		timeout 60 flock -x "$1/lk/fl" sh -c "echo \$0 >> $1/lk/waiters" "$i" &
	done; wait' _ "$T/m2" &
	local waiters=$!
	sleep 2
	out=$(TMO=20 on 2 'ls $M/lk >/dev/null && echo served > $M/lk/served && cat $M/lk/served' 2>&1) || true
	[[ $out == served ]] || { bad "host2's mount stopped serving with 24 flock waiters: '$out'"; rc=1; }
	holder_stop fl2
	wait "$waiters"
	out=$(hexec 2 sort -n "$T/m2/lk/waiters" 2>&1 | tr '\n' ' ')
	[[ $out == "$(seq 24 | tr '\n' ' ')" ]] || { bad "24 flock waiters on host2, granted: $out"; rc=1; }
	return $rc
}
step 5 "POSIX locks, flock and OFD locks across hosts"
if want_step 5; then step5 || true; step_errors; fi

step6() {
	local out last t0 t1 fence_ms rc=0 h
	do_on 1 "mkdir rc" 'mkdir $M/rc && echo held > $M/rc/held3' || return 1
	do_on 3 "files with blocks" 'for f in big3 big3b; do
		dd if=/dev/urandom of=$M/rc/$f bs=1M count=3 conv=fsync status=none || exit 1; done' ||
		return 1
	out=$(holder 3 held3 "$T/m3/rc/held3" rw)
	[[ $out == "open OK" ]] || { bad "host3: write open of rc/held3: $out"; return 1; }
	: >"$T/fsynced3"
	hexec 3 "$PY" "$T/work.py" "$T/m3/rc" "$T/fsynced3" >"$T/work3.out" 2>&1 &
	wait_for 60 "host3 to fsync 30 files" sh -c "[ \$(wc -l < $T/fsynced3) -ge 30 ]" ||
		{ bad "host3's workload: $(tail -n 3 "$T/work3.out")"; return 1; }
	fence_ms=$(hexec 1 "$VMFSCTL" status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["fence_delay_ms"])')
	t0=$(date +%s%3N)
	"$VC" kill 3
	# SIGKILL reaches host3's processes one after the other: a mount that
	# outlives its vmfs-dlmd by a moment logs the lost connection as it
	# dies.  That is no error of the step; what host3 logs from here is not
	# checked.
	LOGPOS[3]=$({ wc -l <"$T/mount-h3.log"; } 2>/dev/null || echo 0)
	last=$(tail -n 1 "$T/fsynced3")
	info "host3 killed after fsyncing f1..f$last"
	# The survivors' operations on the directory wait for the recovery:
	# host3 held the directory's lock (cached: nobody asked for it) and the
	# lock manager keeps it until the fence delay has passed.
	out=$(TMO=120 on 1 'echo after > $M/rc/after1 && ls $M/rc | wc -l' 2>&1) ||
		{ bad "host1: create in the dead host's directory did not complete: $out"; return 1; }
	t1=$(date +%s%3N)
	info "host1's create in rc completed $((t1 - t0)) ms after the kill (fence delay $fence_ms ms)"
	# safety, not speed: nothing of host3's may be taken before T_fence
	((t1 - t0 >= fence_ms)) ||
		{ bad "host1 changed the directory host3 held $((t1 - t0)) ms after the kill, before the fence delay ($fence_ms ms)"; rc=1; }
	for h in 1 2; do
		out=$(TMO=120 on "$h" '$PY $T/work.py $M/rc '"$last"' verify' 2>&1) || true
		[[ $out == "verified 1..$last" ]] ||
			{ bad "host$h: fsync'd files f1..f$last after the recovery: $(head -n 5 <<<"$out" | tr '\n' '|')"; rc=1; }
	done
	wait_for 60 "host1's write open of the file host3 held" \
		sh -c "'$VC' exec 1 '$PY' '$T/h.py' '$T/m1/rc/held3' rw | grep -qx 'open OK'" ||
		{ bad "host1 cannot open rc/held3 for write after host3's recovery: $(on 1 '$H $M/rc/held3 rw' 2>&1)"; rc=1; }
	grep -i 'recover' "$T/mount-h1.log" "$T/mount-h2.log" | tail -n 4 >&2 || true
	# the dead host's group locks went with the purge: its files' blocks
	# can be freed (and fsck below checks the bitmaps)
	out=$(on 2 'rm $M/rc/big3 && truncate -s 1 $M/rc/big3b && echo freed' 2>&1) || true
	[[ $out == freed ]] || { bad "host2: freeing blocks of host3's files after the recovery: $out"; rc=1; }
	for h in 1 2; do
		umount_on "$h" || { bad "unmount on host$h failed"; rc=1; }
	done
	if "$FSCK" -n "$DISK" >"$T/fsck6.out" 2>&1; then
		info "vmfs-fsck -n after the recovery: clean"
	else
		bad "vmfs-fsck -n after the recovery and unmount is not clean (exit $?): $(head -n 20 "$T/fsck6.out")"
		rc=1
	fi
	return $rc
}
step 6 "host3 killed mid-workload: recovery by the survivors"
if want_step 6; then step6 || true; step_errors; fi

# Back to 3 mounted hosts for step 7.
remount_all() {
	local i
	"$VC" start-daemons 3 >/dev/null || return 1
	"$VC" wait >/dev/null || return 1
	hexec 3 fusermount3 -u -z "$T/m3" 2>/dev/null || true
	for i in 1 2 3; do
		is_mounted "$i" || mount_on "$i" || return 1
	done
}

step7() {
	local lease_ms hb_ms slot a b out t0 deadline eio=0 rc=0
	lease_ms=$(hexec 3 "$VMFSCTL" status --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["lease_ms"])')
	hb_ms=$("$VMFSCTL" hosts "$DISK" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["heartbeat_period_ms"])')
	slot=$(slot_of 3)
	[[ -n $slot ]] || { bad "cannot find host3's slot in its mount log"; return 1; }
	do_on 3 "mkdir iso" 'mkdir -p $M/iso && $H $M/iso/before3 c write:x fsync' >/dev/null || return 1
	a=$(slot_hb "$slot")
	b=$(slot_hb "$slot")
	[[ $a == "live "* && $b == "live "* ]] && ((${b#* } > ${a#* })) ||
		{ bad "host3's slot $slot is not live, advancing, while it is mounted ($a -> $b)"; return 1; }
	"$VC" isolate 3
	t0=$SECONDS
	deadline=$((t0 + (lease_ms + 999) / 1000 + 20))
	while ((SECONDS < deadline)); do
		out=$(TMO=15 on 3 '$H $M/iso/p3-$RANDOM c write:y fsync' 2>&1) || true
		if [[ $out == *EIO* ]]; then
			eio=1
			break
		fi
		sleep 0.5
	done
	((eio)) || { bad "host3 did not get EIO within T_lease ($lease_ms ms) + 20 s of its isolation; last: $(tr '\n' ' ' <<<"$out")"; rc=1; }
	info "host3: EIO $((SECONDS - t0)) s after the isolation (lease $lease_ms ms)"
	# From now on host3 must not write: its heartbeat stays where it is
	# (until a survivor recovers the slot: state free, counter + 1).
	a=$(slot_hb "$slot")
	out=$(TMO=15 on 3 'ls $M/iso >/dev/null; echo rc=$?' 2>&1) || true
	[[ $out == *"Input/output error"* ]] || { bad "host3: ls after the lease was lost did not fail with EIO: $out"; rc=1; }
	sleep $(((hb_ms * 3 + 999) / 1000))
	b=$(slot_hb "$slot")
	if [[ $a == free* ]]; then
		info "host3's slot was already recovered when sampled after the EIO: $a"
	elif [[ $b == "$a" || ($b == "free "* && ${b#* } == $((${a#* } + 1))) ]]; then
		info "host3's heartbeat stopped: $a, then $b (over $((hb_ms * 3)) ms + sampling)"
	else
		bad "host3 still writes its heartbeat after it got EIO: slot $slot $a -> $b"
		rc=1
	fi
	# the others go on (after the fence delay)
	t0=$SECONDS
	out=$(TMO=120 on 1 'echo one > $M/iso/after1 && ls $M/iso >/dev/null && echo ok' 2>&1) ||
		{ bad "host1 cannot work while host3 is isolated: $out"; return 1; }
	expect_on "2" "host2 sees host1's file while host3 is isolated" "one" 'cat $M/iso/after1' || rc=1
	do_on 2 "create while host3 is isolated" 'echo two > $M/iso/after2 && sync $M/iso/after2' || rc=1
	expect_on "1" "host1 sees host2's file" "two" 'cat $M/iso/after2' || rc=1
	info "hosts 1+2 worked on in $((SECONDS - t0)) s"
	b=$(slot_hb "$slot")
	[[ $b == "free $((${a#* } + 1))" || $b == "$a" ]] ||
		{ bad "host3's slot $slot after the survivors went on: $b (after the EIO: $a)"; rc=1; }
	return $rc
}
step 7 "isolated host3: EIO within the lease, no more writes; the others go on"
if ! want_step 7; then
	:
elif remount_all; then
	step7 || true
	step_errors
else
	bad "cannot bring the 3 mounts back for step 7"
fi

# Unmount what is left cleanly (host3's fenced mount is killed by "down").
for i in 1 2; do
	is_mounted "$i" && { umount_on "$i" || bad "final unmount on host$i failed"; }
done

if ((${#FAILED[@]})); then
	echo "---- $TEST_NAME: ${#FAILED[@]} failure(s):" >&2
	printf '  %s\n' "${FAILED[@]}" >&2
	for i in 1 2 3; do
		echo "---- host$i's mount log (last 40 lines; all in $T/mount-h$i.log):" >&2
		tail -n 40 "$T/mount-h$i.log" >&2 || true
	done
	exit 1
fi
echo "PASS"
