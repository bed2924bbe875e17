# vmm-guest.sh — the test guest boots under vmfs-vmm, reports on the serial
# console, writes continuous disk records, and the control socket answers.
. "$(dirname "$0")/vmm-lib.sh"

start_vmm a --ram 32 --cpus 2 --dirty-rate 1024 --work-mib 16
wait_for 20 "guest boot line" serial_has a "vmfs-guest: up cpus=2"
wait_for 20 "three ticks" sh -c "[ \$(grep -c 'vmfs-guest: tick' '$T/a.serial') -ge 3 ]"
st=$(ctl a status) || fail "status failed"
echo "status: $st"
[ "$(json_field "$st" state)" = running ] || fail "state is not running"
[ "$(json_field "$st" accel)" = "$ACCEL" ] || fail "accel is not $ACCEL"
grep -q 'verify FAILED' "$T/a.serial" && fail "guest memory verification failed"
ctl a migrate 2>/dev/null | grep -q '"ok":false' || fail "migrate without a target accepted"
ctl a bogus | grep -q 'unknown command' || fail "unknown command not refused"
# The AP (vCPU 1) makes progress too.
ap=$(grep 'vmfs-guest: tick' "$T/a.serial" | tail -n 1 | sed 's/.* ap0=\([0-9]*\).*/\1/')
[ "${ap:-0}" -gt 0 ] || fail "vCPU 1 did not run"
ctl a stop >/dev/null
wait_for 10 "vmm exit" dead "$PID_a"
"$DISKCHECK" "$T/disk.img" || fail "disk records not continuous"
tail -n 3 "$T/a.serial"

# The same guest as a multiboot ELF (loaded by its program headers; under
# the thread accelerator this checks the loader accepts it).
rm -f "$T/a.sock"
truncate -s 0 "$T/disk.img" && truncate -s 16M "$T/disk.img"
start_vmm elf --ram 32 --record-ms 0 --image "$GUESTS/guest.elf"
wait_for 20 "ELF guest boot line" serial_has elf "vmfs-guest: up"
ctl elf stop >/dev/null
wait_for 10 "vmm exit" dead "$PID_elf"
# A file that is neither is refused with a clear error.
printf '\177ELF garbage' > "$T/bad.elf"
"$VMM" $(image_args) --image "$T/bad.elf" --ctrl "$T/bad.sock" >"$T/bad.log" 2>&1 &&
	fail "a broken ELF image was accepted"
grep -q 'image .*bad.elf' "$T/bad.log" || fail "no error naming the bad image"
rc_final=0
