#!/bin/bash
# Lock manager benchmark on 3 hosts, each figure beside the raw CPG agreed
# multicast measured in the same run.  Target: uncontended acquire p50 at
# most 1.5x the raw multicast p50.
set -euo pipefail
. "${VMFS_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/lib.sh"
skip_unless_root_and_tools
cluster_up 3
B=${VMFS_BUILDDIR}/tests/dlm/bench-dlm
N=${BENCH_N:-2000}
SEC=${BENCH_SEC:-5}
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

# Baseline: raw CPG agreed multicast round trip with members on all hosts.
hexec 2 "$B" cpg-member 30 & m2=$!
hexec 3 "$B" cpg-member 30 & m3=$!
sleep 1
cpg=$(hexec 1 "$B" cpg-rtt "$N")
kill "$m2" "$m3" 2>/dev/null || true; wait "$m2" "$m3" 2>/dev/null || true
cpg50=$(echo "$cpg" | field cpg_p50_us); cpg99=$(echo "$cpg" | field cpg_p99_us)

lock=$(hexec 1 "$B" lock-rtt "$N")
acq50=$(echo "$lock" | field acquire_p50_us); acq99=$(echo "$lock" | field acquire_p99_us)
cyc50=$(echo "$lock" | field cycle_p50_us)

# Re-acquiring a cached lock (DESIGN.md decision 2: no message at all).
cached=$(hexec 1 "$B" cached-rtt "$N")
cch50=$(python3 -c "print(f'{$(echo "$cached" | field acquire_p50_ns)/1000:.2f}')")
cch99=$(python3 -c "print(f'{$(echo "$cached" | field acquire_p99_ns)/1000:.2f}')")

hexec 1 "$B" pingpong "$SEC" pp > "$T/pp1" & p1=$!
hexec 2 "$B" pingpong "$SEC" pp > "$T/pp2" & p2=$!
wait "$p1" "$p2"
pp=$(( $(field acquisitions < "$T/pp1") + $(field acquisitions < "$T/pp2") ))

for h in 1 2 3; do hexec "$h" "$B" throughput "$SEC" 4 > "$T/tp$h" & done
wait
ops=0; for h in 1 2 3; do ops=$((ops + $(field ops < "$T/tp$h"))); done

# Parenthesised: the arguments may be expressions ("$pp/$SEC").
ratio() { python3 -c "print(f'{($1)/($2):.2f}')"; }
# Two significant digits, for ratios far below 0.01.
ratio_g() { python3 -c "print(f'{($1)/($2):.2g}')"; }
echo "raw CPG agreed multicast:  p50 ${cpg50} us  p99 ${cpg99} us   (baseline)"
echo "uncontended acquire:       p50 ${acq50} us  p99 ${acq99} us   ratio p50 $(ratio "$acq50" "$cpg50")x (target <= 1.5x)"
echo "acquire + release:         p50 ${cyc50} us                 ratio $(ratio "$cyc50" "$cpg50")x of one multicast"
echo "cached re-acquire: p50 ${cch50} us (ratio $(ratio_g "$cch50" "$cpg50") x of one multicast)  p99 ${cch99} us"
echo "EX ping-pong, 2 hosts:     $((pp / SEC)) acquisitions/s     ($(ratio "$pp/$SEC" "1000000/$cpg50")x of 1/multicast-rtt)"
echo "throughput, 3x4 clients:   $((ops / SEC)) acquire+release/s ($(ratio "$ops/$SEC" "1000000/$cpg50")x of 1/multicast-rtt)"
