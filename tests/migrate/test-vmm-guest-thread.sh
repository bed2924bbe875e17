#!/bin/sh
# vmm-guest.sh with the thread accelerator.
ACCEL=thread
. "$(dirname "$0")/vmm-guest.sh"
