/* fuse_loop.c — the FUSE worker pool of vmfs-mount (see fuse_loop.h).
 *
 * Modelled on libfuse's own fuse_loop_mt.c: a fixed pool (no thread churn
 * under load), workers created with every signal blocked so the signal
 * handlers (fuse_set_signal_handlers) run on the main thread, cancellation
 * enabled only while a worker waits for the next request, so a request
 * being served always gets its reply before the pool is torn down.
 */
#include "config.h"
#include "fuse_loop.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PG 4096u
/* Where libfuse puts a WRITE's data in the receive buffer. */
#define WRITE_HDR (sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in))
_Static_assert(WRITE_HDR == 80, "FUSE WRITE header size");
_Static_assert(WRITE_HDR < PG, "FUSE WRITE header fits a page");
/* libfuse 3.14 reads up to se->bufsize = FUSE_MAX_MAX_PAGES (256) pages
 * + FUSE_BUFFER_HEADER_SIZE (4096) into the buffer we give it; 3.17 made
 * it depend on a sysctl, so there the pool falls back to libfuse's loop
 * (fuse_loop_run checks the version).  One page of margin on top. */
#define RECV_SIZE (256u * PG + PG + PG)

struct worker {
	pthread_t tid;
	bool started;
	void *base;		/* allocation; mem = base + PG - WRITE_HDR */
	struct fuse_buf fbuf;
	bool abandon;		/* the kernel may still read base (fuse_loop_abandon_buffer) */
	bool taken;		/* a handler owns base now (fuse_loop_take_buffer) */
	struct pool *p;
};

/* Receive buffers given back by handlers that took theirs
 * (fuse_loop_buffer_put), for the next worker that needs one: a fresh
 * 1 MiB allocation would be a new mapping whose 257 pages all fault on
 * the first receive. */
#define SPARE_MAX 32
static struct {
	pthread_mutex_t mu;
	void *base[SPARE_MAX];
	int n;
} spare = { .mu = PTHREAD_MUTEX_INITIALIZER };

struct pool {
	struct fuse_session *se;
	sem_t finish;		/* posted by each worker that stops */
	pthread_mutex_t mu;
	int error;		/* first receive error, protected by mu */
	/* The reader gate, protected by mu: at most READERS workers wait
	 * in the FUSE device at once, the rest are parked on wake.  See
	 * reader_enter(). */
	pthread_cond_t wake;
	int receiving;		/* workers in (or entering) the receive */
	int parked;		/* workers waiting on wake */
	bool stopping;		/* fuse_loop_run is tearing the pool down */
};

static __thread struct worker *self;

/* A READ or WRITE of at most VMFS_AIO_MAX bytes, answered from the disk
 * completion (fuse_ops.c op_read) and so not expected to block. */
static bool small_io(const struct fuse_buf *buf, size_t len)
{
	const struct fuse_in_header *h = buf->mem;

	if ((buf->flags & FUSE_BUF_IS_FD) || len < sizeof(*h) + sizeof(struct fuse_write_in))
		return false;
	if (h->opcode == FUSE_READ)
		return ((const struct fuse_read_in *)(h + 1))->size <= VMFS_AIO_MAX;
	if (h->opcode == FUSE_WRITE)
		return ((const struct fuse_write_in *)(h + 1))->size <= VMFS_AIO_MAX;
	return false;
}

/* How many workers may wait for a request at once.  The kernel wakes one
 * waiter per request, and on this kind of machine (virtualized, 2 cores)
 * a context switch is the largest cost of a 4 KiB request: with all 16
 * workers waiting, a QD32 random read cost 1.05 switches per request;
 * with 2, 0.24-0.34, and 20-50% more IOPS.  Few readers alone would let
 * requests that block (a cluster lock wait, F_SETLKW, a 1 MiB synchronous
 * write) starve the rest, so the pool keeps its full size: a worker that
 * takes a request which may block, when no other is left waiting, wakes a
 * parked one to wait in its place.  Small READs and WRITEs do not (they
 * are answered from the disk completion, op_read), or the handoff would
 * cost the switch it saves; a small write that must allocate says so with
 * fuse_loop_may_block().  A small request waiting for a cluster lock it
 * does not cache delays the others a little but never waits for another
 * FUSE request, so it cannot deadlock the pool. */
#define READERS 2

/* Before a receive: park while READERS others already wait there. */
static void reader_enter(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->receiving >= READERS && !p->stopping) {
		p->parked++;
		pthread_cond_wait(&p->wake, &p->mu);
		p->parked--;
	}
	p->receiving++;
	pthread_mutex_unlock(&p->mu);
}

/* With p->mu held: a parked worker to wait for requests if none does. */
static void reader_replace(struct pool *p)
{
	if (p->receiving == 0 && p->parked)
		pthread_cond_signal(&p->wake);
}

/* After a receive of buf (res bytes): a request that may block hands the
 * waiting on to a parked worker when it was the last one waiting. */
static void reader_leave(struct pool *p, const struct fuse_buf *buf, int res)
{
	pthread_mutex_lock(&p->mu);
	p->receiving--;
	if (res <= 0 || !small_io(buf, (size_t)res))
		reader_replace(p);
	pthread_mutex_unlock(&p->mu);
}

void fuse_loop_abandon_buffer(void)
{
	if (self)
		self->abandon = true;
}

void fuse_loop_may_block(void)
{
	if (!self)
		return;
	pthread_mutex_lock(&self->p->mu);
	reader_replace(self->p);
	pthread_mutex_unlock(&self->p->mu);
}

void *fuse_loop_take_buffer(const void *data)
{
	if (!self || self->taken || self->abandon || (const char *)data < (char *)self->base ||
	    (const char *)data >= (char *)self->base + RECV_SIZE + PG)
		return NULL;
	self->taken = true;
	return self->base;
}

void fuse_loop_buffer_put(void *base)
{
	pthread_mutex_lock(&spare.mu);
	if (spare.n < SPARE_MAX) {
		spare.base[spare.n++] = base;
		base = NULL;
	}
	pthread_mutex_unlock(&spare.mu);
	free(base);
}

/* A receive buffer whose byte WRITE_HDR is page-aligned: a spare one, or
 * a new one. */
static int buf_new(struct worker *w)
{
	void *base = NULL;

	pthread_mutex_lock(&spare.mu);
	if (spare.n)
		base = spare.base[--spare.n];
	pthread_mutex_unlock(&spare.mu);
	if (!base && posix_memalign(&base, PG, RECV_SIZE + PG))
		return -ENOMEM;
	w->base = base;
	w->fbuf = (struct fuse_buf){ .mem = (char *)base + PG - WRITE_HDR, .size = RECV_SIZE };
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;

	self = w;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(p->se)) {
		int res;

		reader_enter(p);
		/* a cancellation here leaves receiving one too high: harmless,
		 * the pool is being torn down */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(p->se, &w->fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		reader_leave(p, &w->fbuf, res);
		if (res == -EINTR || res == -EAGAIN)
			continue;
		if (res <= 0) {
			if (res < 0) {
				pthread_mutex_lock(&p->mu);
				if (!p->error)
					p->error = res;
				pthread_mutex_unlock(&p->mu);
				fuse_session_exit(p->se);
			}
			break;
		}
		fuse_session_process_buf(p->se, &w->fbuf);
		if (w->taken) {
			/* the handler's now, given back with fuse_loop_buffer_put */
			w->taken = false;
			w->abandon = false;	/* the handler keeps (or leaks) it */
			w->base = NULL;
			if (buf_new(w)) {
				log_err("FUSE worker: out of memory for a receive buffer");
				fuse_session_exit(p->se);
				break;
			}
		} else if (w->abandon) {
			/* diskio.h: the kernel owns it for good; leak it */
			log_warn("FUSE worker: a timed-out write keeps its receive buffer; "
				 "taking a new one");
			w->abandon = false;
			w->base = NULL;
			if (buf_new(w)) {
				log_err("FUSE worker: out of memory for a receive buffer");
				fuse_session_exit(p->se);
				break;
			}
		}
		w->fbuf.size = RECV_SIZE;
	}
	sem_post(&p->finish);
	return NULL;
}

/* libfuse's own multi-threaded loop: where our buffer layout is not known
 * to be safe (a libfuse whose receive size is not RECV_SIZE). */
static int run_libfuse(struct fuse_session *se, int nthreads)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, (unsigned)nthreads);
	fuse_loop_cfg_set_idle_threads(cfg, (unsigned)nthreads);	/* no churn */
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc < 0 ? rc : 0;
}

int fuse_loop_run(struct fuse_session *se, int nthreads)
{
	struct pool p = { .se = se };
	struct worker *w;
	sigset_t all, old;
	int rc = 0, n = 0;

	if (fuse_version() < 314 || fuse_version() >= 317) {
		log_info("libfuse %d: using its worker pool (WRITE data is copied once more)",
			 fuse_version());
		return run_libfuse(se, nthreads);
	}
	w = calloc((size_t)nthreads, sizeof(*w));
	if (!w)
		return -ENOMEM;
	sem_init(&p.finish, 0, 0);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.wake, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; n < nthreads; n++) {
		w[n].p = &p;
		rc = buf_new(&w[n]);
		if (!rc)
			rc = -pthread_create(&w[n].tid, NULL, worker_main, &w[n]);
		if (rc)
			break;
		w[n].started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		log_err("cannot start FUSE worker %d: %s", n, strerror(-rc));
		fuse_session_exit(se);
	}
	/* Signals (SIGTERM, SIGINT) land here and interrupt the wait. */
	while (!fuse_session_exited(se))
		sem_wait(&p.finish);
	/* parked workers wait with cancellation disabled: let them out */
	pthread_mutex_lock(&p.mu);
	p.stopping = true;
	pthread_cond_broadcast(&p.wake);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < nthreads; i++)
		if (w[i].started)
			pthread_cancel(w[i].tid);
	for (int i = 0; i < nthreads; i++) {
		if (w[i].started)
			pthread_join(w[i].tid, NULL);
		free(w[i].base);
	}
	pthread_mutex_lock(&spare.mu);
	while (spare.n)
		free(spare.base[--spare.n]);
	pthread_mutex_unlock(&spare.mu);
	if (!rc)
		rc = p.error;
	pthread_cond_destroy(&p.wake);
	pthread_mutex_destroy(&p.mu);
	sem_destroy(&p.finish);
	free(w);
	return rc;
}
