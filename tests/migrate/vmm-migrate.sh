# vmm-migrate.sh — live-migrate a running guest between two vmfs-vmm
# processes on loopback: the guest keeps running (its clock and counters go
# on), the memory is identical (SHA-256 of all RAM on both sides at the
# switchover, and the guest's own verification after resume), and its disk
# records are continuous across the move.
. "$(dirname "$0")/vmm-lib.sh"

opts="--ram 64 --cpus 2 --dirty-rate 8192 --work-mib 48 --verify-ram --psk-file $T/key"
start_vmm src $opts
wait_for 20 "guest boot" serial_has src "vmfs-guest: up"
wait_for 20 "two ticks" sh -c "[ \$(grep -c 'vmfs-guest: tick' '$T/src.serial') -ge 2 ]"
start_vmm dst $opts --incoming 127.0.0.1:0
port=$(json_field "$(ctl dst status)" incoming_port)
[ -n "$port" ] && [ "$port" != 0 ] || fail "no incoming port"
t_before=$(last_tick_t src)
ctl src migrate "127.0.0.1:$port" | grep -q '"ok":true' || fail "migrate refused"
wait_for 60 "source postmigrate" state_is src postmigrate
wait_for 20 "destination running" state_is dst running
wait_for 20 "guest resume report" serial_has dst "vmfs-guest: resume n=1"
grep 'vmfs-guest: resume' "$T/dst.serial"
serial_has dst "resume n=1 verify ok" || fail "guest memory check after resume failed"
# The guest goes on on the destination: new ticks, later clock.
wait_for 20 "ticks on the destination" sh -c "grep -q 'vmfs-guest: tick.*resumes=1' '$T/dst.serial'"
t_after=$(last_tick_t dst)
[ "$t_after" -gt "$t_before" ] || fail "guest clock went back ($t_before -> $t_after)"
src_st=$(ctl src status); dst_st=$(ctl dst status)
h1=$(json_field "$src_st" ram_sha256); h2=$(json_field "$dst_st" ram_sha256)
echo "RAM sha256 source $h1"
echo "RAM sha256 dest   $h2"
[ -n "$h1" ] && [ "$h1" = "$h2" ] || fail "RAM differs between source and destination"
mig=$(printf '%s' "$src_st" | sed 's/.*"migration"://')
for k in status total_time_ms setup_time_ms downtime_ms transferred_bytes zero_pages \
	 normal_pages rounds throughput_mbps expected_downtime_ms; do
	printf '%s=%s ' "$k" "$(json_field "$mig" "$k")"
done; echo
printf '%s' "$mig" | grep -o '"downtime_breakdown":{[^}]*}'
[ "$(json_field "$mig" status)" = completed ] || fail "migration status not completed"
grep -q 'verify FAILED' "$T/dst.serial" "$T/src.serial" && fail "guest verification failed"
# The source must not run the guest any more: its serial stays silent.
n1=$(wc -l < "$T/src.serial"); sleep 1; n2=$(wc -l < "$T/src.serial")
[ "$n1" = "$n2" ] || fail "source still runs the guest"

# A second hop: the VM that arrived moves on again (its loaded vCPU and
# device state migrate like freshly booted ones).
start_vmm dst2 $opts --incoming 127.0.0.1:0
port2=$(json_field "$(ctl dst2 status)" incoming_port)
# (VMFS_TEST_HOP2_ARGS: kvm-in-tcg.sh's emulated machine needs seconds)
ctl dst migrate "127.0.0.1:$port2" ${VMFS_TEST_HOP2_ARGS:-downtime-ms=50} | grep -q '"ok":true' ||
	fail "second migrate refused"
wait_for 60 "first destination postmigrate" state_is dst postmigrate
wait_for 20 "guest resume report after the second hop" serial_has dst2 "vmfs-guest: resume n=2"
serial_has dst2 "resume n=2 verify ok" || fail "guest memory check after the second hop failed"
h3=$(json_field "$(ctl dst status)" ram_sha256); h4=$(json_field "$(ctl dst2 status)" ram_sha256)
[ -n "$h3" ] && [ "$h3" = "$h4" ] || fail "RAM differs after the second hop"
wait_for 20 "ticks after the second hop" sh -c "grep -q 'vmfs-guest: tick.*resumes=2' '$T/dst2.serial'"
echo "second hop: $(json_field "$(ctl dst status)" downtime_ms) ms downtime"

for n in dst2 dst src; do ctl $n stop >/dev/null; done
wait_for 10 "exit" sh -c "! kill -0 $PID_src 2>/dev/null && ! kill -0 $PID_dst 2>/dev/null && ! kill -0 $PID_dst2 2>/dev/null"
"$DISKCHECK" "$T/disk.img" 2 || fail "disk records not continuous across the migrations"
rc_final=0
