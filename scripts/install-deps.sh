#!/bin/sh
# Install every Debian 12 package that building, testing and the demo need.
# Safe to re-run; does nothing when everything is present.
set -eu
PKGS="build-essential autoconf automake libtool pkg-config
 corosync libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev libcorosync-common-dev
 libqb-dev libfuse3-dev fuse3 libaio-dev libjson-c-dev check
 iproute2 util-linux procps psmisc fio python3 linux-libc-dev
 clang libclang-rt-14-dev qemu-system-x86"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing >&2
fi
