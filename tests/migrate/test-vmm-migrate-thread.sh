#!/bin/sh
# vmm-migrate.sh with the thread accelerator.
ACCEL=thread
. "$(dirname "$0")/vmm-migrate.sh"
