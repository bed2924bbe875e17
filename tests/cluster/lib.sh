# shellcheck shell=bash
# tests/cluster/lib.sh — sourced by the cluster tests (see README.md).
#
#   . "$(dirname "$0")/lib.sh"
#   skip_unless_root_and_tools
#   cluster_up 3                  # sets DISK
#   hexec 1 vmfsctl status
#   wait_for 10 "host3 to see 3 members" host_sees 3 3
#
# Provides: VC (the harness), VMFS_CLUSTER_ID (unique per test and build),
# VMFSCTL, VMFS_SRCDIR, T (a private directory, removed when the test passes),
# DISK (after cluster_up).
# On exit the cluster is always torn down; when the test failed the daemons'
# logs are printed first.  Exit codes follow automake: 0 pass, 1 fail, 77 skip,
# 99 hard error (the teardown itself failed).

set -euo pipefail

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VC=$LIB_DIR/vmfs-cluster
TEST_NAME=$(basename "$0" .sh)
# Set by "make check" (tests/Makefile.am); defaults for a test run by hand.
VMFS_SRCDIR=${VMFS_SRCDIR:-$(cd "$LIB_DIR/../.." && pwd)}
export VMFS_SRCDIR
# Where test processes record the cluster ids they used, so that the leak test
# checks the clusters of this build and not those of someone else's run.
VMFS_CLUSTER_REGISTRY=${VMFS_CLUSTER_REGISTRY:-/run/vmfs-cluster-tests.ids}
VMFS_TEST_BUILD_KEY=${VMFS_BUILDDIR:-$LIB_DIR}
export VC VMFS_CLUSTER_REGISTRY VMFS_TEST_BUILD_KEY

die() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

info() { echo "# $TEST_NAME: $*" >&2; }

# A cluster id (4 characters, "t" + 3 base-36 digits) hashed from the build
# and the test name: unique per test, and two builds on one machine do not
# collide.
cluster_id_for() {
	local h digits=0123456789abcdefghijklmnopqrstuvwxyz id=t i
	h=$(printf '%s|%s' "$VMFS_TEST_BUILD_KEY" "$1" | cksum | cut -d' ' -f1)
	for ((i = 0; i < 3; i++)); do
		id+=${digits:h % 36:1}
		h=$((h / 36))
	done
	echo "$id"
}

VMFS_CLUSTER_ID=$(cluster_id_for "$TEST_NAME")
unset VMFS_CLUSTER_DIR
export VMFS_CLUSTER_ID

skip_unless_root_and_tools() {
	local t
	if [[ $(id -u) != 0 ]]; then
		echo "SKIP: $TEST_NAME: needs root (network and mount namespaces)" >&2
		exit 77
	fi
	for t in corosync corosync-quorumtool nsenter unshare ip tc mountpoint; do
		if ! command -v "$t" >/dev/null; then
			echo "SKIP: $TEST_NAME: $t is not installed" >&2
			exit 77
		fi
	done
}

# The built vmfs-dlmd, if any (the harness's own lookup order).
dlmd_built() {
	[[ -n ${VMFS_DLMD:-} ]] ||
		[[ -n ${VMFS_BUILDDIR:-} && -x $VMFS_BUILDDIR/dlm/vmfs-dlmd ]] ||
		[[ -x $LIB_DIR/../../dlm/vmfs-dlmd ]] ||
		command -v vmfs-dlmd >/dev/null
}

# need_vmfs: a test of vmfs mounts on the cluster.  Skips without FUSE or
# python3 (PY: the distribution's, which starts in 0.1 s where a pyenv shim
# takes 0.8-1.8 s); fails unless vmfs-dlmd, vmfsctl and the fs programs
# (MOUNT, MKFS, FSCK, set here from VMFS_BUILDDIR) are built.
need_vmfs() {
	local p b=${VMFS_BUILDDIR:-$VMFS_SRCDIR}
	[[ -c /dev/fuse ]] || { echo "SKIP: $TEST_NAME: /dev/fuse missing" >&2; exit 77; }
	command -v fusermount3 >/dev/null || { echo "SKIP: $TEST_NAME: fusermount3 missing" >&2; exit 77; }
	PY=python3
	[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
	command -v "$PY" >/dev/null || { echo "SKIP: $TEST_NAME: python3 missing" >&2; exit 77; }
	dlmd_built || die "vmfs-dlmd is not built"
	MOUNT=$b/fs/vmfs-mount MKFS=$b/fs/vmfs-mkfs FSCK=$b/fs/vmfs-fsck
	for p in "$MOUNT" "$MKFS" "$FSCK" "$VMFSCTL"; do
		[[ -x $p ]] || die "$p is not built"
	done
}

# vmfsctl for the tests (the harness's lookup order); "vmfsctl" if not built.
_find_vmfsctl() {
	local c
	for c in ${VMFS_BUILDDIR:+"$VMFS_BUILDDIR/vmfsctl/vmfsctl"} "$LIB_DIR/../../vmfsctl/vmfsctl"; do
		if [[ -x $c && -f $c ]]; then
			echo "$c"
			return
		fi
	done
	command -v vmfsctl || echo vmfsctl
}
VMFSCTL=${VMFSCTL:-$(_find_vmfsctl)}
export VMFSCTL

# T: the test's private directory, visible from every host (not under /run).
_tmp=${TMPDIR:-/tmp}
case $_tmp in /run | /run/* | /dev/shm | /dev/shm/*) _tmp=/tmp ;; esac
T=$(mktemp -d "$_tmp/vmfs-test-$TEST_NAME.XXXXXX")
export T
unset _tmp

_cluster_cleanup() {
	local rc=$?
	trap - EXIT
	if [[ ${_CLUSTER_STARTED:-0} == 1 ]]; then
		if ((rc != 0 && rc != 77)) && [[ -d /run/vmfs-cluster/$VMFS_CLUSTER_ID ]]; then
			echo "---- $TEST_NAME failed (exit $rc); vmfs-cluster status and logs:" >&2
			"$VC" status >&2 || true
			"$VC" logs >&2 || true
		fi
		if ! "$VC" down; then
			echo "ERROR: $TEST_NAME: vmfs-cluster down failed" >&2
			((rc != 0)) || rc=99
		fi
	fi
	if ((rc == 0 || rc == 77)); then
		rm -rf -- "$T"
	else
		echo "# $TEST_NAME: private directory kept: $T" >&2
	fi
	exit "$rc"
}
trap _cluster_cleanup EXIT

# cluster_up N [vmfs-cluster up options]: start the cluster; sets DISK.
cluster_up() {
	if [[ -d /run/vmfs-cluster/$VMFS_CLUSTER_ID ]]; then
		echo "ERROR: cluster id $VMFS_CLUSTER_ID is in use (left over, or this test" \
			"runs twice); 'VMFS_CLUSTER_ID=$VMFS_CLUSTER_ID $VC down' removes it" >&2
		exit 99
	fi
	printf '%s %s %s\n' "$VMFS_CLUSTER_ID" "$VMFS_TEST_BUILD_KEY" "$TEST_NAME" \
		>>"$VMFS_CLUSTER_REGISTRY"
	_CLUSTER_STARTED=1
	info "cluster $VMFS_CLUSTER_ID: up $*"
	DISK=$("$VC" up "$@") || die "vmfs-cluster up $* failed"
	export DISK
}

# hexec I CMD...: run CMD inside host I.
hexec() { "$VC" exec "$@"; }

# wait_for TIMEOUT_SEC DESCRIPTION CMD...: poll CMD until it succeeds.  On
# timeout it prints the description and returns 1, so that under set -e the
# test fails, and "wait_for ... || { show more; return 1; }" still works.
wait_for() {
	local timeout=$1 what=$2 end
	shift 2
	end=$((SECONDS + timeout))
	until "$@"; do
		if ((SECONDS >= end)); then
			echo "FAIL: $TEST_NAME: timed out after ${timeout}s waiting for $what" >&2
			return 1
		fi
		sleep 0.2
	done
}

# host_quorum I: prints "Yes N" / "No N" (quorate, node count) as corosync on
# host I sees it; nothing if corosync does not answer.
host_quorum() {
	local out
	out=$(hexec "$1" corosync-quorumtool -s 2>/dev/null) || true
	awk '/^Quorate:/ { q = $2 } /^Nodes:/ { n = $2 }
		END { if (q != "") print q, n }' <<<"$out"
}

# host_sees I NODES [Yes|No]: host I's corosync sees NODES nodes (and quorum).
host_sees() {
	local got
	got=$(host_quorum "$1")
	[[ $got == "${3:-Yes} $2" ]]
}

# --------------------------------------------------------------- leak check

# leaks_of ID: print what cluster ID left behind, one line each.
leaks_of() {
	local id=$1 dir=/run/vmfs-cluster/$1
	ip netns list | awk -v id="$id" '
		$1 == id "-sw" || (index($1, id "-h") == 1 &&
			substr($1, length(id) + 3) ~ /^[0-9]+$/) { print "namespace " $1 }'
	[[ ! -e $dir ]] || echo "state dir $dir"
	awk -v d="$dir" '$5 == d || index($5, d "/") == 1 || index($4, d) == 1 {
		print "mount " $5 }' /proc/self/mountinfo
	# (the path goes through the environment so that awk does not match itself)
	ps -e -o pid=,stat=,args= | D="$dir/" awk '
		$2 !~ /^Z/ && index($0, ENVIRON["D"]) { $2 = ""; print "process " $0 }'
}

# cluster_ids_seen: ids of every harness cluster visible on this machine.
cluster_ids_seen() {
	{
		ip netns list | awk '{ print $1 }' | sed -En 's/^(.+)-(sw|h[0-9]+)$/\1/p'
		local d
		for d in /run/vmfs-cluster/*; do
			[[ -e $d ]] && echo "${d##*/}"
		done
		grep -o '/run/vmfs-cluster/[^/ ]*' /proc/self/mountinfo | cut -d/ -f4
		# [r]: grep must not find its own command line
		ps -e -o stat=,args= | awk '$1 !~ /^Z/' |
			grep -o '/run/vmfs-cluste[r]/[^/ ]*' | cut -d/ -f4
	} | sort -u
}

# cluster_ids_mine: ids that tests of this build registered.
cluster_ids_mine() {
	[[ -r $VMFS_CLUSTER_REGISTRY ]] || return 0
	awk -v k="$VMFS_TEST_BUILD_KEY" '$2 == k { print $1 }' "$VMFS_CLUSTER_REGISTRY" | sort -u
}

# qb_shm_leaks: libqb shm files in the root /dev/shm that no live process
# owns.  Hosts have their own /dev/shm, so these come from a process outside
# any host.  libqb puts the owners' pids in the names (qb-corosync-PID-blackbox-data,
# qb-cpg-request-SERVERPID-CLIENTPID-...): a file is left over when none of the
# numbers in its name is a live process.
qb_shm_leaks() {
	local f n live name
	local -a nums
	for f in /dev/shm/qb-*; do
		[[ -e $f ]] || continue
		live=0
		name=${f##*/}
		read -r -a nums <<<"${name//[!0-9]/ }"
		for n in "${nums[@]}"; do
			if [[ -d /proc/$n ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$n/status" 2>/dev/null; then
				live=1
				break
			fi
		done
		((live)) || echo "shm $f"
	done
	return 0
}
