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
