# probe.sh — drive dlm-probe processes inside cluster hosts from a test.
# Sourced after tests/cluster/lib.sh.  A probe is named; its commands go
# through a fifo and its output lands in $T/probe-NAME.out.
#   probe_start NAME HOST      start dlm-probe on HOST
#   probe_cmd NAME CMD...      send one command line
#   probe_wait NAME REGEX [SEC] wait until the output has a matching line
#   probe_stop NAME            quit it
: "${DLM_PROBE:=${VMFS_BUILDDIR:-.}/tests/dlm/dlm-probe}"
: "${T:?T must be set (tests/cluster/lib.sh sets it)}"

probe_start() {
	local name=$1 host=$2
	mkfifo "$T/probe-$name.in"
	: > "$T/probe-$name.out"
	hexec "$host" "$DLM_PROBE" "probe-$name" < "$T/probe-$name.in" > "$T/probe-$name.out" 2>&1 &
	eval "PROBE_PID_$name=$!"
	# Hold the fifo open for writing so the probe does not see EOF between commands.
	eval "exec {PROBE_FD_$name}>\"$T/probe-$name.in\""
	probe_wait "$name" '^ready' 20
}

probe_cmd() {
	local name=$1 fdvar
	shift
	fdvar="PROBE_FD_$name"
	echo "$*" >&"${!fdvar}"
}

probe_wait() {
	local name=$1 re=$2 sec=${3:-20}
	wait_for "$sec" "probe $name: output matching '$re'" grep -Eq -- "$re" "$T/probe-$name.out" || {
		echo "--- probe $name output:"; cat "$T/probe-$name.out"; return 1; }
}

# The value of KEY=VALUE on the last output line matching REGEX.
probe_field() {
	local name=$1 re=$2 key=$3
	grep -E -- "$re" "$T/probe-$name.out" | tail -1 | tr ' ' '\n' | sed -n "s/^$key=//p"
}

probe_stop() {
	local name=$1 fdvar pidvar
	fdvar="PROBE_FD_$name"
	pidvar="PROBE_PID_$name"
	probe_cmd "$name" quit 2>/dev/null || true
	eval "exec ${!fdvar}>&-" 2>/dev/null || true
	wait "${!pidvar}" 2>/dev/null || true
}
