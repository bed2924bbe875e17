#!/bin/bash
# Every installed program answers --help and --version: exit status 0, the
# text on stdout (so `prog --help | less` works), nothing on stderr; --version
# names the program and this build's version.  An unknown option is refused
# with a non-zero status and a message on stderr, without crashing.
set -u
: "${VMFS_BUILDDIR:=$(cd "$(dirname "$0")/.." && pwd)}"
B=$VMFS_BUILDDIR
PROGS="dlm/vmfs-dlmd vmfsctl/vmfsctl fs/vmfs-mkfs fs/vmfs-fsck fs/vmfs-mount
 migrate-helper/vmfs-migrate migrate-helper/vmfs-vmm"

version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$B/config.h" 2>/dev/null)
[ -n "$version" ] || { echo "ERROR: no PACKAGE_VERSION in $B/config.h"; exit 99; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vmfs-help.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT

# Known problems waiting for a fix, "NAME CHECK" each: reported, not
# counted; once one passes, the test fails so that the entry is removed.
KNOWN=""

failures=0
known() { case " $KNOWN " in *" $1 $2 "*) return 0 ;; esac; return 1; }
# bad|good NAME CHECK TEXT
bad() {
	if known "$1" "$2"; then echo "KNOWN: $1 $2$3"
	else echo "FAIL: $1 $2$3"; failures=$((failures + 1)); fi
}
good() {
	if known "$1" "$2"; then
		echo "FAIL: $1 $2 passes now: remove it from KNOWN in $0"
		failures=$((failures + 1))
	else echo "ok   $1 $2 $3"; fi
}

# run PROG ARG: sets rc, out, err (files)
run() {
	# </dev/null: a program that wrongly waits for input fails, not hangs
	timeout 10 "$1" "$2" </dev/null >"$T/out" 2>"$T/err"
	rc=$?
}

for rel in $PROGS; do
	p=$B/$rel
	name=${rel##*/}
	if [ ! -x "$p" ]; then
		bad "$name" built ": not built ($p)"
		continue
	fi
	run "$p" --help
	if [ "$rc" -ne 0 ]; then
		bad "$name" --help ": exit status $rc, expected 0"
	elif [ ! -s "$T/out" ]; then
		bad "$name" --help ": nothing on stdout"
	elif ! grep -qi -e usage -e "$name" "$T/out"; then
		bad "$name" --help ": stdout has neither 'usage' nor '$name': $(head -n 1 "$T/out")"
	elif [ -s "$T/err" ]; then
		bad "$name" --help ": wrote to stderr: $(head -n 1 "$T/err")"
	else
		good "$name" --help "($(wc -l <"$T/out") lines)"
	fi

	run "$p" --version
	first=$(head -n 1 "$T/out")
	if [ "$rc" -ne 0 ]; then
		bad "$name" --version ": exit status $rc, expected 0"
	elif [ ! -s "$T/out" ]; then
		bad "$name" --version ": nothing on stdout"
	elif ! printf '%s\n' "$first" | grep -q "^$name .*$version\|^$name $version"; then
		bad "$name" --version ": first line '$first' does not start with '$name' and name version $version"
	elif [ -s "$T/err" ]; then
		bad "$name" --version ": wrote to stderr: $(head -n 1 "$T/err")"
	else
		good "$name" --version ": $first"
	fi

	run "$p" --no-such-option
	if [ "$rc" -eq 0 ]; then
		bad "$name" --no-such-option ": exit status 0, expected a refusal"
	elif [ "$rc" -ge 124 ]; then
		bad "$name" --no-such-option ": exit status $rc (crash, signal or hang)"
	elif [ ! -s "$T/err" ]; then
		bad "$name" --no-such-option ": refused (status $rc) without a message on stderr"
	else
		good "$name" --no-such-option ": status $rc, $(head -n 1 "$T/err")"
	fi
done

if [ "$failures" -ne 0 ]; then
	echo "$failures failure(s)"
	exit 1
fi
exit 0
