/* vmfs/precopy.h — libvmfs-precopy, the live-migration engine a hypervisor
 * embeds (see libvmfs-precopy(3)).
 *
 * The hypervisor registers its guest RAM regions and a table of callbacks
 * (dirty log, pause/resume, state save/load, switchover hook), connects a
 * socket to the peer and calls vmfs_precopy_run().  The engine owns rounds,
 * convergence, zero-page skipping, the authenticated stream, statistics,
 * cancel and rollback.  One object migrates one VM once.
 *
 * Threads: vmfs_precopy_run() blocks in the caller's thread and calls every
 * callback from that thread.  vmfs_precopy_cancel(), vmfs_precopy_status()
 * and vmfs_precopy_stats_json() may be called from any thread meanwhile.
 */
#ifndef VMFS_PRECOPY_H
#define VMFS_PRECOPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_PRECOPY_PAGE_SIZE 4096u

/* Errors of the engine's own domain; everything else is -errno. */
enum {
	VMFS_PRECOPY_EBADMAGIC = -3001,	/* peer is not speaking this stream */
	VMFS_PRECOPY_EVERSION = -3002,	/* no common stream version */
	VMFS_PRECOPY_ECHECKSUM = -3003,	/* frame corrupted in transit */
	VMFS_PRECOPY_EAUTH = -3004,	/* frame not signed with our key / replayed */
	VMFS_PRECOPY_ETOOBIG = -3005,	/* frame longer than the size cap */
	VMFS_PRECOPY_EPROTO = -3006,	/* well-formed frame that breaks the protocol */
	VMFS_PRECOPY_ENOCONVERGE = -3007, /* guard tripped, policy is cancel */
	VMFS_PRECOPY_EREFUSED = -3008,	/* peer refused (pre-flight, load) */
	VMFS_PRECOPY_EHANDOFF = -3009,	/* switchover hook refused */
	VMFS_PRECOPY_EPEER = -3010,	/* peer aborted the migration */
};

enum vmfs_precopy_role {
	VMFS_PRECOPY_SOURCE = 1,
	VMFS_PRECOPY_DEST = 2,
};

/* Migration status, as in QEMU's query-migrate. */
enum vmfs_precopy_status {
	VMFS_PRECOPY_NONE = 0,
	VMFS_PRECOPY_SETUP,		/* handshake and pre-flight */
	VMFS_PRECOPY_ACTIVE,		/* pre-copy rounds, VM running */
	VMFS_PRECOPY_DEVICE,		/* VM paused: final pages, state, handoff */
	VMFS_PRECOPY_COMPLETED,		/* VM runs on the destination */
	VMFS_PRECOPY_FAILED,		/* VM runs (again) on the source */
	VMFS_PRECOPY_CANCELLED,		/* as FAILED, by request */
};

struct vmfs_precopy_progress {
	enum vmfs_precopy_status status;
	unsigned round;
	uint64_t transferred;		/* bytes on the wire so far */
	uint64_t remaining;		/* dirty bytes known not yet sent */
	uint64_t bandwidth;		/* measured, bytes/s */
	uint64_t dirty_rate;		/* pages dirtied per second, in bytes/s */
};

/* Callbacks.  Return 0 or -errno.  Those marked optional may be NULL. */
struct vmfs_precopy_ops {
	/* Source: start/stop dirty logging for all regions. */
	int (*log_start)(void *opaque);
	void (*log_stop)(void *opaque);
	/* Source: read and clear the dirty log of region `region`, OR-ing one
	 * bit per page into `bitmap` (bit i of word i/64 = page i). */
	int (*log_sync)(void *opaque, unsigned region, uint64_t *bitmap);
	int (*pause)(void *opaque);
	int (*resume)(void *opaque);
	/* Source, VM paused: serialise vCPU and device state into a malloc'ed
	 * buffer the engine frees. */
	int (*save_state)(void *opaque, void **buf, size_t *len);
	/* Destination: load what save_state produced; the VM is not running. */
	int (*load_state)(void *opaque, const void *buf, size_t len);
	/* Optional, source: slow the guest to `percent` (0 = full speed). */
	int (*throttle)(void *opaque, unsigned percent);
	/* Optional, source, VM paused and the destination ready: hand the
	 * VM's disks over (the lock transfer).  Non-zero refuses the
	 * switchover; the VM then resumes on the source. */
	int (*switchover)(void *opaque);
	/* Optional, source: undo a successful switchover because the
	 * destination did not acknowledge its resume. */
	void (*switchover_abort)(void *opaque);
	/* Optional, destination: check the source's description of the VM
	 * (JSON text given to vmfs_precopy_set_vm_info on the source).  Write a
	 * reason and return non-zero to refuse before any page moves. */
	int (*preflight)(void *opaque, const char *vm_info_json,
			 char *reason, size_t reason_len);
	/* Optional: after each round (source) and at the end (both). */
	void (*progress)(void *opaque, const struct vmfs_precopy_progress *p);
	/* --- since VMFS_PRECOPY_2 (fields are only appended) --- */
	/* Optional: one more connection to the peer for lane `lane` (1..n-1),
	 * used when params.connections > 1 and the peer agrees.  Source:
	 * connect to the same destination; destination: accept the next
	 * connection on the listening socket.  Return a connected stream
	 * socket (the engine closes it) or -errno.  Called from the run
	 * thread.  Every connection is authenticated with keys of its own. */
	int (*open_connection)(void *opaque, unsigned lane);
	/* --- since VMFS_PRECOPY_3 --- */
	/* Optional, source, VM still running: the engine has decided to
	 * switch over and calls pause next.  Work that would otherwise
	 * lengthen the pause can be done here, if it can be undone and the
	 * guest can run meanwhile: vmfs-vmm holds the guest's disk requests
	 * back and hands the disk locks over here, so its switchover hook
	 * finds them moved.  Its time is reported as pre_switchover_us, not
	 * as downtime.  Non-zero fails the migration.  Once this was called,
	 * a failed migration calls resume even if the VM was never paused:
	 * resume undoes it (and must accept a VM that is running). */
	int (*pre_switchover)(void *opaque);
};

struct vmfs_precopy_params {
	const void *psk;		/* pre-shared key, required, >= 16 bytes */
	size_t psk_len;
	unsigned downtime_ms;		/* target; 0 = 300 */
	uint64_t max_bandwidth;		/* bytes/s; 0 = unlimited */
	unsigned max_rounds;		/* guard; 0 = 30 */
	unsigned max_time_ms;		/* guard; 0 = none */
	unsigned no_progress_rounds;	/* guard; 0 = 5 */
	int force_switchover;		/* guard trips: 0 cancel, 1 switch anyway */
	int auto_converge;		/* throttle when not converging */
	unsigned io_timeout_ms;		/* any single wait on the peer; 0 = 10000 */
	/* --- since VMFS_PRECOPY_2 (fields are only appended) --- */
	/* Source: TCP connections to use, pages striped across them (each
	 * with its own sending thread); 0 or 1 = one.  At most 16; the
	 * destination may grant fewer (no open_connection callback, or an
	 * older peer).  Ignored on the destination. */
	unsigned connections;
};

struct vmfs_precopy;

/* Binaries built against the VMFS_PRECOPY_1 header (shorter params and
 * ops) are bound to a compatibility entry point that reads only the fields
 * they know and zeroes the rest. */
int vmfs_precopy_new(struct vmfs_precopy **out, enum vmfs_precopy_role role,
		     const struct vmfs_precopy_params *params,
		     const struct vmfs_precopy_ops *ops, void *opaque)
	__attribute__((warn_unused_result));
void vmfs_precopy_free(struct vmfs_precopy *m);

/* Register guest RAM before run; size a multiple of the page size.  The
 * destination registers the same regions in the same order; there a
 * background thread then faults the region in (MADV_POPULATE_WRITE, contents
 * kept) so the kernel's page zeroing is done before the source connects,
 * not on the receive path: the region must stay mapped until
 * vmfs_precopy_free(), which stops and joins that thread. */
int vmfs_precopy_add_region(struct vmfs_precopy *m, uint64_t gpa, uint64_t size,
			    void *host) __attribute__((warn_unused_result));
/* Source: a JSON object describing the VM, checked by the destination's
 * preflight callback. */
int vmfs_precopy_set_vm_info(struct vmfs_precopy *m, const char *json);

/* Migrate over a connected stream socket (blocking).  Source: 0 means the
 * VM now runs on the destination (leave it paused here); any error means
 * it was resumed here.  Destination: 0 means the VM was loaded and resumed
 * here; any error means everything received is to be discarded. */
int vmfs_precopy_run(struct vmfs_precopy *m, int fd)
	__attribute__((warn_unused_result));

/* Any thread.  Before the switchover point the migration stops and the VM
 * keeps (or resumes) running on the source; afterwards it has no effect. */
void vmfs_precopy_cancel(struct vmfs_precopy *m);

enum vmfs_precopy_status vmfs_precopy_status(struct vmfs_precopy *m);
/* Statistics as a JSON object text (malloc'ed, caller frees). */
int vmfs_precopy_stats_json(struct vmfs_precopy *m, char **json)
	__attribute__((warn_unused_result));
/* Text of the error that ended the migration ("" if none). Valid until free. */
const char *vmfs_precopy_last_error(struct vmfs_precopy *m);
const char *vmfs_precopy_strerror(int err);
const char *vmfs_precopy_status_name(enum vmfs_precopy_status s);

/* RARP announcement after resume (QEMU announce-self style): `count`
 * broadcast frames, ethertype 0x8035, source MAC = `mac`, on interface
 * `ifname`; the gaps start at first_ms and grow by step_ms.  Blocking. */
int vmfs_rarp_announce(const char *ifname, const uint8_t mac[6], unsigned count,
		       unsigned first_ms, unsigned step_ms)
	__attribute__((warn_unused_result));
/* The same through a tap device's file descriptor (IFF_TAP|IFF_NO_PI):
 * the frames come from the VM's NIC, as QEMU's announce-self sends them
 * through its NIC backend.  Since VMFS_PRECOPY_3. */
int vmfs_rarp_announce_fd(int tap_fd, const uint8_t mac[6], unsigned count,
			  unsigned first_ms, unsigned step_ms)
	__attribute__((warn_unused_result));
/* The 60-byte frame itself (for tests and other senders). */
void vmfs_rarp_frame(uint8_t frame[60], const uint8_t mac[6]);

#ifdef __cplusplus
}
#endif
#endif
