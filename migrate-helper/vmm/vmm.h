/* vmm.h — vmfs-vmm, the reference hypervisor: one VM per process.
 *
 * Threads: the main thread runs the control socket; one thread per vCPU;
 * one migration thread while a migration (either direction) runs.
 */
#ifndef VMFS_VMM_H
#define VMFS_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest-abi.h"
#include "vmfs/precopy.h"

struct vmm;
struct vcpu;
struct vmm_handoff;
struct json_object;

/* The accelerator runs vCPUs: KVM, or on hosts without /dev/kvm a native
 * thread running guest-native.so against the same RAM and devices. */
struct accel_ops {
	const char *name;
	int (*init)(struct vmm *v);		/* VM, memory, vCPUs */
	void *(*vcpu_thread)(void *vcpu);
	void (*kick)(struct vcpu *c);		/* make it reach its park point */
	int (*log_start)(struct vmm *v);
	void (*log_stop)(struct vmm *v);
	int (*log_sync)(struct vmm *v, uint64_t *bitmap);	/* OR in, clear */
	size_t cpu_state_size;
	int (*save_cpu)(struct vcpu *c, void *buf);
	int (*load_cpu)(struct vcpu *c, const void *buf);
	void (*destroy)(struct vmm *v);
};

extern const struct accel_ops accel_kvm;
extern const struct accel_ops accel_thread;

struct vcpu {
	struct vmm *vm;
	unsigned idx;
	pthread_t thread;
	bool thread_started;
	/* KVM only; vCPU thread only, except run->immediate_exit (signal). */
	int fd;
	void *run;
	size_t run_size;
	uint64_t throttle_mark_ms;	/* vCPU thread only */
};

enum vm_state {
	VM_RUNNING,
	VM_PAUSED,		/* paused by a migration in its switchover */
	VM_INMIGRATE,		/* --incoming, waiting or receiving */
	VM_POSTMIGRATE,		/* migrated away: paused for good */
	VM_CRASHED,		/* a vCPU hit an unrecoverable exit */
	VM_STOPPED,
};

struct vmm_config {
	uint64_t ram_size;
	unsigned ncpus;
	const char *image;
	const char *native_guest;	/* thread accelerator's guest module */
	const char *accel;		/* "kvm", "thread", "auto" */
	const char *serial_log;
	const char *disk;
	const char *ctrl_path;
	const char *incoming;		/* HOST:PORT or NULL */
	const char *psk_file;
	const char *name;
	const char *announce_if;
	const char *tap;		/* --tap IFNAME ("%d": first free) */
	const char *bridge;		/* --bridge BR: the tap's bridge */
	const char *handoff_exec;	/* --handoff-exec PROG */
	bool handoff_inproc;		/* --handoff: libvmfs-handoff in process */
	const char *log_file;
	uint8_t mac[6];
	uint32_t dirty_rate_kib;
	uint32_t work_mib;		/* 0 = as much as fits */
	uint32_t record_interval_ms;
	unsigned downtime_ms;
	uint64_t max_bandwidth;
	unsigned max_rounds;
	unsigned migrate_connections;	/* --migrate-connections, 0 = 1 */
	bool force_switchover;
	bool auto_converge;
	bool verify_ram;
	bool prefill;
	bool debug;
};

struct vmm {
	struct vmm_config cfg;
	const struct accel_ops *accel;
	void *accel_priv;			/* accelerator's own, set by init */

	/* RAM: mapped once, never moves. */
	uint8_t *ram;
	uint64_t ram_size;
	_Atomic uint64_t *swdirty;		/* pages written by the VMM itself */
	atomic_bool logging;
	uint32_t entry;				/* first instruction, guest-physical */

	struct vcpu *cpus;
	unsigned ncpus;

	/* vCPU run control; protected by cpu_lock.  run_enabled is also read
	 * without the lock by vCPU threads as a hint to go park. */
	pthread_mutex_t cpu_lock;
	pthread_cond_t cpu_cond;
	atomic_bool run_enabled;
	atomic_bool quit;
	unsigned parked;
	unsigned gone;			/* vCPU threads that exited (crashed) */
	atomic_uint throttle;			/* percent */

	/* The NIC's tap (net.c): set up before the vCPUs start, then fixed. */
	int tap_fd;			/* -1: none */
	char tap_name[16];		/* IFNAMSIZ */

	/* Devices; protected by dev_lock. */
	pthread_mutex_t dev_lock;
	int serial_fd;
	char serial_line[256];
	size_t serial_len;
	uint64_t serial_lines;
	uint32_t guest_status;
	int disk_fd;
	uint64_t disk_blocks;
	uint32_t blk_block, blk_buf, blk_status;
	/* Held (dev_disk_hold): commands wait in blk_pending until
	 * dev_disk_release, here or on the migration's destination. */
	bool blk_held, blk_waiting;
	struct blk_request { uint32_t cmd, block, buf; } blk_pending;	/* if waiting */
	atomic_uint_fast64_t clock_base_ms;	/* guest clock = now - base */

	/* State and migration; protected by mig_lock. */
	pthread_mutex_t mig_lock;
	enum vm_state state;
	struct vmfs_precopy *mig;		/* last migration, kept for status */
	bool mig_running;		/* a migration thread is active */
	bool mig_joinable;		/* mig_thread not yet joined */
	pthread_t mig_thread;
	char ram_digest[65];			/* hex SHA-256 at the switchover */
	int incoming_fd;
	char mig_peer_host[128], mig_peer_port[16];	/* outgoing; mig_lock */
	unsigned incoming_port;
	struct vmm_handoff *handoff;		/* handoff.c; see there */
	uint8_t psk[64];
	size_t psk_len;
	atomic_bool exit_requested;
	int exit_code;
};

/* ram.c */
int ram_init(struct vmm *v) __attribute__((warn_unused_result));
void ram_mark_dirty(struct vmm *v, uint64_t gpa, uint64_t len);
int ram_log_sync(struct vmm *v, uint64_t *bitmap);
int image_load(struct vmm *v) __attribute__((warn_unused_result));
void bootinfo_setup(struct vmm *v);
void ram_digest(struct vmm *v, char hex[65]);

/* net.c: the tap (--tap, --bridge) and the RARP after an incoming resume */
int net_init(struct vmm *v) __attribute__((warn_unused_result));
void net_fini(struct vmm *v);
void net_announce(struct vmm *v);

/* devices.c */
int devices_init(struct vmm *v) __attribute__((warn_unused_result));
void devices_fini(struct vmm *v);
/* Wait until every disk write the guest saw complete is on the disk,
 * where other hosts see it (vmfs/fs.h VMFS_IOC_DRAIN): before the
 * handoff gives the disk's lock to another host.  0, or -errno when one
 * of them failed (logged). */
int dev_disk_drain(struct vmm *v);
/* Hold the guest's disk commands back (they wait, the guest polls) from
 * now until dev_disk_release, which runs the one waiting, if any.  No
 * command is running once dev_disk_hold returns. */
void dev_disk_hold(struct vmm *v);
void dev_disk_release(struct vmm *v);
uint32_t dev_in(struct vmm *v, uint16_t port, unsigned size);
void dev_out(struct vmm *v, uint16_t port, unsigned size, uint32_t val);
uint32_t guest_clock_ms(struct vmm *v);
void guest_clock_set(struct vmm *v, uint32_t ms);

/* cpus: in main.c */
int cpus_start(struct vmm *v, bool running) __attribute__((warn_unused_result));
/* Called by a vCPU thread when run_enabled is false; returns false on quit. */
bool vcpu_park(struct vcpu *c);
void vcpu_gone(struct vcpu *c);
int vm_pause(struct vmm *v) __attribute__((warn_unused_result));
void vm_resume(struct vmm *v);
void vcpu_throttle(struct vcpu *c);
void vm_set_state(struct vmm *v, enum vm_state s);
const char *vm_state_name(enum vm_state s);

/* control.c */
int control_listen(const char *path) __attribute__((warn_unused_result));
void control_serve(struct vmm *v, int listen_fd);
int control_client(const char *path, int argc, char **argv);

/* migrate.c */
int migrate_start(struct vmm *v, const char *uri, char *err, size_t errlen);
void migrate_cancel(struct vmm *v);
/* Cancel and join whatever migration thread exists (exit path). */
void migrate_shutdown(struct vmm *v);
int incoming_setup(struct vmm *v) __attribute__((warn_unused_result));
int incoming_start(struct vmm *v) __attribute__((warn_unused_result));
int migration_json(struct vmm *v, char **json);

/* handoff.c: the switchover hook (--handoff, --handoff-exec).  begin: at
 * migrate_start (control thread), before the migration thread exists;
 * refresh (each pre-copy round), before_pause (the engine switches over
 * next), paused (the guest was paused for the switchover), switchover,
 * abort, resume_source (a failed migration, before the guest resumes
 * here), end: migration thread; json: any thread (status); free: exit
 * path. */
int handoff_begin(struct vmm *v, char *err, size_t errlen) __attribute__((warn_unused_result));
void handoff_refresh(struct vmm *v);
int handoff_before_pause(struct vmm *v);
void handoff_paused(struct vmm *v);
int handoff_switchover(struct vmm *v);
void handoff_abort(struct vmm *v);
void handoff_resume_source(struct vmm *v);
void handoff_end(struct vmm *v);
void handoff_json(struct vmm *v, struct json_object *o);
void handoff_free(struct vmm *v);

#define VMM_MAX_CPUS 16

#endif
