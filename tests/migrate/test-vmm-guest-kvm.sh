#!/bin/sh
# vmm-guest.sh with the kvm accelerator.
ACCEL=kvm
. "$(dirname "$0")/vmm-guest.sh"
