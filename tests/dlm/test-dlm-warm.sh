#!/bin/bash
# The ring warm-up (vmfs_dlm_warm, include/vmfs/dlm.h; dlm/daemon/warm.c) on a
# 3-host cluster: it sends NOOPs that every host validates and drops, it ends
# by itself at its deadline, early when the client's next request is applied
# or when the client goes, the NOOPs change no lock and no table (same
# locks, no message dropped as malformed, a waiting request still granted in order),
# (the rsm never sees them: seq is not checked here because every vmfsctl
# call moves it with its CLIENT_GONE), and malformed or out-of-range WARM requests are refused with a clear error
# while the daemon stays up.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
cluster_up 3
. "$VMFS_SRCDIR/tests/dlm/probe.sh"
CTL=$VMFSCTL
RAW=$VMFS_BUILDDIR/tests/dlm/dlm-rawipc

# field H KEY: KEY of host H's `vmfsctl status --json`
field() {
	hexec "$1" "$CTL" status --json |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}
warm_is_off() { [ "$(field 1 warm)" = False ]; }
locks_of() { hexec "$1" "$CTL" locks --json --lockspace w; }

echo "# 1. NOOPs go round while a warm-up lasts; every host drops them, no table changes"
probe_start a 1
probe_start c 2
probe_cmd a lock x w r1 EX
probe_wait a '^granted x '
probe_cmd c lock y w r1 PR
wait_for 20 "host2's request for w/r1 is queued" sh -c \
	"'$VC' exec 1 '$CTL' locks --json --lockspace w | grep -q '\"waiting\"'"
for h in 1 2 3; do
	eval "drop$h=$(field "$h" messages_dropped)"
	eval "seen$h=$(field "$h" noops_delivered)"
	locks_of "$h" >"$T/locks-before-$h"
done
sent0=$(field 1 warm_noops_sent)
probe_cmd a warm 400
probe_wait a '^warm ok'
sleep 1.5	# 400 ms, then well past it
sent1=$(field 1 warm_noops_sent)
((sent1 > sent0)) || die "no NOOP sent during a 400 ms warm-up ($sent0 -> $sent1)"
warm_is_off || die "the warm-up still runs 1.5 s after a 400 ms request"
sleep 0.5
sent2=$(field 1 warm_noops_sent)
[ "$sent2" = "$sent1" ] || die "NOOPs still sent after the warm-up ended ($sent1 -> $sent2)"
echo "  $((sent1 - sent0)) NOOPs in a 400 ms warm-up"
for h in 1 2 3; do
	d=$(field "$h" messages_dropped); n=$(field "$h" noops_delivered)
	eval "[ \"$d\" = \"\$drop$h\" ]" || die "host$h: messages dropped during the warm-up"
	eval "((n - seen$h >= sent1 - sent0))" || die "host$h: saw fewer NOOPs than were sent"
	locks_of "$h" >"$T/locks-after-$h"
	cmp -s "$T/locks-before-$h" "$T/locks-after-$h" || {
		diff "$T/locks-before-$h" "$T/locks-after-$h" >&2 || true
		die "host$h: the lock table changed during the warm-up"; }
done
# locks still work, in order: the waiter is granted when the holder goes
probe_cmd a unlock x
probe_wait a '^unlocked x'
probe_wait c '^granted y '
probe_cmd c unlock y
probe_wait c '^unlocked y'

# The daemon counts warm-ups ended before their deadline, by cause (a
# vmfsctl call takes 0.3-2 s on a loaded machine: too slow to see the end).
echo "# 2. the client's next request ends the warm-up at once, an older one's grant does not"
probe_cmd c lock k w r4 EX
probe_wait c '^granted k '
probe_cmd a lock q w r4 EX
wait_for 20 "host1's request for w/r4 is queued" sh -c \
	"'$VC' exec 1 '$CTL' locks --json --lockspace w | grep -q '\"waiting\"'"
r0=$(field 1 warm_ended_by_request)
t0=$(date +%s%N)
probe_cmd a warm 1000
probe_wait a '^warm ok'
probe_cmd c unlock k
probe_wait a '^granted q '
t1=$(date +%s%N)
[ "$(field 1 warm_ended_by_request)" = "$r0" ] ||
	die "the late grant of a request made before the warm-up ended it"
(((t1 - t0) / 1000000 < 900)) ||
	echo "  (the grant came $(((t1 - t0) / 1000000)) ms after the warm-up call: proves little)"
probe_cmd a warm 1000
probe_cmd a lock z w r2 EX
probe_wait a '^granted z '
[ "$(field 1 warm_ended_by_request)" = $((r0 + 1)) ] ||
	die "the client's request did not end its warm-up"
probe_cmd a unlock z
probe_wait a '^unlocked z'
probe_cmd a unlock q
probe_wait a '^unlocked q'

echo "# 3. a client that goes ends its warm-up"
g0=$(field 1 warm_ended_by_disconnect)
probe_start b 1
probe_cmd b warm 1000
probe_wait b '^warm ok'
probe_stop b
[ "$(field 1 warm_ended_by_disconnect)" = $((g0 + 1)) ] ||
	die "the client's disconnection did not end its warm-up"
wait_for 10 "the warm-up to end" warm_is_off

echo "# 4. bad requests are refused, the daemon stays up"
probe_cmd a warm 1001
probe_wait a '^warm err=' || die "the library accepted warm 1001"
sizes=$("$RAW" sizes)
ws=$(echo "$sizes" | tr ' ' '\n' | sed -n 's/^warm=//p')
hs=$(echo "$sizes" | tr ' ' '\n' | sed -n 's/^header=//p')
out=$(hexec 1 "$RAW" warm "$ws" 100 0) || die "dlm-rawipc: no answer"
[ "$out" = error=0 ] || die "a well-formed WARM was refused: $out"
out=$(hexec 1 "$RAW" warm "$ws" 1001 0)
[ "$out" = error=-22 ] || die "WARM of 1001 ms: $out, expected -EINVAL"
out=$(hexec 1 "$RAW" warm "$ws" 100 1)
[ "$out" = error=-22 ] || die "WARM with unknown flags: $out, expected -EINVAL"
out=$(hexec 1 "$RAW" warm $((ws + 8)) 100 0)
[ "$out" = error=-4008 ] || die "oversized WARM: $out, expected VMFS_DLM_EPROTO"
out=$(hexec 1 "$RAW" warm "$hs" 100 0)
[ "$out" = error=-4008 ] || die "header-only WARM: $out, expected VMFS_DLM_EPROTO"
grep -q "WARM of $((ws + 8)) bytes, expected $ws" \
	"/run/vmfs-cluster/$VMFS_CLUSTER_ID/h1/log/vmfs-dlmd.log" ||
	die "the daemon did not log the oversized WARM"
[ "$(field 1 synced)" = True ] || die "host1's daemon is not synced after the bad requests"
probe_cmd a lock v w r3 EX
probe_wait a '^granted v ' || die "no lock after the bad requests"
probe_stop a
probe_stop c
echo "PASS"
