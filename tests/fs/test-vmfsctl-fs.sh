#!/bin/bash
# vmfsctl volume / hosts / fileinfo against a real volume: the fields match
# what mkfs was given and what the superblock bytes say (read here with
# python, independently of fs/), file sizes and allocated bytes are exact
# (also against the mount's own st_blocks), our host slot is live while
# mounted, free after unmount and dead after the mount is killed; bad
# arguments exit 1 with a message naming the object.
. "$(dirname "$0")/lib.sh"
need_root
need_fuse
command -v python3 >/dev/null || skip "python3 missing"
private_ns "$@"
setup_dir

CTL=$VMFS_BUILDDIR/vmfsctl/vmfsctl
BS=$((2 * 1048576))	# not the default, so the check means something
LABEL=ctl-test-vol
HOSTS=5
IMG=$T/img
M=$T/m

# The distribution's python starts in 0.1 s, a pyenv shim in 0.8 s.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
# jget FILE EXPR: print a python expression over the JSON document j
jget() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# jcheck FILE EXPR WANT [EXPR WANT]...: every expression prints as WANT
jcheck() {
	$PY - "$@" <<'PYEOF' || fail "unexpected fields in $(basename "$1"): $(cat "$1")"
import json, sys
j = json.load(open(sys.argv[1]))
bad = 0
for expr, want in zip(sys.argv[2::2], sys.argv[3::2]):
    got = str(eval(expr))
    if got != want:
        print("FAIL: %s: got '%s', expected '%s'" % (expr, got, want))
        bad = 1
sys.exit(bad)
PYEOF
}
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
blocks_of() { echo $(( ($1 + BS - 1) / BS )); }

new_image "$IMG" 512M --label "$LABEL" --max-hosts $HOSTS --block-size $BS

echo "# volume: fields match mkfs and the superblock bytes"
"$CTL" volume "$IMG" --json > "$T/vol.json" || fail "vmfsctl volume $IMG"
# the UUID at byte 96 of the superblock (vmfs(5)), as 8-4-4-4-12 hex
disk_uuid=$($PY -c 'import sys,uuid; f=open(sys.argv[1],"rb"); f.seek(96); print(uuid.UUID(bytes=f.read(16)))' "$IMG")
jcheck "$T/vol.json" \
	'j["label"]' "$LABEL" \
	'j["block_size"]' $BS \
	'j["max_hosts"]' $HOSTS \
	'j["hosts_in_use"]' 0 \
	'j["format_version"]' 1.0 \
	'j["size_bytes"]' $((512 * 1048576)) \
	'j["mountpoint"]' None \
	'j["uuid"]' "$disk_uuid" \
	'j["free_bytes"] == j["free_blocks"] * j["block_size"]' True \
	'0 < j["free_blocks"] <= j["total_blocks"]' True
free0=$(jget "$T/vol.json" 'j["free_blocks"]')
"$CTL" volume "$IMG" | grep -q "^label: *$LABEL\$" || fail "human volume output lacks the label"

echo "# hosts before mounting: every slot free"
"$CTL" hosts "$IMG" --json > "$T/hosts.json" || fail "vmfsctl hosts"
jcheck "$T/hosts.json" 'len(j["slots"])' $HOSTS \
	'sum(s["state"] == "free" for s in j["slots"])' $HOSTS

echo "# mount; write a 5 MiB file, a sparse file and a preallocated one"
vmount "$IMG" "$M" -o host=ctl-host-a || { cat "$T/mount.log"; fail "mount"; }
head -c $((5 * 1048576)) /dev/urandom > "$M/five" || fail "write five"
truncate -s 100M "$M/sparse" || fail "truncate sparse"
dd if=/dev/urandom of="$M/sparse" bs=1M count=1 seek=50 conv=notrunc status=none ||
	fail "write sparse"
fallocate -l 3M "$M/prealloc" || fail "fallocate"
echo small > "$M/small" || fail "write small"
head -c 10000 /dev/urandom > "$M/config" || fail "write config"	# 3 pages (fs/pages.h)

# check_file NAME SIZE ALLOC_BLOCKS UNWRITTEN_BLOCKS [inline]
check_file() {
	local f=$M/$1 j=$T/$1.json
	local ino
	"$CTL" fileinfo "$f" --json > "$j" || fail "vmfsctl fileinfo $f"
	ino=$(stat -c %i "$f")
	jcheck "$j" \
		'j["size"]' "$2" \
		'j["allocated_bytes"]' $(($3 * BS)) \
		'j["allocated_blocks"]' "$3" \
		'j["unwritten_blocks"]' "$4" \
		'j["block_size"]' $BS \
		'j["nlink"]' 1 \
		'j["inode"]' "$ino" \
		'j["mountpoint"]' "$M" \
		'j["device"]' "$(realpath "$IMG")" \
		'j["volume_uuid"]' "$disk_uuid" \
		'j["lock"]["taken_by_fs"]' True \
		'j["lock"]["resource"]' "i$ino" \
		'j["lock"]["lockspace"]' "$disk_uuid"
	# the mount's own view (fill_stat) of the same blocks
	if [ "$5" != inline ]; then
		expect "$1 st_blocks" $(( $(stat -c %b "$f") * 512 )) $(($3 * BS))
	fi
}
check_file five $((5 * 1048576)) "$(blocks_of $((5 * 1048576)))" 0
check_file sparse $((100 * 1048576)) 1 0
check_file prealloc $((3 * 1048576)) "$(blocks_of $((3 * 1048576)))" "$(blocks_of $((3 * 1048576)))"
check_file small 6 0 0 inline
jcheck "$T/small.json" 'j["inline"]' True
"$CTL" fileinfo "$M/config" --json > "$T/config.json" || fail "vmfsctl fileinfo config"
jcheck "$T/config.json" 'j["size"]' 10000 'j["allocated_bytes"]' 12288 'j["pages"]' 3 \
	'j["allocated_blocks"]' 0 'j["inline"]' False
expect "config st_blocks" $(( $(stat -c %b "$M/config") * 512 )) 12288
"$CTL" fileinfo "$M/config" | grep -q "^allocated: *12288 bytes (a small file: 3 pages" ||
	{ "$CTL" fileinfo "$M/config"; fail "human fileinfo of a small file"; }
"$CTL" fileinfo "$M/five" > "$T/five.txt" || fail "fileinfo human"
grep -q "^open lock: " "$T/five.txt" ||
	{ cat "$T/five.txt"; fail "human fileinfo lacks the lock line"; }
grep -q "^size: *5242880 bytes" "$T/five.txt" || { cat "$T/five.txt"; fail "human size"; }

echo "# volume through the mount: same volume, one host, less free space"
"$CTL" volume "$M" --json > "$T/vol2.json" || fail "vmfsctl volume $M"
jcheck "$T/vol2.json" 'j["uuid"]' "$disk_uuid" 'j["mountpoint"]' "$M" 'j["hosts_in_use"]' 1
used=$(( $(blocks_of $((5 * 1048576))) + 1 + $(blocks_of $((3 * 1048576))) ))
[ $((free0 - $(jget "$T/vol2.json" 'j["free_blocks"]'))) -ge $used ] ||
	fail "free blocks went from $free0 to $(jget "$T/vol2.json" 'j["free_blocks"]'), $used used"

echo "# hosts while mounted: our slot live (its heartbeat advances)"
"$CTL" hosts "$IMG" --json > "$T/hosts.json" || fail "vmfsctl hosts"
jcheck "$T/hosts.json" 'j["slots"][0]["state"]' live 'j["slots"][0]["host"]' ctl-host-a \
	'j["slots"][1]["state"]' free
"$CTL" hosts "$M" | grep -Eq '^0 +live +ctl-host-a ' || fail "human hosts: slot 0 not live"

echo "# after unmount: free, journal clean"
vumount "$M" || fail "unmount"
"$CTL" hosts "$IMG" --json > "$T/hosts.json" || fail "vmfsctl hosts"
jcheck "$T/hosts.json" 'j["slots"][0]["state"]' free 'j["slots"][0]["journal"]' clean

echo "# a killed mount: its slot is dead, its journal dirty"
# foreground, so $! is the process whose libqb blackbox must be dropped
"$MOUNT" -f -o host=ctl-host-b "$IMG" "$M" 2>> "$T/mount.log" &
pid=$!
PIDS="$PIDS $pid"
wait_until 20 is_mounted "$M" || { cat "$T/mount.log"; fail "remount did not appear"; }
echo more > "$M/more" && sync "$M/more" || fail "write more"
kill -9 $pid
wait $pid 2>/dev/null
drop_blackbox $pid
fusermount3 -u -z "$M" 2>/dev/null
"$CTL" hosts "$IMG" --json > "$T/hosts.json" || fail "vmfsctl hosts"
jcheck "$T/hosts.json" 'j["slots"][0]["state"]' dead 'j["slots"][0]["host"]' ctl-host-b \
	'j["slots"][0]["journal"]' dirty

echo "# errors: exit 1 and a message naming the object"
truncate -s 64M "$T/notvmfs"
# run_err WANT_TEXT CMD...: must exit 1 with WANT_TEXT on stderr
run_err() {
	local want=$1 rc
	shift
	"$@" > /dev/null 2> "$T/err"
	rc=$?
	[ $rc = 1 ] || fail "'$*' exited $rc, expected 1"
	grep -q -- "$want" "$T/err" || fail "'$*': message lacks '$want': $(cat "$T/err")"
}
run_err "$T/notvmfs: not a vmfs volume" "$CTL" volume "$T/notvmfs"
run_err "$T/notvmfs: not a vmfs volume" "$CTL" hosts "$T/notvmfs"
run_err "$T/notvmfs: not on a vmfs mount" "$CTL" fileinfo "$T/notvmfs"
run_err "$T/nonexistent: No such file" "$CTL" volume "$T/nonexistent"
run_err "$T/nonexistent: No such file" "$CTL" fileinfo "$T/nonexistent"
run_err "$T: not a vmfs mount, block device or image file" "$CTL" volume "$T"
vmount "$IMG" "$M" || { cat "$T/mount.log"; fail "mount after the kill"; }
run_err "$M/nonexistent: No such file" "$CTL" fileinfo "$M/nonexistent"
vumount "$M" || fail "unmount"
echo "vmfsctl volume/hosts/fileinfo tests passed"
