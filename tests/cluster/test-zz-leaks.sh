#!/bin/bash
# Runs after every other test (see cluster.am): fails if a harness cluster
# left namespaces, state dirs, mounts, daemons or libqb shm files behind.
#
# Clusters registered by the tests of this build are always checked.  Other
# harness clusters found on the machine (someone else's run, a manual
# "vmfs-cluster up") are only reported, unless VMFS_LEAK_CHECK_ALL=1 (CI sets
# it: there nothing else runs).
. "$(dirname "$0")/lib.sh"

if [[ $(id -u) != 0 ]]; then
	echo "SKIP: $TEST_NAME: needs root (the cluster tests were skipped too)" >&2
	exit 77
fi

all=${VMFS_LEAK_CHECK_ALL:-0}
mine=" $(cluster_ids_mine | tr '\n' ' ') "
failed=0
report() {
	local id=$1 what=$2
	if [[ $all == 1 || $mine == *" $id "* ]]; then
		echo "LEAK: cluster $id: $what" >&2
		failed=1
	else
		echo "# note: cluster $id (not from this build's tests): $what" >&2
	fi
}

# Our own registrations, even if nothing of them is visible any more, plus
# whatever harness cluster is visible now.
for id in $( (cluster_ids_mine; cluster_ids_seen) | sort -u); do
	while IFS= read -r leak; do
		[[ -n $leak ]] && report "$id" "$leak"
	done < <(leaks_of "$id")
done

while IFS= read -r leak; do
	[[ -z $leak ]] && continue
	if [[ $all == 1 ]]; then
		echo "LEAK: $leak (libqb shm outside any host)" >&2
		failed=1
	else
		echo "# note: $leak (libqb shm outside any host; VMFS_LEAK_CHECK_ALL=1 fails on it)" >&2
	fi
done < <(qb_shm_leaks)

if ((failed)); then
	echo "FAIL: $TEST_NAME: leaked resources above; 'VMFS_CLUSTER_ID=ID $VC down' removes a cluster" >&2
	exit 1
fi
echo "PASS: $TEST_NAME (checked: ${mine:- none })"
