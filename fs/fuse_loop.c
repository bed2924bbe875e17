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
	struct pool *p;
};

struct pool {
	struct fuse_session *se;
	sem_t finish;		/* posted by each worker that stops */
	pthread_mutex_t mu;
	int error;		/* first receive error, protected by mu */
};

static __thread struct worker *self;

void fuse_loop_abandon_buffer(void)
{
	if (self)
		self->abandon = true;
}

/* A receive buffer whose byte WRITE_HDR is page-aligned. */
static int buf_new(struct worker *w)
{
	void *base = NULL;

	if (posix_memalign(&base, PG, RECV_SIZE + PG))
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

		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(p->se, &w->fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
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
		if (w->abandon) {
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
	for (int i = 0; i < nthreads; i++)
		if (w[i].started)
			pthread_cancel(w[i].tid);
	for (int i = 0; i < nthreads; i++) {
		if (w[i].started)
			pthread_join(w[i].tid, NULL);
		free(w[i].base);
	}
	if (!rc)
		rc = p.error;
	pthread_mutex_destroy(&p.mu);
	sem_destroy(&p.finish);
	free(w);
	return rc;
}
