/* diskio.c — shared-disk I/O: O_DIRECT + libaio for the mount, pread/pwrite
 * for offline tools.  See diskio.h for the buffer-ownership rule. */
#include "config.h"
#include "diskio.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <libaio.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io.h"

/* Each thread that does I/O gets its own io_context and reaps its own
 * completions: the submitting thread waits in io_getevents() itself, so a
 * request costs no wake-up of a separate reaper thread and no shared lock
 * (on a small machine that hop was the main cost of 4 KiB random I/O).
 * A thread waits for one batch at a time, so every event on its context
 * belongs to that batch, except late completions of a batch abandoned
 * after a timeout; by then the device is failed and they are ignored. */
#define AIO_DEPTH 64		/* per thread: a batch is split above this */

struct tctx {
	io_context_t ctx;	/* 0: io_setup failed (fs.aio-max-nr), use pread */
	bool tainted;		/* requests of an abandoned batch may be in flight */
	struct diskio *d;
	struct tctx *next;	/* diskio.ctxs, protected by diskio.mu */
};

struct abatch;

struct diskio {
	int fd;
	enum diskio_mode mode;
	uint64_t size;
	unsigned timeout_ms;
	pthread_key_t key;	/* this thread's struct tctx */
	bool key_made;
	pthread_mutex_t mu;	/* protects ctxs */
	struct tctx *ctxs;	/* every thread's context, destroyed at close */
	atomic_bool failed;	/* sticky: an I/O could not be cancelled */
	atomic_bool fenced;	/* lease lost: no I/O at all (diskio_fence) */
	/* asynchronous batches (diskio_submit) */
	pthread_mutex_t amu;	/* protects the fields below up to acond */
	bool astarted;		/* actx and the reaper exist */
	bool aoff;		/* io_setup failed: diskio_submit says -EOPNOTSUPP */
	bool astop;		/* diskio_close: the reaper ends once nothing is out */
	int aout_n;		/* batches whose done has not returned yet */
	struct abatch *aout;	/* batches out, oldest first (timeout scan) */
	struct abatch *aout_tail;
	pthread_cond_t acond;	/* aout_n reached 0 */
	io_context_t actx;	/* shared by every submitter; reaped by areaper */
	pthread_t areaper;
	atomic_bool atainted;	/* an abandoned batch may still be in actx */
	/* batches waiting for io_submit (see submit_queued) */
	pthread_mutex_t qmu;	/* protects the fields below */
	struct abatch *qhead, *qtail;
	bool qbusy;		/* a thread is submitting the queue */
};

void *diskio_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		return NULL;
	return p;
}

static void tctx_destroy(struct tctx *t)
{
	/* io_destroy() waits for in-flight requests: never on a context whose
	 * requests could not be cancelled (they may never complete). */
	if (!t->tainted && t->ctx)
		io_destroy(t->ctx);
}

/* Thread exit: drop the thread's context from its diskio. */
static void tctx_exit(void *arg)
{
	struct tctx *t = arg;
	struct diskio *d = t->d;

	pthread_mutex_lock(&d->mu);
	for (struct tctx **pp = &d->ctxs; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	pthread_mutex_unlock(&d->mu);
	tctx_destroy(t);
	if (!t->tainted)
		free(t);
}

static struct tctx *tctx_get(struct diskio *d)
{
	struct tctx *t = pthread_getspecific(d->key);

	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (io_setup(AIO_DEPTH, &t->ctx) < 0)
		t->ctx = 0;	/* the system ran out of aio contexts */
	t->d = d;
	if (pthread_setspecific(d->key, t)) {
		tctx_destroy(t);
		free(t);
		return NULL;
	}
	pthread_mutex_lock(&d->mu);
	t->next = d->ctxs;
	d->ctxs = t;
	pthread_mutex_unlock(&d->mu);
	return t;
}

/* ---- asynchronous batches (diskio_submit) ----
 *
 * One kernel context for the whole mount and one reaper thread, both
 * started with the first batch.  A batch is one allocation (its iocbs,
 * its callback, its place in the list of batches out).  Its reference
 * count `left` is the number of requests not completed plus one for the
 * submitter, so whoever drops it to zero finishes the batch: normally the
 * reaper, the submitter when part of the batch could not be submitted.
 * A batch older than the I/O timeout is abandoned by the reaper's scan:
 * done(-ETIMEDOUT), the device failed (as diskio_batch does when a cancel
 * fails: io_cancel does not stop direct I/O), the batch and its buffers
 * left to the kernel; later events for it are ignored. */
#define ASYNC_DEPTH 512		/* the shared context's ring */
#define REAP_EVENTS 64		/* completions per wake-up, at most */
#define REAP_WAIT_MS 200	/* also the period of the timeout scan */

struct abatch {
	diskio_done_fn done;
	void *arg;
	atomic_int left;	/* see above */
	atomic_int err;		/* first error */
	atomic_bool abandoned;	/* timed out: the kernel's, never freed */
	struct timespec deadline;
	struct abatch *prev, *next;	/* diskio.aout, protected by diskio.amu */
	struct abatch *qnext;	/* diskio.qhead, protected by diskio.qmu */
	int n;
	struct iocb **cbp;
	struct iocb cb[];
};

static void abatch_set_err(struct abatch *b, int err)
{
	int zero = 0;

	atomic_compare_exchange_strong(&b->err, &zero, err);
}

static void aout_unlink(struct diskio *d, struct abatch *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		d->aout = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		d->aout_tail = b->prev;
	b->prev = b->next = NULL;
}

static void aout_done(struct diskio *d)
{
	pthread_mutex_lock(&d->amu);
	if (--d->aout_n == 0)
		pthread_cond_broadcast(&d->acond);
	pthread_mutex_unlock(&d->amu);
}

/* Drop k references; the last one finishes the batch. */
static void abatch_put(struct diskio *d, struct abatch *b, int k)
{
	if (atomic_fetch_sub(&b->left, k) != k || atomic_load(&b->abandoned))
		return;
	pthread_mutex_lock(&d->amu);
	aout_unlink(d, b);
	pthread_mutex_unlock(&d->amu);
	b->done(b->arg, atomic_load(&b->err));
	free(b);
	aout_done(d);
}

static bool ts_passed(const struct timespec *dl, const struct timespec *now)
{
	return now->tv_sec > dl->tv_sec || (now->tv_sec == dl->tv_sec && now->tv_nsec >= dl->tv_nsec);
}

/* Abandon the batches out for longer than the I/O timeout. */
static void async_expire(struct diskio *d)
{
	struct timespec now;
	struct abatch *b;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (;;) {
		pthread_mutex_lock(&d->amu);
		b = d->aout;	/* oldest first: deadlines grow along the list */
		if (b && ts_passed(&b->deadline, &now)) {
			aout_unlink(d, b);
			atomic_store(&b->abandoned, true);
		} else {
			b = NULL;
		}
		pthread_mutex_unlock(&d->amu);
		if (!b)
			return;
		atomic_store(&d->atainted, true);
		atomic_store(&d->failed, true);
		b->done(b->arg, -ETIMEDOUT);
		aout_done(d);
	}
}

static void *reaper_main(void *arg)
{
	struct diskio *d = arg;
	struct io_event ev[REAP_EVENTS];
	struct timespec last, now;

	clock_gettime(CLOCK_MONOTONIC, &last);
	for (;;) {
		struct timespec ts = { 0, REAP_WAIT_MS * 1000000L };
		int r = io_getevents(d->actx, 1, REAP_EVENTS, ev, &ts);
		bool stop;

		for (int i = 0; i < r; i++) {
			struct abatch *b = ev[i].data;
			long res = (long)ev[i].res;

			if (atomic_load(&b->abandoned))
				continue;	/* late: already answered -ETIMEDOUT */
			if (res < 0)
				abatch_set_err(b, (int)res);
			else if ((size_t)res != ev[i].obj->u.c.nbytes)
				abatch_set_err(b, -EIO);
			abatch_put(d, b, 1);
		}
		if (r < 0 && r != -EINTR)
			usleep(1000);	/* cannot happen with a valid context */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - last.tv_sec >= 1 || r <= 0) {
			async_expire(d);
			last = now;
		}
		pthread_mutex_lock(&d->amu);
		stop = d->astop && d->aout_n == 0;
		pthread_mutex_unlock(&d->amu);
		if (stop)
			return NULL;
	}
}

/* The shared context and the reaper, once.  0 or -EOPNOTSUPP. */
static int async_start(struct diskio *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->amu);
	if (d->astarted || d->aoff)
		goto out;
	if (io_setup(ASYNC_DEPTH, &d->actx) < 0) {
		d->aoff = true;		/* fs.aio-max-nr: the synchronous path stays */
		goto out;
	}
	if (pthread_create(&d->areaper, NULL, reaper_main, d)) {
		io_destroy(d->actx);
		d->aoff = true;
		goto out;
	}
	d->astarted = true;
out:
	if (d->aoff)
		rc = -EOPNOTSUPP;
	pthread_mutex_unlock(&d->amu);
	return rc;
}

static void async_stop(struct diskio *d)
{
	bool started;

	diskio_drain(d);
	pthread_mutex_lock(&d->amu);
	d->astop = true;
	started = d->astarted;
	pthread_mutex_unlock(&d->amu);
	if (!started)
		return;
	pthread_join(d->areaper, NULL);
	if (!atomic_load(&d->atainted))
		io_destroy(d->actx);	/* would wait for abandoned requests */
}

void diskio_drain(struct diskio *d)
{
	pthread_mutex_lock(&d->amu);
	while (d->aout_n > 0)
		pthread_cond_wait(&d->acond, &d->amu);
	pthread_mutex_unlock(&d->amu);
}

/* Submit the iocbs of batches bs[0..nb) with as few io_submit() calls as
 * the ring allows; then drop each batch's submitter reference, with an
 * error for what could not be submitted. */
static void submit_batches(struct diskio *d, struct abatch **bs, int nb)
{
	struct iocb *cbp[ASYNC_DEPTH];
	int first = 0;

	while (first < nb) {
		int last = first, n = 0, submitted = 0, err = 0;

		while (last < nb && n + bs[last]->n <= ASYNC_DEPTH)
			n += bs[last++]->n;
		for (int k = first, j = 0; k < last; k++)
			for (int i = 0; i < bs[k]->n; i++)
				cbp[j++] = bs[k]->cbp[i];
		while (submitted < n) {
			int r = io_submit(d->actx, n - submitted, cbp + submitted);

			if (r == -EAGAIN || r == -EINTR || r == 0) {
				usleep(200);	/* ring full; the reaper empties it */
				continue;
			}
			if (r < 0) {
				err = r;	/* the rest will never complete */
				break;
			}
			submitted += r;
		}
		for (int k = first; k < last; k++) {
			int out = submitted < bs[k]->n ? submitted : bs[k]->n;

			submitted -= out;
			if (out < bs[k]->n)
				abatch_set_err(bs[k], err);
			abatch_put(d, bs[k], bs[k]->n - out + 1);
		}
		first = last;
	}
}

/* Each io_submit() ends in a doorbell write to the disk (virtio's notify),
 * which in a virtual machine exits to the hypervisor; on the 2-core test
 * machine that was a quarter of the daemon's CPU at 4 KiB QD32, one per
 * request.  So submitters combine: a batch goes on a queue, and the
 * thread that finds nobody submitting takes everything queued (its own
 * batch and what other workers queued meanwhile) into one io_submit(),
 * until the queue is empty.  A worker that finds a submitter busy leaves
 * its batch to it and goes back for the next request: no thread hop when
 * alone, fewer doorbells when busy. */
static void submit_queued(struct diskio *d, struct abatch *b)
{
	struct abatch *bs[ASYNC_DEPTH];

	pthread_mutex_lock(&d->qmu);
	if (d->qtail)
		d->qtail->qnext = b;
	else
		d->qhead = b;
	d->qtail = b;
	if (d->qbusy) {
		pthread_mutex_unlock(&d->qmu);
		return;
	}
	d->qbusy = true;
	while (d->qhead) {
		int nb = 0;

		while (d->qhead && nb < ASYNC_DEPTH) {
			bs[nb++] = d->qhead;
			d->qhead = d->qhead->qnext;
		}
		if (!d->qhead)
			d->qtail = NULL;
		pthread_mutex_unlock(&d->qmu);
		submit_batches(d, bs, nb);
		pthread_mutex_lock(&d->qmu);
	}
	d->qbusy = false;
	pthread_mutex_unlock(&d->qmu);
}

int diskio_submit(struct diskio *d, const struct diskio_req *reqs, int n, diskio_done_fn done,
		  void *arg)
{
	struct abatch *b;
	int rc;

	if (n <= 0 || n > ASYNC_DEPTH)
		return -EINVAL;
	if (atomic_load(&d->failed) || atomic_load(&d->fenced))
		return -EIO;
	if (d->mode != DISKIO_AIO_DIRECT)
		return -EOPNOTSUPP;
	rc = async_start(d);
	if (rc)
		return rc;
	b = calloc(1, sizeof(*b) + (size_t)n * (sizeof(struct iocb) + sizeof(struct iocb *)));
	if (!b)
		return -ENOMEM;
	b->done = done;
	b->arg = arg;
	b->n = n;
	b->cbp = (struct iocb **)(void *)(b->cb + n);
	for (int i = 0; i < n; i++) {
		if (reqs[i].write)
			io_prep_pwrite(&b->cb[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		else
			io_prep_pread(&b->cb[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		b->cb[i].data = b;
		b->cbp[i] = &b->cb[i];
	}
	atomic_init(&b->left, n + 1);
	clock_gettime(CLOCK_MONOTONIC, &b->deadline);
	b->deadline.tv_sec += d->timeout_ms / 1000;
	b->deadline.tv_nsec += (long)(d->timeout_ms % 1000) * 1000000L;
	if (b->deadline.tv_nsec >= 1000000000L) {
		b->deadline.tv_sec++;
		b->deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->amu);
	b->prev = d->aout_tail;
	if (d->aout_tail)
		d->aout_tail->next = b;
	else
		d->aout = b;
	d->aout_tail = b;
	d->aout_n++;
	pthread_mutex_unlock(&d->amu);
	submit_queued(d, b);
	return 0;
}

int diskio_open(const char *path, enum diskio_mode mode, bool rdonly, struct diskio **out)
{
	struct diskio *d = calloc(1, sizeof(*d));
	int flags = (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	int rc;

	if (!d)
		return -ENOMEM;
	d->fd = -1;
	d->mode = mode;
	d->timeout_ms = 60000;
	pthread_mutex_init(&d->mu, NULL);
	pthread_mutex_init(&d->amu, NULL);
	pthread_mutex_init(&d->qmu, NULL);
	pthread_cond_init(&d->acond, NULL);
	if (mode == DISKIO_AIO_DIRECT)
		flags |= O_DIRECT;
	d->fd = open(path, flags);
	if (d->fd < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(d->fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;

		if (ioctl(d->fd, BLKGETSIZE64, &sz) < 0) {
			rc = -errno;
			goto out;
		}
		d->size = sz;
	} else if (S_ISREG(st.st_mode)) {
		d->size = (uint64_t)st.st_size;
	} else {
		rc = -ENODEV;
		goto out;
	}
	if (mode == DISKIO_AIO_DIRECT) {
		rc = -pthread_key_create(&d->key, tctx_exit);
		if (rc)
			goto out;
		d->key_made = true;
	}
	*out = d;
	return 0;
out:
	diskio_close(d);
	return rc;
}

/* Only once no other thread uses d any more. */
void diskio_close(struct diskio *d)
{
	if (!d)
		return;
	async_stop(d);
	if (d->key_made) {
		/* Other threads still alive keep a dangling value under the
		 * deleted key; glibc never returns it for a re-created key. */
		pthread_setspecific(d->key, NULL);
		pthread_key_delete(d->key);
		for (struct tctx *t = d->ctxs, *n; t; t = n) {
			n = t->next;
			tctx_destroy(t);
			if (!t->tainted)
				free(t);
		}
	}
	if (d->fd >= 0)
		close(d->fd);
	pthread_mutex_destroy(&d->mu);
	pthread_mutex_destroy(&d->amu);
	pthread_mutex_destroy(&d->qmu);
	pthread_cond_destroy(&d->acond);
	free(d);
}

uint64_t diskio_size(const struct diskio *d) { return d->size; }
int diskio_fd(const struct diskio *d) { return d->fd; }
void diskio_set_timeout(struct diskio *d, unsigned ms) { d->timeout_ms = ms; }

static int batch_sync(struct diskio *d, struct diskio_req *reqs, int n)
{
	for (int i = 0; i < n; i++) {
		int rc = reqs[i].write ?
			pwrite_full(d->fd, reqs[i].buf, reqs[i].len, (off_t)reqs[i].off) :
			pread_full(d->fd, reqs[i].buf, reqs[i].len, (off_t)reqs[i].off);
		if (rc)
			return rc;
	}
	return 0;
}

static long ms_left(const struct timespec *dl)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (dl->tv_sec - now.tv_sec) * 1000L + (dl->tv_nsec - now.tv_nsec) / 1000000L;
}

/* Submit n <= AIO_DEPTH requests on this thread's context and reap them. */
static int batch_aio_chunk(struct diskio *d, struct tctx *t, struct diskio_req *reqs, int n)
{
	struct iocb cb[AIO_DEPTH], *cbp[AIO_DEPTH];
	struct io_event ev[AIO_DEPTH];
	struct timespec dl;
	int submitted = 0, done = 0, err = 0;

	for (int i = 0; i < n; i++) {
		if (reqs[i].write)
			io_prep_pwrite(&cb[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		else
			io_prep_pread(&cb[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		cbp[i] = &cb[i];
	}
	while (submitted < n) {
		int r = io_submit(t->ctx, n - submitted, cbp + submitted);

		if (r == -EAGAIN || r == -EINTR || r == 0) {
			usleep(200);	/* out of kernel aio resources; retry */
			continue;
		}
		if (r < 0) {
			err = r;	/* requests never submitted will not complete */
			break;
		}
		submitted += r;
	}
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += d->timeout_ms / 1000;
	dl.tv_nsec += (long)(d->timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	while (done < submitted) {
		long left = ms_left(&dl);
		struct timespec ts = { left / 1000, (left % 1000) * 1000000L };
		int r = left > 0 ? io_getevents(t->ctx, 1, submitted - done, ev, &ts) : 0;

		if (r == -EINTR)
			continue;
		if (r < 0 && !err)
			err = r;
		if (r <= 0 && (left <= 0 || r < 0)) {
			/* Timed out (or cannot wait): cancel what is still out. */
			struct io_event cev;
			int cancelled = 0;

			for (int i = 0; i < submitted; i++)
				if (io_cancel(t->ctx, &cb[i], &cev) == 0)
					cancelled++;
			if (done + cancelled >= submitted)
				return err ? err : -ETIMEDOUT;
			/* Uncancellable: the kernel owns the buffers for good. */
			t->tainted = true;
			atomic_store(&d->failed, true);
			return -ETIMEDOUT;
		}
		for (int i = 0; i < r; i++) {
			const struct iocb *c = ev[i].obj;
			long res = (long)ev[i].res;

			if (res < 0 && !err)
				err = (int)res;
			else if (res >= 0 && (size_t)res != c->u.c.nbytes && !err)
				err = -EIO;
		}
		done += r;
	}
	return err;
}

static int batch_aio(struct diskio *d, struct diskio_req *reqs, int n)
{
	struct tctx *t = tctx_get(d);

	if (!t)
		return -ENOMEM;
	if (!t->ctx)	/* still O_DIRECT, just without the I/O timeout */
		return batch_sync(d, reqs, n);
	for (int i = 0; i < n; i += AIO_DEPTH) {
		int rc = batch_aio_chunk(d, t, reqs + i, n - i < AIO_DEPTH ? n - i : AIO_DEPTH);

		if (rc)
			return rc;
	}
	return 0;
}

int diskio_batch(struct diskio *d, struct diskio_req *reqs, int n)
{
	if (n <= 0)
		return 0;
	if (atomic_load(&d->failed) || atomic_load(&d->fenced))
		return -EIO;
	if (d->mode == DISKIO_SYNC)
		return batch_sync(d, reqs, n);
	return batch_aio(d, reqs, n);
}

static int rw_bounce(struct diskio *d, void *buf, size_t len, uint64_t off, bool write)
{
	struct diskio_req r = { .len = len, .off = off, .write = write };
	int rc;

	if (d->mode == DISKIO_SYNC) {
		r.buf = buf;
		return diskio_batch(d, &r, 1);
	}
	r.buf = diskio_alloc(len);
	if (!r.buf)
		return -ENOMEM;
	if (write)
		memcpy(r.buf, buf, len);
	rc = diskio_batch(d, &r, 1);
	if (!rc && !write)
		memcpy(buf, r.buf, len);
	if (rc != -ETIMEDOUT)	/* else the kernel may still use it */
		free(r.buf);
	return rc;
}

int diskio_pread(struct diskio *d, void *buf, size_t len, uint64_t off)
{
	return rw_bounce(d, buf, len, off, false);
}

int diskio_pwrite(struct diskio *d, const void *buf, size_t len, uint64_t off)
{
	return rw_bounce(d, (void *)buf, len, off, true);
}

void diskio_fence(struct diskio *d, bool fenced)
{
	atomic_store(&d->fenced, fenced);
}

bool diskio_fenced(const struct diskio *d)
{
	return atomic_load(&d->fenced);
}

int diskio_sync(struct diskio *d)
{
	if (atomic_load(&d->failed) || atomic_load(&d->fenced))
		return -EIO;
	if (fdatasync(d->fd) < 0)
		return -errno;
	return 0;
}
