#!/bin/sh
# vmm-migrate.sh with the kvm accelerator.
ACCEL=kvm
. "$(dirname "$0")/vmm-migrate.sh"
