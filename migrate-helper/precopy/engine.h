/* engine.h — state shared by the source and destination halves of
 * libvmfs-precopy.  Internal. */
#ifndef VMFS_PRECOPY_ENGINE_H
#define VMFS_PRECOPY_ENGINE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "stream.h"
#include "vmfs/precopy.h"

struct mig_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t pages;
	uint8_t *host;
	uint64_t *dirty;		/* source: pages still to send; run thread only */
};

struct mig_round {
	unsigned round;
	uint64_t pages;			/* pages sent (zero + normal) */
	uint64_t zero_pages;
	uint64_t bytes;			/* wire bytes */
	uint64_t ms;			/* duration */
	uint64_t dirty_after;		/* pages found dirty when it ended */
};

struct mig_sample {
	uint64_t t_ms;			/* since the start */
	uint64_t bytes;			/* wire bytes in this interval */
	uint64_t interval_ms;
};

/* Everything a stats query may read; protected by vmfs_precopy.lock. */
struct mig_stats {
	enum vmfs_precopy_status status;
	uint64_t start_ms, setup_done_ms, end_ms;
	uint64_t transferred;		/* wire bytes, both directions' payloads sent */
	uint64_t remaining;
	uint64_t zero_pages, normal_pages;
	uint64_t dirty_rate;		/* bytes/s, last round */
	uint64_t bandwidth;		/* bytes/s, measured */
	uint64_t expected_downtime_ms;
	unsigned throttle;
	/* Switchover (source): times measured on this host's monotonic clock. */
	uint64_t pause_ms;		/* when the VM was paused, 0 = never */
	uint64_t downtime_ms;		/* pause -> ack of resume */
	uint64_t final_pages_ms, device_state_ms, handoff_ms, resume_ms;
	uint64_t pre_switchover_us;	/* ops.pre_switchover, VM running */
	uint32_t peer_load_ms, peer_resume_ms;	/* as the destination reported */
	struct mig_round *rounds;
	unsigned nrounds, rounds_cap;
	struct mig_sample *samples;
	unsigned nsamples, samples_cap;
	uint64_t sample_start_ms, sample_bytes;
	unsigned peer_round;		/* destination: last ROUND announced */
	unsigned connections;		/* lanes in use (granted) */
	unsigned proto;			/* negotiated protocol version */
	char guard[64];			/* which guard tripped, "" = none */
};

/* One connection ("lane").  Lane 0 is the first connection and carries
 * every control frame; its channels and buffers are the ones in struct
 * vmfs_precopy (tx, rx, buf, stage), the pointers below point there.
 * Lanes >= 1 own theirs.  A lane's fields belong to the one thread that
 * drives it (the run thread between rounds). */
struct mig_lane {
	struct vmfs_precopy *m;
	unsigned index;
	struct mig_chan *tx, *rx;
	struct mig_chan own_tx, own_rx;
	uint8_t *buf;			/* one frame */
	uint8_t *stage;			/* source: page batch being assembled */
	pthread_t thread;
	bool thread_running;
	int rc;				/* result of the lane's thread */
	struct mig_round r;		/* source: this lane's share of a round */
	bool sync_pending;		/* source: SYNC sent, its SYNC_ACK not read */
	unsigned sync_round;		/* source: the round of that SYNC */
};

struct vmfs_precopy {
	enum vmfs_precopy_role role;
	struct vmfs_precopy_params p;	/* defaults filled in; read-only */
	uint8_t *psk;
	struct vmfs_precopy_ops ops;
	void *opaque;
	struct mig_region *regions;	/* set before run, then read-only */
	unsigned nregions;
	char *vm_info;

	/* Run thread only. */
	struct mig_chan tx, rx;
	uint8_t *buf;			/* one frame: header + max payload + tag */
	uint8_t *stage;			/* source: page batch being assembled */
	bool ran;
	unsigned proto;			/* negotiated protocol version */
	unsigned proto_max;		/* newest we speak (mig_proto_max) */
	uint8_t nonce_src[MIG_NONCE_LEN], nonce_dst[MIG_NONCE_LEN];
	struct mig_lane lanes[MIG_MAX_LANES];
	unsigned nlanes;		/* >= 1 once the handshake is done */
	atomic_uint_fast64_t active_bytes; /* source: for the bandwidth cap */
	uint64_t active_start_ms;	/* source: set before the rounds */

	atomic_int cancel;		/* any thread sets it */
	atomic_int fd;			/* -1 when no run; cancel shuts it down */
	atomic_int lane_fd[MIG_MAX_LANES]; /* lanes >= 1: -1 or open; ditto */
	atomic_int past_go;		/* source: GO sent, cancel no longer applies */
	/* Destination: threads faulting the regions in ahead of the source
	 * (engine.c, prefault_thread); stop makes them quit early. */
	pthread_t *prefault;
	unsigned nprefault;
	atomic_int prefault_stop;

	pthread_mutex_t lock;		/* protects stats and error */
	struct mig_stats st;
	char error[256];
};

int mig_source_run(struct vmfs_precopy *m);
int mig_dest_run(struct vmfs_precopy *m);

void mig_set_status(struct vmfs_precopy *m, enum vmfs_precopy_status s);
/* Record the first error of the run (later ones are consequences). */
void mig_fail(struct vmfs_precopy *m, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Count wire bytes; takes throughput samples every 100 ms. */
void mig_account(struct vmfs_precopy *m, uint64_t bytes);
int mig_push_round(struct vmfs_precopy *m, const struct mig_round *r);
void mig_progress(struct vmfs_precopy *m, unsigned round);
/* Send a small frame / receive any frame on the run's channels, counting
 * the bytes and mapping errors with mig_io_error(). */
int mig_ctl_send(struct vmfs_precopy *m, uint16_t type, const void *p, size_t len)
	__attribute__((warn_unused_result));
int mig_ctl_recv(struct vmfs_precopy *m, struct mig_hdr *h)
	__attribute__((warn_unused_result));
/* Map an I/O error on the peer socket to the error reported. */
int mig_io_error(struct vmfs_precopy *m, int rc);
/* Lanes: set up lane 0 (before the handshake); shut down the sockets of
 * lanes >= 1 and, if `lane0`, of lane 0 (wakes their threads); join lane threads and close lanes >= 1,
 * returning the first lane error. */
void mig_lanes_init(struct vmfs_precopy *m);
void mig_lanes_shutdown(struct vmfs_precopy *m, bool lane0);
int mig_lanes_close(struct vmfs_precopy *m);
int mig_lane_alloc(struct mig_lane *l, bool stage)
	__attribute__((warn_unused_result));

#define MIG_SAMPLE_MS 100u

#endif
