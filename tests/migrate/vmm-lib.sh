# vmm-lib.sh — helpers for the vmfs-vmm tests (sourced).  Every wait has a
# timeout; every process started here is killed by pid on exit.
# Expects ACCEL=kvm|thread.

: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
VMM=$VMFS_BUILDDIR/migrate-helper/vmfs-vmm
GUESTS=$VMFS_BUILDDIR/migrate-helper/guests
DISKCHECK=$VMFS_BUILDDIR/tests/migrate/disk-check

if [ "$ACCEL" = kvm ]; then
	if [ ! -c /dev/kvm ] || ! (: <>/dev/kvm) 2>/dev/null; then
		echo "SKIP: /dev/kvm is missing or cannot be opened"
		exit 77
	fi
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-vmm-test.XXXXXX") || exit 99
PIDS=
# kill_vmm PID: SIGKILL, and remove the libqb blackbox a killed process
# cannot remove itself (the leak check would find it).
kill_vmm() {
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	rm -f "/dev/shm/qb-vmfs-vmm-$1-blackbox-data" "/dev/shm/qb-vmfs-vmm-$1-blackbox-header"
}
cleanup() {
	for p in $PIDS; do kill_vmm "$p"; done
	if [ -n "$KEEP" ] || [ "$rc_final" != 0 ]; then
		echo "--- logs kept in $T"
		for f in "$T"/*.log "$T"/*.serial; do
			[ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
		done
	else
		rm -rf "$T"
	fi
}
rc_final=99
trap 'cleanup' EXIT
fail() { echo "FAIL: $*"; rc_final=1; exit 1; }

# The key both hosts share; a second one for the wrong-key test.
printf 'vmfs-test-key-0123456789abcdef\n' > "$T/key"
printf 'some-other-key-0123456789abcdef\n' > "$T/badkey"
truncate -s 16M "$T/disk.img"

image_args() {
	if [ "$ACCEL" = kvm ]; then
		echo "--accel kvm --image $GUESTS/guest.bin"
	else
		echo "--accel thread --image $GUESTS/guest.bin --native-guest $GUESTS/guest-native.so"
	fi
}

# start_vmm NAME ARGS...: control socket $T/NAME.sock, serial $T/NAME.serial
start_vmm() {
	name=$1; shift
	# shellcheck disable=SC2046
	"$VMM" $(image_args) --ctrl "$T/$name.sock" --serial "$T/$name.serial" \
		--disk "$T/disk.img" --name testvm --mac 52:54:00:aa:bb:cc "$@" \
		>"$T/$name.log" 2>&1 &
	eval "PID_$name=$!"
	PIDS="$PIDS $!"
	wait_for 10 "control socket of $name" test -S "$T/$name.sock"
}

ctl() { name=$1; shift; "$VMM" --client "$T/$name.sock" "$@"; }

# json_field JSON KEY: the first string or number value of KEY.
json_field() {
	printf '%s' "$1" | grep -o "\"$2\":\"\{0,1\}[^\",}]*" | head -n 1 | sed 's/^[^:]*:"\{0,1\}//'
}

# wait_for SECONDS WHAT COMMAND...  SECONDS of wall time: each try costs
# more than its 0.1 s sleep (a --client start is ~0.3 s on a slow or
# emulated machine), so counting tries made a 60 s wait last minutes.
wait_for() {
	secs=$1; what=$2; shift 2
	deadline=$(($(date +%s) + secs))
	while ! "$@" 2>/dev/null; do
		[ "$(date +%s)" -ge "$deadline" ] && fail "timed out after ${secs}s waiting for $what"
		sleep 0.1
	done
}

serial_has() { grep -q "$2" "$T/$1.serial"; }
state_is() { [ "$(json_field "$(ctl "$1" status)" state)" = "$2" ]; }
mig_status_is() {
	s=$(ctl "$1" status | sed -n 's/.*"migration":{.*"status":"\([a-z]*\)".*/\1/p')
	[ "$s" = "$2" ]
}
# grep -c prints 0 itself when nothing matches (and fails): print one number.
ticks() { c=$(grep -c 'vmfs-guest: tick' "$T/$1.serial" 2>/dev/null); echo "${c:-0}"; }
last_tick_t() { grep 'vmfs-guest: tick' "$T/$1.serial" | tail -n 1 | sed 's/.* t=\([0-9]*\).*/\1/'; }
alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! kill -0 "$1" 2>/dev/null; }
