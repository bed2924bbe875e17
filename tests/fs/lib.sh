# lib.sh — shared helpers of the fs tests (sourced).
#
# Each test gets a private directory and runs in its own mount namespace
# (mounts stay invisible to, and safe from, anything else on the machine);
# an EXIT trap unmounts and kills whatever the test started.

: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${VMFS_SRCDIR:=$VMFS_BUILDDIR}"
MKFS=$VMFS_BUILDDIR/fs/vmfs-mkfs
FSCK=$VMFS_BUILDDIR/fs/vmfs-fsck
MOUNT=$VMFS_BUILDDIR/fs/vmfs-mount
TESTBIN=$VMFS_BUILDDIR/tests/fs

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
hard() { echo "ERROR: $*"; exit 99; }

need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
need_fuse() {
	[ -c /dev/fuse ] || skip "/dev/fuse missing"
	command -v fusermount3 >/dev/null || skip "fusermount3 missing"
}

# Re-run the calling script inside a private mount namespace.
private_ns() {
	if [ -z "$VMFS_TEST_NS" ]; then
		command -v unshare >/dev/null || skip "unshare missing"
		VMFS_TEST_NS=1 exec unshare -m --propagation private "$SHELL_CMD" "$0" "$@"
	fi
}
SHELL_CMD=${BASH:-/bin/sh}

# A process killed with SIGKILL leaves its libqb blackbox in /dev/shm; the
# leak check (tests/cluster/test-zz-leaks.sh) would rightly complain.
drop_blackbox() {
	rm -f /dev/shm/qb-*-"$1"-blackbox-* 2>/dev/null
}

MOUNTS=""
PIDS=""
LOOPS=""
cleanup() {
	for m in $MOUNTS; do
		fusermount3 -u -z "$m" 2>/dev/null
	done
	for p in $PIDS; do
		kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null
		drop_blackbox "$p"
	done
	for l in $LOOPS; do
		losetup -d "$l" 2>/dev/null
	done
	[ -n "$T" ] && [ -z "$KEEP" ] && rm -rf "$T"
}
setup_dir() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-fs-test.XXXXXX") || hard "mktemp"
	trap cleanup EXIT
	trap 'exit 99' INT TERM
}

# wait_until SECONDS CMD...: poll until CMD succeeds; 1 on timeout.
wait_until() {
	_t=$1; shift
	_n=$((_t * 10))
	while [ $_n -gt 0 ]; do
		"$@" 2>/dev/null && return 0
		sleep 0.1
		_n=$((_n - 1))
	done
	return 1
}

is_mounted() { grep -q " $1 fuse.vmfs " /proc/self/mounts; }

# vmount IMG DIR [opts...]: daemon mode; returns when mounted.
vmount() {
	_img=$1 _dir=$2; shift 2
	mkdir -p "$_dir"
	"$MOUNT" "$@" "$_img" "$_dir" 2>>"$T/mount.log" || return 1
	MOUNTS="$MOUNTS $_dir"
	is_mounted "$_dir"
}

# vumount DIR: unmount and wait (bounded) for the daemon to finish.
vumount() {
	fusermount3 -u "$1" || return 1
	wait_until 20 sh -c "! pgrep -f 'vmfs-mount .* $1\$' >/dev/null"
}

new_image() {	# new_image FILE SIZE [mkfs args...]
	_f=$1 _s=$2; shift 2
	rm -f "$_f"
	truncate -s "$_s" "$_f" || hard "truncate"
	"$MKFS" -q "$@" "$_f" || fail "mkfs $*"
}
