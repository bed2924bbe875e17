/* guest-abi.h — what vmfs-vmm offers a guest: the boot-info block, the
 * paravirtual I/O ports, the memory layout.  Shared with tests/guests.
 *
 * All ports take 32-bit accesses except the serial port.
 *
 *   0x3f8  out8   COM1 data: one byte of console output (to the log file)
 *   0x3fd  in8    COM1 line status: always 0x60 (transmitter empty)
 *   0x500  out32  idle: sleep this many microseconds (max 20000) - the
 *                 guest has no timer interrupt, so this replaces hlt
 *   0x504  in32   guest clock, milliseconds; continues across migration
 *   0x508  out32  guest status code for the VMM log (GUEST_STATUS_*)
 *   0x510  out32  block device: block number (4096-byte blocks)
 *   0x514  out32  block device: guest-physical buffer address (4 KiB aligned)
 *   0x518  out32  block device: command 1 read, 2 write, 3 flush; runs
 *                 synchronously, so the write is on the disk file (O_DIRECT)
 *                 when the OUT instruction retires - unless the VMM holds
 *                 the disk back (a migration handing its lock over), when
 *                 the command is taken with its block and buffer and the
 *                 status reads GUEST_BLK_PENDING until it ran, here or on
 *                 the migration's destination.  Poll until it does
 *                 (the buffer must stay as it is); a command issued while
 *                 one is pending is dropped.
 *          in32   block device: status of the last command, 0 or errno
 *   0x51c  in32   block device: capacity in blocks
 *
 * Memory map (guest-physical, identity mapped, no paging):
 *   0x1000   struct vmfs_bootinfo, filled by the VMM before the first run
 *   0x2000   guest state page (owned by the guest)
 *   0x10000..0x80000  stacks, 16 KiB per vCPU, growing down from 0x80000
 *   0x100000 the image (flat binary loaded here; ELF at its p_paddr)
 *   bootinfo.gen_gpa   generation table, 4 bytes per work page
 *   bootinfo.work_gpa  work area the guest dirties, work_pages pages
 */
#ifndef VMFS_GUEST_ABI_H
#define VMFS_GUEST_ABI_H

#include <stdint.h>

#define GUEST_PORT_COM1 0x3f8
#define GUEST_PORT_COM1_LSR 0x3fd
#define GUEST_PORT_IDLE 0x500
#define GUEST_PORT_CLOCK 0x504
#define GUEST_PORT_STATUS 0x508
#define GUEST_PORT_BLK_BLOCK 0x510
#define GUEST_PORT_BLK_BUF 0x514
#define GUEST_PORT_BLK_CMD 0x518
#define GUEST_PORT_BLK_CAP 0x51c

#define GUEST_BLK_READ 1
#define GUEST_BLK_WRITE 2
#define GUEST_BLK_FLUSH 3
#define GUEST_BLK_SIZE 4096u
#define GUEST_BLK_PENDING 0x7fffffffu	/* status: not run yet, poll again */

#define GUEST_STATUS_UP 1
#define GUEST_STATUS_VERIFY_FAIL 0xbad

#define GUEST_BOOTINFO_GPA 0x1000u
#define GUEST_STATE_GPA 0x2000u
#define GUEST_STACK_TOP 0x80000u
#define GUEST_STACK_SIZE 0x4000u
#define GUEST_LOAD_GPA 0x100000u
#define GUEST_PAGE 4096u

#define VMFS_BOOTINFO_MAGIC 0x49424d56u	/* "VMBI" */

struct vmfs_bootinfo {
	uint32_t magic;
	uint32_t version;		/* 1 */
	uint32_t ram_size;		/* bytes */
	uint32_t ncpus;
	uint32_t gen_gpa;
	uint32_t work_gpa;
	uint32_t work_pages;
	uint32_t dirty_rate_kib;	/* KiB/s the guest dirties; 0 = idle */
	uint32_t record_interval_ms;	/* disk record every ...; 0 = none */
	uint32_t resume_count;		/* the VMM bumps it on each incoming resume */
	uint32_t run_id;		/* written into every disk record */
	uint32_t flags;			/* VMFS_BOOT_* */
	uint32_t reserved[4];
};

/* Fill every work page once at boot (a guest whose memory is in use). */
#define VMFS_BOOT_PREFILL 1u

/* One disk record per 4 KiB block; block = seq % capacity. */
#define GUEST_REC_MAGIC 0x43455256u	/* "VREC" */
struct guest_record {
	uint32_t magic;
	uint32_t seq;
	uint32_t run_id;
	uint32_t time_ms;
	uint32_t resume_count;		/* how many migrations it had seen */
	uint32_t check;			/* magic ^ seq ^ run_id ^ time_ms ^ resume_count */
};

/* How a guest workload reaches its "hardware".  The flat guest fills it
 * with in/out instructions; the thread accelerator with calls into the VMM. */
struct vmfs_guest_env {
	uintptr_t base;			/* host address of gpa 0 (0 in the guest) */
	void *opaque;
	void (*out8)(void *opaque, uint16_t port, uint8_t v);
	uint8_t (*in8)(void *opaque, uint16_t port);
	void (*out32)(void *opaque, uint16_t port, uint32_t v);
	uint32_t (*in32)(void *opaque, uint16_t port);
	/* Marks guest memory written (thread accelerator only; NULL under
	 * KVM, whose dirty log sees the writes).  Called after the write. */
	void (*dirty)(void *opaque, uint32_t gpa, uint32_t len);
};

/* Entry points of the native guest module (guest-native.so). */
#define GUEST_NATIVE_INIT "vmfs_guest_init"
#define GUEST_NATIVE_STEP "vmfs_guest_step"
#define GUEST_NATIVE_AP_STEP "vmfs_guest_ap_step"
typedef void (*vmfs_guest_init_fn)(const struct vmfs_guest_env *env);
typedef void (*vmfs_guest_step_fn)(const struct vmfs_guest_env *env);
typedef void (*vmfs_guest_ap_step_fn)(const struct vmfs_guest_env *env, uint32_t cpu);

#endif
