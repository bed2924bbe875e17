#!/bin/sh
# Regenerate the autotools files from a git checkout.
set -e
cd "$(dirname "$0")"
mkdir -p m4
autoreconf -fi
