/* qemu.h — `vmfs-migrate qemu`: a QEMU live migration over QMP with the
 * disk-lock handoff at QEMU's pre-switchover pause (qemu.c). */
#ifndef VMFS_MIGRATE_QEMU_H
#define VMFS_MIGRATE_QEMU_H

/* argv[0] is "qemu"; returns the program's exit status (vmfs-migrate(8)). */
int vmfs_migrate_qemu(int argc, char **argv);

#endif
