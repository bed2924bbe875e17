/* guest-core.h — the test guest's workload, built twice: freestanding
 * 32-bit for KVM (main32.c, entry.S) and as guest-native.so for the thread
 * accelerator.  Everything it remembers lives in guest RAM, so migrating
 * RAM (plus, under KVM, the vCPU registers) migrates the workload. */
#ifndef VMFS_GUEST_CORE_H
#define VMFS_GUEST_CORE_H

#include "guest-abi.h"

#ifdef GUEST_NATIVE
#define GUEST_EXPORT __attribute__((visibility("default")))
#else
#define GUEST_EXPORT
#endif

GUEST_EXPORT void vmfs_guest_init(const struct vmfs_guest_env *env);
GUEST_EXPORT void vmfs_guest_step(const struct vmfs_guest_env *env);
GUEST_EXPORT void vmfs_guest_ap_step(const struct vmfs_guest_env *env, uint32_t cpu);

#endif
