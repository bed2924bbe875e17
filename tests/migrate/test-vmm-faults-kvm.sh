#!/bin/sh
# vmm-faults.sh with the kvm accelerator.
ACCEL=kvm
. "$(dirname "$0")/vmm-faults.sh"
