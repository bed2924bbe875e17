#!/bin/bash
# vmfs end-to-end demo: three hosts on this machine share one disk formatted
# with vmfs; a guest runs on host1 with its disk image on the shared volume and
# is live-migrated to host2 while it runs, its disk lock moving with it.
#
#   sudo bash scripts/demo.sh          (from the repository root, as root)
#
# It installs missing Debian packages (scripts/install-deps.sh), builds out of
# tree (VMFS_DEMO_BUILD, default /tmp/vmfs-demo-build; kept, so a second run
# only rebuilds what changed), runs the demo and tears everything down on exit
# (the cluster's namespaces, mounts, processes; every program of the demo
# runs inside a host, so its libqb shm files are in that host's own /dev/shm).  Logs, the
# guest's serial console and the traffic chart (migration.svg) stay in
# VMFS_DEMO_OUT (default /tmp/vmfs-demo).
#
# Every step either shows the real thing or says "not available yet" with the
# reason; any failure stops the demo with a message and exit status 1.
#
# Knobs (environment): VMFS_DEMO_ID (cluster id, default "demo"),
# VMFS_DEMO_RAM_MIB (guest RAM, default 256), VMFS_DEMO_DIRTY_KIB (KiB/s the
# guest dirties while it migrates, default 16384), VMFS_DEMO_LINK (migration
# link speed, default 1gbit; "off" = unshaped), VMFS_DEMO_DOWNTIME_MS
# (downtime target, default 50), VMFS_DEMO_SKIP_DEPS=1, VMFS_DEMO_SKIP_BUILD=1.
set -uo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
ID=${VMFS_DEMO_ID:-demo}
BUILD=${VMFS_DEMO_BUILD:-/tmp/vmfs-demo-build}
OUT=${VMFS_DEMO_OUT:-/tmp/vmfs-demo}
RAM_MIB=${VMFS_DEMO_RAM_MIB:-256}
DIRTY_KIB=${VMFS_DEMO_DIRTY_KIB:-16384}
LINK=${VMFS_DEMO_LINK:-1gbit}
DOWNTIME_MS=${VMFS_DEMO_DOWNTIME_MS:-50}
VM=vm1
MNT=/run/vmfs/$ID		# in each host's own /run: gone with the host
VC=$TOP/tests/cluster/vmfs-cluster
export VMFS_CLUSTER_ID=$ID VMFS_BUILDDIR=$BUILD

# --- output ---------------------------------------------------------------
if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' Y=$'\e[33m' R=$'\e[31m' N=$'\e[0m'
else B='' G='' Y='' R='' N=''; fi
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
STEP=
step() { STEP=$1; printf '\n%s[%s] == %s%s\n' "$B" "$(elapsed)" "$*" "$N"; }
ok() { printf '   %s%s%s\n' "$G" "$*" "$N"; }
info() { printf '   %s\n' "$*"; }
# A step (or part of one) that needs a piece of vmfs that is not finished:
# said plainly, never reported as a success.
notyet() { printf '   %snot available yet:%s %s\n' "$Y" "$N" "$*"; NOTYET=$((NOTYET + 1)); }
NOTYET=0
die() {
	printf '\n%sdemo failed%s in step "%s": %s\n' "$R" "$N" "$STEP" "$*" >&2
	printf 'logs: %s\n' "$OUT" >&2
	exit 1
}
# indent the output of a command
show() { sed 's/^/     | /'; }

# --- cleanup: everything this run started ----------------------------------
PIDS=
CLUSTER_STARTED=
cleanup() {
	local rc=$? p i
	trap - EXIT INT TERM
	[ -n "$CLUSTER_STARTED$PIDS" ] && printf '\n%s[%s] == teardown%s\n' "$B" "$(elapsed)" "$N"
	# the hypervisors first: they hold files open on the mounts
	for p in src dst; do
		[ -S "$OUT/$p.sock" ] && timeout 5 "$VMM" --client "$OUT/$p.sock" stop >/dev/null 2>&1
	done
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
	if [ -n "$CLUSTER_STARTED" ]; then
		# a clean unmount commits the journal and frees the host slot
		for i in 1 2 3; do
			"$VC" exec "$i" sh -c "mountpoint -q $MNT && timeout 20 fusermount3 -u $MNT" \
				>/dev/null 2>&1
		done
		# kills every process left in the hosts, deletes the namespaces
		# (and with them the mounts) and the cluster's state directory
		"$VC" down >>"$OUT/teardown.log" 2>&1 ||
			{ echo "teardown: vmfs-cluster down failed, see $OUT/teardown.log" >&2; rc=1; }
	fi
	for p in $PIDS; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ -n "$CLUSTER_STARTED" ]; then
		leftovers || rc=1
		info "logs and chart kept in $OUT"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Nothing of ours may survive the teardown: say so if something does.
leftovers() {
	local l
	l=$(ip netns list 2>/dev/null | awk -v id="$ID" '$1 ~ "^" id "-(h[0-9]+|sw)$" {print $1}')
	[ -d "/run/vmfs-cluster/$ID" ] && l="$l /run/vmfs-cluster/$ID"
	l="$l $(grep -F " /run/vmfs-cluster/$ID" /proc/self/mountinfo | awk '{print $5}')"
	l="$l $(ps -e -o pid=,args= | grep -F "/run/vmfs-cluster/$ID/" | grep -v grep | awk '{print "pid" $1}')"
	l=$(echo $l)
	if [ -n "$l" ]; then
		printf '   %sleft behind:%s %s\n' "$R" "$N" "$l"
		return 1
	fi
	ok "nothing left behind (namespaces, mounts, processes)"
}

# --- helpers ----------------------------------------------------------------
hexec() { local i=$1; shift; "$VC" exec "$i" "$@"; }
VMM=$BUILD/migrate-helper/vmfs-vmm
VMFSCTL=$BUILD/vmfsctl/vmfsctl
MIGRATE=$BUILD/migrate-helper/vmfs-migrate
ctl() { "$VMM" --client "$OUT/$1.sock" "${@:2}"; }
# wait_for SEC WHAT CMD...: poll every 0.2 s
wait_for() {
	local secs=$1 what=$2 n=0
	shift 2
	until "$@" >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -ge $((secs * 5)) ] && die "timed out after ${secs}s waiting for $what"
		sleep 0.2
	done
}
# The demo's Python part (python3 is one of the build dependencies): reading
# the control socket's JSON, the progress line, the summary and the chart.
# Called as: demo_py COMMAND ARGS...
DEMO_PY=$(cat <<'PY'
import json, socket, sys, time

def vmm(sock, cmd):
    """One command to a vmfs-vmm control socket; its JSON answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(cmd.encode() + b"\n")
    buf = b""
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        buf += b
    s.close()
    return json.loads(buf)

def monitor(a):
    """Start the migration, then poll the source every 200 ms: one progress
    line, rewritten in place, until it ends; save the last status; exit 0
    if completed.  (One process for all of it: starting python3 costs
    seconds on a loaded machine.)"""
    sock, out, target = a
    r = vmm(sock, "migrate " + target)
    if not r.get("ok"):
        print("   the source refused to migrate: %s" % r.get("error", r))
        return 1
    tty = sys.stdout.isatty()
    last = ""
    while True:
        st = vmm(sock, "status")
        m = st.get("migration") or {}
        line = "%-9s round %2d  sent %7.1f MiB  %6d Mbit/s  remaining %7.1f MiB  %5.1f s" % (
            m.get("status", "starting"), m.get("rounds", 0),
            m.get("transferred_bytes", 0) / 1048576, m.get("throughput_mbps", 0),
            m.get("remaining_bytes", 0) / 1048576, m.get("total_time_ms", 0) / 1000)
        if tty:
            sys.stdout.write("\r   " + line + "\033[K")
        elif line.split()[0:3] != last.split()[0:3]:
            sys.stdout.write("   " + line + "\n")	# a log: one line per round
        last = line
        sys.stdout.flush()
        if m.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if tty:
        sys.stdout.write("\n")
    json.dump(st, open(out, "w"))
    if m["status"] != "completed":
        print("   migration %s: %s" % (m["status"], m.get("error") or m.get("guard") or "?"))
        return 1
    return 0

def state(a):
    print(vmm(a[0], "status").get("state", ""))

def field(a):
    v = vmm(a[0], "status").get(a[1])
    print("" if v is None else v)

def summary(a):
    st = json.load(open(a[0]))
    m = st["migration"]
    d = m["downtime_breakdown"]
    h = st.get("handoff") or {}
    print("total time     %6d ms  (setup %d ms, %d rounds, %.1f MiB sent, %d zero pages not sent)" % (
        m["total_time_ms"], m["setup_time_ms"], m["rounds"], m["transferred_bytes"] / 1048576, m["zero_pages"]))
    print("downtime       %6d ms  (target %s ms): the VM paused on host1 until host2 ran it" % (m["downtime_ms"], a[1]))
    print("  final pages       %6d ms" % d["final_pages_ms"])
    print("  device state      %6d ms  (vCPUs and devices: save, send, load on host2)" % d["device_state_ms"])
    if h.get("transfer_before_pause_us"):
        print("  disk-lock handoff %6d ms  (%d us in the pause: the lock-manager TRANSFER_SET went just before "
              "it, guest running, disk held, and took %.1f ms)" % (d["handoff_ms"], h.get("hook_us", 0),
                                                                  h["transfer_before_pause_us"] / 1000))
    else:
        print("  disk-lock handoff %6d ms  (in vmfs-vmm: one lock-manager TRANSFER_SET)" % d["handoff_ms"])
    print("  resume on host2   %6d ms" % d["resume_ms"])

def holders(a):
    """Hosts holding a granted lock, from vmfsctl locks --json on stdin."""
    j = json.load(sys.stdin)
    print(" ".join(l["host"] for ls in j.get("lockspaces", []) for r in ls.get("resources", [])
                   for l in r.get("locks", []) if l.get("queue") == "granted"))

def get(a):
    """A top-level field of the JSON document on stdin."""
    v = json.load(sys.stdin).get(a[0])
    print("" if v is None else v)

def chart(a):
    import json, sys
    m = json.load(open(a[0]))["migration"]
    pts = m.get("throughput_samples_mbps") or []
    if not pts:
        print("     (no samples: the migration took less than 100 ms)")
        return 0
    rounds = m.get("per_round") or []
    tmax = max(t for t, _ in pts) or 1
    vmax = max(v for _, v in pts) or 1
    # terminal: 64 columns x 10 rows; a sample covers the 100 ms before its
    # time stamp, so each column shows the sample that covers its middle
    W, H = 64, 10
    col, k = [], 0
    for c in range(W):
        tc = (c + 0.5) * tmax / W
        while k < len(pts) - 1 and pts[k][0] < tc:
            k += 1
        col.append(pts[k][1])
    for row in range(H, 0, -1):
        label = "%5.0f |" % (vmax * row / H) if row in (H, H // 2) else "      |"
        print("     " + label + "".join("#" if v >= vmax * (row - 0.5) / H else " " for v in col))
    print("     Mbit/s+" + "-" * W)
    print("       0 s%s%.1f s" % (" " * (W - 8), tmax / 1000))
    # SVG
    w, h, l, b = 720, 300, 60, 40
    def x(t): return l + (w - l - 20) * t / tmax
    def y(v): return h - b - (h - b - 20) * v / vmax
    poly = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in pts)
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="14" font-size="14">vmfs live migration: %d rounds, %.1f MiB in %.2f s, downtime %d ms (link %s)</text>'
         % (l, m["rounds"], m["transferred_bytes"] / 1048576, m["total_time_ms"] / 1000, m["downtime_ms"], a[2]),
         '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (l, h - b, w - 20, h - b),
         '<line x1="%d" y1="20" x2="%d" y2="%d" stroke="black"/>' % (l, l, h - b)]
    for i in range(5):
        v = vmax * i / 4
        s.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (l - 5, y(v) + 4, v))
        s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (l, y(v), w - 20, y(v)))
    for i in range(6):
        t = tmax * i / 5
        s.append('<text x="%.1f" y="%d" text-anchor="middle">%.1f s</text>' % (x(t), h - b + 16, t / 1000))
    s.append('<text x="14" y="%d" transform="rotate(-90 14 %d)">Mbit/s</text>' % (h / 2, h / 2))
    # where each pre-copy round ended (its figures are in per_round)
    t, lastx = m.get("setup_time_ms", 0), -1e9
    for r in rounds:
        t += r["ms"]
        if t <= tmax:
            s.append('<line x1="%.1f" y1="20" x2="%.1f" y2="%d" stroke="#aaa" stroke-dasharray="4 3"/>' % (x(t), x(t), h - b))
            if x(t) - lastx > 70:	# short final rounds: one label
                s.append('<text x="%.1f" y="32" font-size="10" fill="#666">round %d</text>' % (x(t) + 2, r["round"]))
                lastx = x(t)
    s.append('<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>' % poly)
    s.append("</svg>")
    open(a[1], "w").write("\n".join(s) + "\n")
    print("     per round: " + ", ".join("#%d %.1f MiB in %d ms" % (r["round"], r["bytes"] / 1048576, r["ms"]) for r in rounds))

sys.exit(globals()[sys.argv[1]](sys.argv[2:]) or 0)
PY
)
demo_py() { python3 -c "$DEMO_PY" "$@"; }

# --- the steps ----------------------------------------------------------------
step_check() {
	step "checking this machine"
	[ "$(id -u)" = 0 ] || die "run as root (sudo bash scripts/demo.sh): namespaces, FUSE and corosync need it"
	[ -e /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse)"
	# the output of an earlier run is replaced, nothing else
	if [ -e "$OUT" ] && [ ! -e "$OUT/.vmfs-demo" ]; then
		die "$OUT exists and is not the output of an earlier demo: choose another VMFS_DEMO_OUT"
	fi
	rm -rf "$OUT"
	mkdir -p "$OUT" && touch "$OUT/.vmfs-demo" || die "cannot create $OUT"
	if [ -d "/run/vmfs-cluster/$ID" ]; then
		info "a cluster '$ID' from an earlier demo run is still there: taking it down"
		"$VC" down >/dev/null 2>&1 || die "cannot take down the old cluster '$ID' (see '$VC status')"
	fi
	ok "root, /dev/fuse; output in $OUT"
}

step_deps() {
	step "packages (scripts/install-deps.sh)"
	if [ -n "${VMFS_DEMO_SKIP_DEPS:-}" ]; then info "skipped (VMFS_DEMO_SKIP_DEPS)"; return; fi
	bash "$TOP/scripts/install-deps.sh" >"$OUT/deps.log" 2>&1 ||
		{ tail -n 20 "$OUT/deps.log" | show; die "installing the Debian packages failed (see above)"; }
	ok "all Debian packages present"
}

step_build() {
	step "building out of tree in $BUILD"
	if [ -n "${VMFS_DEMO_SKIP_BUILD:-}" ]; then info "skipped (VMFS_DEMO_SKIP_BUILD)"; return; fi
	[ -f "$TOP/config.status" ] &&
		die "$TOP was configured in-tree; out-of-tree builds need 'make distclean' there first"
	if [ ! -x "$TOP/configure" ]; then
		(cd "$TOP" && ./autogen.sh) >"$OUT/build.log" 2>&1 || die "autogen.sh failed (see $OUT/build.log)"
	fi
	mkdir -p "$BUILD" || die "cannot create $BUILD"
	if [ ! -f "$BUILD/Makefile" ]; then
		info "configure (first run only)"
		(cd "$BUILD" && "$TOP/configure") >>"$OUT/build.log" 2>&1 ||
			{ tail -n 20 "$OUT/build.log" | show; die "configure failed"; }
	fi
	info "make -j$(nproc) (the first build takes a few minutes)"
	nice make -C "$BUILD" -j"$(nproc)" >>"$OUT/build.log" 2>&1 ||
		{ grep -m 10 -B2 -A3 'error' "$OUT/build.log" | show; die "the build failed (see $OUT/build.log)"; }
	for p in "$VMM" "$VMFSCTL" "$MIGRATE" "$BUILD/fs/vmfs-mkfs" "$BUILD/fs/vmfs-mount" \
		 "$BUILD/dlm/vmfs-dlmd" "$BUILD/migrate-helper/guests/guest.bin" \
		 "$BUILD/migrate-helper/guests/guest-native.so"; do
		[ -e "$p" ] || die "the build did not produce $p"
	done
	ok "built"
	T0=$(date +%s.%N)	# the demo's own time starts here
}

step_cluster() {
	step "starting a 3-host cluster (corosync + vmfs-dlmd on each, id '$ID')"
	CLUSTER_STARTED=1
	DISK=$("$VC" up 3 --disk-size 2G 2>"$OUT/cluster-up.log") ||
		{ tail -n 30 "$OUT/cluster-up.log" | show; die "vmfs-cluster up 3 failed"; }
	hexec 1 "$VMFSCTL" status | show
	HOST2_IP=$(hexec 2 ip -4 -o addr show dev eth0 | awk '{sub("/.*", "", $4); print $4}')
	[ -n "$HOST2_IP" ] || die "no address on host2's eth0"
	ok "3 hosts quorate; shared disk $DISK"
}

step_mkfs() {
	step "formatting the shared disk (vmfs-mkfs, once, from host1)"
	hexec 1 "$BUILD/fs/vmfs-mkfs" --label "$ID" "$DISK" 2>&1 | show
	[ "${PIPESTATUS[0]}" = 0 ] || die "vmfs-mkfs failed"
	ok "volume '$ID' created"
}

# The mount is single-host until it takes its locks from vmfs-dlmd; its
# --version says which backend it has.
MOUNTED=
step_mount() {
	step "mounting the volume on every host (vmfs-mount $DISK $MNT)"
	local i err backend
	backend=$("$BUILD/fs/vmfs-mount" --version | sed -n 's/.*locking: \([^)]*\).*/\1/p')
	for i in 1 2 3; do
		if [ "$i" != 1 ] && [ "$backend" = single-host ]; then
			notyet "host$i: vmfs-mount has the single-host locking backend (vmfs-mount --version), so a second host may not mount the volume"
			continue
		fi
		hexec "$i" mkdir -p "$MNT" || die "host$i: mkdir $MNT"
		if ! err=$(hexec "$i" "$BUILD/fs/vmfs-mount" "$DISK" "$MNT" 2>&1); then
			printf '%s\n' "$err" | show
			die "host$i: vmfs-mount failed"
		fi
		MOUNTED="$MOUNTED $i"
		ok "host$i: mounted at $MNT"
	done
	hexec 1 "$VMFSCTL" hosts "$MNT" 2>&1 | show
	UUID=$(hexec 1 "$VMFSCTL" volume "$MNT" --json | demo_py get uuid)
	[ -n "$UUID" ] || die "vmfsctl volume: no uuid"
}

# The guest: the test workload of tests/guests, with the thread accelerator
# (no /dev/kvm needed), its disk a file on the vmfs volume, its NIC a tap on
# the host's VM bridge vmbr0 (whose uplink vm0 goes to the VM switch).
MAC=52:54:00:de:30:01
vmm_args() {
	echo "--accel thread --image $BUILD/migrate-helper/guests/guest.bin" \
	     "--native-guest $BUILD/migrate-helper/guests/guest-native.so" \
	     "--ram $RAM_MIB --cpus 2 --prefill --work-mib $((RAM_MIB * 3 / 4))" \
	     "--dirty-rate $DIRTY_KIB --psk-file $OUT/key --name $VM" \
	     "--mac $MAC --tap vmtap%d --bridge vmbr0" \
	     "--downtime-ms $DOWNTIME_MS --auto-converge"
}
# start_vmm HOST NAME DISK ARGS...: in host HOST, control socket $OUT/NAME.sock
start_vmm() {
	local h=$1 name=$2 disk=$3
	shift 3
	# shellcheck disable=SC2046 # vmm_args is a list of words
	"$VC" exec "$h" sh -c 'echo $$ > "$0"; exec "$@"' "$OUT/$name.pid" \
		"$VMM" $(vmm_args) --disk "$disk" --ctrl "$OUT/$name.sock" \
		--serial "$OUT/$name.serial" --log-file "$OUT/$name.log" "$@" \
		>"$OUT/$name.out" 2>&1 &
	PIDS="$PIDS $!"
	local pid=$! n=0
	until [ -S "$OUT/$name.sock" ]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 5 "$OUT/$name.out" | show
			info "vmfs-vmm ($name, host$h) exited at start (see above and $OUT/$name.log)"
			return 1
		fi
		n=$((n + 1))
		[ $n -ge 100 ] && die "timed out after 20s waiting for $name's control socket"
		sleep 0.2
	done
}

step_guest() {
	step "starting guest '$VM' on host1 (vmfs-vmm, ${RAM_MIB} MiB, 2 vCPUs, disk $([ -n "$PLAIN" ] && echo "a plain file" || echo "on the vmfs volume"))"
	printf 'vmfs-demo-migration-key-%s\n' "$RANDOM$RANDOM" >"$OUT/key"
	if [ -n "$PLAIN" ]; then
		SRC_DISK=$OUT/$VM.img
		truncate -s 64M "$SRC_DISK" || die "cannot create $SRC_DISK"
	else
		SRC_DISK=$MNT/$VM.img
		hexec 1 truncate -s 64M "$SRC_DISK" || die "cannot create $SRC_DISK on host1"
	fi
	start_vmm 1 src "$SRC_DISK" --handoff || die "the guest did not start"
	wait_for 30 "the guest to boot" grep -q 'vmfs-guest: up' "$OUT/src.serial"
	wait_for 30 "the guest to fill its memory and tick" grep -q 'vmfs-guest: tick' "$OUT/src.serial"
	tail -n 2 "$OUT/src.serial" | show
	[ -z "$PLAIN" ] && hexec 1 "$VMFSCTL" fileinfo "$SRC_DISK" 2>&1 | show
	ok "guest running on host1, writing disk records to $SRC_DISK"
}

# The VM's disk lock.  Intended: the mount holds an EX open lock on the
# image (lockspace = volume UUID, resource i<inode>) tagged with the VM, and
# vmfs-migrate moves it.  Until the mount takes open locks, the demo holds
# the lock with `vmfsctl lock` itself (a stand-in: the lock manager, the
# handoff and the refusal are real, only the holder differs).
LS='' RES='' STANDIN='' PLAIN=''
step_locks() {
	step "the disk lock of '$VM' (vmfsctl locks)"
	local ino=
	[ -z "$PLAIN" ] && ino=$(hexec 1 "$VMFSCTL" fileinfo "$SRC_DISK" --json | demo_py get inode)
	if [ -z "$PLAIN" ] &&
	   [ -n "$(hexec 1 "$VMFSCTL" locks --json --lockspace "$UUID" "i$ino" | demo_py holders)" ]; then
		LS=$UUID RES=i$ino STANDIN=
		ok "vmfs-mount on host1 holds the open lock of $VM.img: $LS/$RES"
	else
		[ -z "$PLAIN" ] &&
			notyet "vmfs-mount takes no per-file open lock on $VM.img (lockspace $UUID, resource i$ino) yet"
		STANDIN=1 LS=vmfs-demo RES=$VM.img
		info "stand-in: the demo takes the VM's disk lock $LS/$RES on host1 with vmfsctl lock"
		"$VC" exec 1 "$VMFSCTL" lock --lockspace "$LS" --tag "$VM" --persistent --nowait \
			"$RES" -- sleep 100000 >"$OUT/standin-lock.log" 2>&1 &
		PIDS="$PIDS $!"
		wait_for 10 "the stand-in lock" sh -c \
			"'$VC' exec 1 '$VMFSCTL' locks --lockspace '$LS' | grep -q 'granted.*EX.*host1'"
	fi
	hexec 1 "$VMFSCTL" locks --lockspace "$LS" "$RES" | show
	# The switchover hook vmfs-vmm runs on host1: vmfs-migrate on this
	# lockspace.  (The build tree's programs are real executables, not
	# libtool wrappers: a wrapper's shell would add half a second to the
	# VM's downtime.)
	printf '#!/bin/sh\nexec %s "$1" "$2" --lockspace %s\n' "$MIGRATE" "$LS" >"$OUT/handoff-hook"
	chmod +x "$OUT/handoff-hook"
}

# Until the destination can take over a disk on vmfs: start again with the
# VM's disk on a plain file that both hosts see, and the stand-in lock, so
# that the migration itself can still be shown.
plain_disk_instead() {
	local f
	info "continuing with the VM's disk on a plain file that both hosts see ($OUT/$VM.img)"
	ctl src stop >/dev/null 2>&1
	wait_for 20 "the first guest to stop" sh -c "! kill -0 $(cat "$OUT/src.pid") 2>/dev/null"
	mkdir -p "$OUT/on-vmfs"
	for f in "$OUT"/src.* "$OUT"/dst.*; do mv "$f" "$OUT/on-vmfs/"; done
	PLAIN=1
	step_guest
	step_locks
	step_destination
}

step_destination() {
	step "preparing host2: an incoming vmfs-vmm and its claim on the disk lock"
	local dst_disk
	if [ -n "$PLAIN" ]; then
		dst_disk=$SRC_DISK
	elif [[ " $MOUNTED " == *" 2 "* ]]; then
		dst_disk=$MNT/$VM.img
	else
		# The same file, reached through host1's mount namespace: host2
		# has no mount of its own yet (see the mount step).
		dst_disk=/proc/$(cat "$OUT/src.pid")/root$SRC_DISK
		notyet "host2 has no vmfs mount: its vmfs-vmm opens the image through host1's mount ($dst_disk)"
	fi
	# A disk on vmfs: the claim comes first (vmfs-migrate prepare with the
	# file's path sets trusted.vmfs.incoming on host2's mount), so that the
	# incoming vmfs-vmm may open the image; it cannot write before the handoff.
	local prepared=
	if [ -z "$PLAIN" ] && [ -z "$STANDIN" ] && [[ " $MOUNTED " == *" 2 "* ]]; then
		"$VC" exec 2 "$MIGRATE" prepare --vm "$VM" "$dst_disk" >"$OUT/prepare.log" 2>&1 &
		PIDS="$PIDS $!"
		wait_for 15 "vmfs-migrate prepare on host2" grep -q '^prepared' "$OUT/prepare.log"
		prepared=1
	fi
	if ! start_vmm 2 dst "$dst_disk" --incoming "$HOST2_IP:0"; then
		if [ -z "$PLAIN" ] && grep -qi 'busy' "$OUT/dst.out"; then
			notyet "host2's vmfs-vmm opens the VM's disk as it starts, and the open lock of the running VM on host1 refuses that (EBUSY), as it should; the destination opening the disk only after the handoff, with vmfs-migrate moving the mount's open lock, is being written"
			plain_disk_instead
			return
		fi
		die "host2's vmfs-vmm did not start"
	fi
	DST_PORT=$(demo_py field "$OUT/dst.sock" incoming_port)
	[ -n "$DST_PORT" ] && [ "$DST_PORT" != 0 ] || die "host2's vmfs-vmm has no incoming port"
	if [ -z "$prepared" ]; then
		"$VC" exec 2 "$MIGRATE" prepare --vm "$VM" --lockspace "$LS" "$RES" \
			>"$OUT/prepare.log" 2>&1 &
		PIDS="$PIDS $!"
		wait_for 15 "vmfs-migrate prepare on host2" grep -q '^prepared' "$OUT/prepare.log"
	fi
	hexec 2 "$VMFSCTL" locks --lockspace "$LS" "$RES" | show
	if [ "$LINK" != off ]; then
		"$VC" shape 2 "$LINK" 2>/dev/null || die "cannot shape host2's link to $LINK"
		info "host2's link shaped to $LINK (tc tbf), as a dedicated migration link"
	fi
	ok "host2 listening on $HOST2_IP:$DST_PORT; its claim waits behind host1's lock"
}

vmm_state_is() { [ "$(demo_py state "$OUT/$1.sock")" = "$2" ]; }
# One status line, rewritten in place, until the migration ends.
step_migrate() {
	step "live-migrating '$VM' host1 -> host2 (downtime target ${DOWNTIME_MS} ms)"
	demo_py monitor "$OUT/src.sock" "$OUT/src-status.json" "$HOST2_IP:$DST_PORT" ||
		die "the migration did not complete (the VM still runs on host1; see $OUT/src.log)"
	wait_for 20 "the guest to run on host2" vmm_state_is dst running
	wait_for 20 "the guest's resume report on host2" grep -q 'vmfs-guest: resume n=1' "$OUT/dst.serial"
	grep -q 'resume n=1 verify ok' "$OUT/dst.serial" || die "the guest's memory check after the resume failed"
	wait_for 20 "the guest's ticks on host2" grep -q 'vmfs-guest: tick.*resumes=1' "$OUT/dst.serial"
	grep 'vmfs-guest: resume\|vmfs-guest: tick.*resumes=1' "$OUT/dst.serial" | tail -n 2 | show
	vmm_state_is src postmigrate || die "host1's vmfs-vmm is not in postmigrate"
	demo_py summary "$OUT/src-status.json" "$DOWNTIME_MS" | show
	ok "'$VM' runs on host2 (its memory verified by the guest); host1 keeps it paused for good"
}

step_after() {
	step "after the migration: who holds the disk"
	hexec 1 "$VMFSCTL" locks --lockspace "$LS" "$RES" | show
	holder=$(hexec 1 "$VMFSCTL" locks --json --lockspace "$LS" "$RES" | demo_py holders)
	[ "$holder" = host2 ] || die "the disk lock $LS/$RES is not held by host2 alone (holders: ${holder:-none})"
	ok "the disk lock $LS/$RES is held by host2"
	port=""
	for _ in $(seq 30); do
		port=$("$VC" fdb "$MAC" 2>/dev/null) && [ "$port" = h2vm ] && break
		sleep 0.1
	done
	[ "$port" = h2vm ] || die "the VM switch does not have $MAC on host2's port (${port:-not learned}): no RARP?"
	ok "the VM network's switch learned $MAC on host2's port ($port): the RARP host2 sent through the VM's tap"
	if [ -z "$STANDIN" ]; then
		# the intended check: the mount refuses host1 a write open
		if err=$(hexec 1 sh -c "exec 3<>'$SRC_DISK'" 2>&1); then
			die "host1 could open $SRC_DISK for writing while host2 holds it"
		fi
		printf '%s\n' "$err" | show
		hexec 1 "$VMFSCTL" fileinfo "$SRC_DISK" 2>&1 | show
		ok "host1's open for write refused (EBUSY): the disk is open for write on $holder, the holder fileinfo names"
	else
		if [ -n "$PLAIN" ]; then
			info "the VM's disk is a plain file here (see above): no open lock refuses host1; asking the lock manager for the disk lock instead"
		else
			notyet "vmfs-mount takes no open lock, so nothing refuses host1 opening $VM.img; asking the lock manager for the disk lock instead"
		fi
		local rc
		err=$(hexec 1 "$VMFSCTL" lock --lockspace "$LS" --nowait "$RES" -- true 2>&1)
		rc=$?
		printf '%s\n' "$err" | show
		[ "$rc" = 75 ] && grep -q host2 <<<"$err" ||
			die "host1's request for the disk lock was not refused naming host2 (status $rc)"
		ok "host1's request for $LS/$RES refused, holder host2 named"
	fi
}

# The engine's 100 ms throughput samples: a chart here and an SVG file.
step_chart() {
	step "migration traffic over time (engine samples every 100 ms)"
	demo_py chart "$OUT/src-status.json" "$OUT/migration.svg" "$LINK" || die "cannot draw the chart"
	ok "SVG: $OUT/migration.svg"
}

# All of it in one function: bash has read the whole file before it runs
# anything, so editing the script while a demo runs cannot derail it.
main() {
	step_check
	step_deps
	step_build
	step_cluster
	step_mkfs
	step_mount
	step_guest
	step_locks
	step_destination
	step_migrate
	step_after
	step_chart
	step "done in $(elapsed)"
	if [ "$NOTYET" -gt 0 ]; then
		info "$NOTYET part(s) above are ${Y}not available yet${N} in this version of vmfs (see the Status table in README.md)"
	fi
}
main "$@"
