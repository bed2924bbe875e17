# vmm-faults.sh — failures before the acknowledgement leave the VM running
# on the source: cancel, destination killed during pre-copy, wrong key,
# switchover hook refused, pre-flight refusal (different RAM size).
. "$(dirname "$0")/vmm-lib.sh"

opts="--ram 64 --dirty-rate 4096 --work-mib 48 --psk-file $T/key"
start_vmm src $opts --max-bandwidth 4000000
wait_for 20 "guest boot" serial_has src "vmfs-guest: up"

# still_running: the source VM is running and its guest keeps ticking.
still_running() {
	state_is src running || fail "source VM is not running after $1"
	n=$(ticks src)
	wait_for 10 "guest ticks after $1" sh -c "[ \$(grep -c 'vmfs-guest: tick' '$T/src.serial') -gt $n ]"
	grep -q 'verify FAILED' "$T/src.serial" && fail "guest verification failed after $1"
	echo "ok   $1: $(json_field "$(ctl src status)" error)"
}

incoming() {
	rm -f "$T/dst.sock"
	start_vmm dst "$@" --incoming 127.0.0.1:0
	port=$(json_field "$(ctl dst status)" incoming_port)
}

# 1. cancel during pre-copy (the bandwidth cap keeps it in pre-copy)
incoming $opts
ctl src migrate "127.0.0.1:$port" >/dev/null
wait_for 20 "pre-copy" mig_status_is src active
sleep 0.5
ctl src cancel >/dev/null
wait_for 20 "cancelled" mig_status_is src cancelled
still_running cancel
wait_for 20 "destination discards and exits" dead "$PID_dst"
grep -q 'discarded' "$T/dst.log" || fail "destination did not say it discarded"

# 2. destination killed during pre-copy
incoming $opts
ctl src migrate "127.0.0.1:$port" >/dev/null
wait_for 20 "pre-copy" mig_status_is src active
sleep 0.5
kill_vmm "$PID_dst"
wait_for 30 "failed" mig_status_is src failed
still_running "destination killed"

# 3. wrong key: refused as unauthenticated on the destination
incoming --ram 64 --dirty-rate 4096 --work-mib 48 --psk-file "$T/badkey"
ctl src migrate "127.0.0.1:$port" >/dev/null
wait_for 20 "failed" mig_status_is src failed
wait_for 20 "destination exits" dead "$PID_dst"
grep -q 'authentication failed' "$T/dst.log" || fail "destination did not report the authentication failure"
still_running "wrong key"

# 4. switchover hook refuses the handoff: paused, then resumed on the source
ctl src stop >/dev/null
wait_for 10 "exit" dead "$PID_src"
rm -f "$T/src.sock" "$T/src.serial"
"$DISKCHECK" "$T/disk.img" || fail "disk records not continuous (first boot)"
truncate -s 0 "$T/disk.img" && truncate -s 16M "$T/disk.img"	# a fresh run of records
start_vmm src $opts --handoff-exec /bin/false
wait_for 20 "guest boot" serial_has src "vmfs-guest: up"
incoming $opts
ctl src migrate "127.0.0.1:$port" >/dev/null
wait_for 60 "failed" mig_status_is src failed
ctl src status | grep -q 'switchover hook' || fail "error does not name the hook"
wait_for 20 "destination exits" dead "$PID_dst"
still_running "hook refused"

# 5. pre-flight: the destination has less RAM
incoming --ram 32 --dirty-rate 4096 --psk-file "$T/key"
ctl src migrate "127.0.0.1:$port" >/dev/null
wait_for 20 "failed" mig_status_is src failed
ctl src status | grep -q 'pre-flight' || fail "pre-flight refusal not reported"
still_running "pre-flight refused"

ctl src stop >/dev/null
wait_for 10 "exit" dead "$PID_src"
"$DISKCHECK" "$T/disk.img" || fail "disk records not continuous"
rc_final=0
