#!/bin/sh
# vmm-faults.sh with the thread accelerator.
ACCEL=thread
. "$(dirname "$0")/vmm-faults.sh"
