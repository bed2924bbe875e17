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

#define AIO_DEPTH 256

/* One in-flight batch.  Protected by diskio.mu.  Freed by the waiter, or
 * by the reaper when the waiter abandoned it after a timeout. */
struct batch {
	pthread_cond_t done;	/* signalled when pending reaches 0 */
	int pending;
	int err;
	bool abandoned;
	int n;
	struct iocb *iocbs;
	void **owned;		/* buffers the reaper frees when abandoned */
};

struct diskio {
	int fd;
	enum diskio_mode mode;
	uint64_t size;
	unsigned timeout_ms;
	io_context_t ctx;
	pthread_t reaper;
	bool reaper_running;
	pthread_mutex_t mu;
	bool stop;		/* protected by mu */
	bool failed;		/* sticky: an I/O could not be cancelled */
	atomic_bool fenced;	/* lease lost: no I/O at all (diskio_fence) */
};

void *diskio_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 4096))
		return NULL;
	return p;
}

static void batch_free(struct batch *b)
{
	/* An abandoned batch's buffers are leaked on purpose: see diskio.h. */
	pthread_cond_destroy(&b->done);
	free(b->owned);
	free(b->iocbs);
	free(b);
}

static void *reaper_main(void *arg)
{
	struct diskio *d = arg;
	struct io_event ev[64];

	for (;;) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		int n = io_getevents(d->ctx, 1, 64, ev, &ts);

		pthread_mutex_lock(&d->mu);
		if (n < 0 && n != -EINTR) {
			pthread_mutex_unlock(&d->mu);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct batch *b = ev[i].data;
			struct iocb *cb = ev[i].obj;
			long res = (long)ev[i].res;

			if (res < 0 && !b->err)
				b->err = (int)res;
			else if (res >= 0 && (size_t)res != cb->u.c.nbytes && !b->err)
				b->err = -EIO;
			/* wake only this batch's waiter, not every thread */
			if (--b->pending == 0) {
				if (b->abandoned)
					batch_free(b);
				else
					pthread_cond_signal(&b->done);
			}
		}
		if (d->stop) {
			pthread_mutex_unlock(&d->mu);
			break;
		}
		pthread_mutex_unlock(&d->mu);
	}
	return NULL;
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
		rc = io_setup(AIO_DEPTH, &d->ctx);
		if (rc < 0)
			goto out;
		rc = -pthread_create(&d->reaper, NULL, reaper_main, d);
		if (rc)
			goto out;
		d->reaper_running = true;
	}
	*out = d;
	return 0;
out:
	diskio_close(d);
	return rc;
}

void diskio_close(struct diskio *d)
{
	if (!d)
		return;
	if (d->reaper_running) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->reaper, NULL);
	}
	if (d->ctx)
		io_destroy(d->ctx);
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

static int batch_aio(struct diskio *d, struct diskio_req *reqs, int n)
{
	struct batch *b = calloc(1, sizeof(*b));
	struct iocb **cbs = NULL;
	struct timespec dl;
	int submitted = 0, rc = 0;

	if (!b)
		return -ENOMEM;
	pthread_cond_init(&b->done, NULL);
	b->n = n;
	b->iocbs = calloc((size_t)n, sizeof(*b->iocbs));
	b->owned = calloc((size_t)n, sizeof(*b->owned));
	cbs = calloc((size_t)n, sizeof(*cbs));
	if (!b->iocbs || !b->owned || !cbs) {
		batch_free(b);
		free(cbs);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		if (reqs[i].write)
			io_prep_pwrite(&b->iocbs[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		else
			io_prep_pread(&b->iocbs[i], d->fd, reqs[i].buf, reqs[i].len, (long long)reqs[i].off);
		b->iocbs[i].data = b;
		cbs[i] = &b->iocbs[i];
		b->owned[i] = reqs[i].buf;
	}
	pthread_mutex_lock(&d->mu);
	b->pending = n;
	pthread_mutex_unlock(&d->mu);
	while (submitted < n) {
		int r = io_submit(d->ctx, n - submitted, cbs + submitted);

		if (r == -EAGAIN || r == -EINTR || r == 0) {
			usleep(200);	/* the ring is full; completions free it */
			continue;
		}
		if (r < 0) {
			/* Requests never submitted will not complete. */
			pthread_mutex_lock(&d->mu);
			b->pending -= n - submitted;
			if (!b->err)
				b->err = r;
			pthread_mutex_unlock(&d->mu);
			break;
		}
		submitted += r;
	}
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += d->timeout_ms / 1000;
	dl.tv_nsec += (long)(d->timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->mu);
	while (b->pending > 0) {
		if (pthread_cond_timedwait(&b->done, &d->mu, &dl) == ETIMEDOUT && b->pending > 0) {
			struct io_event ev;

			for (int i = 0; i < submitted; i++)
				if (io_cancel(d->ctx, &b->iocbs[i], &ev) == 0)
					b->pending--;
			if (b->pending == 0)
				break;
			/* Uncancellable: the reaper owns the batch and its buffers. */
			b->abandoned = true;
			d->failed = true;
			pthread_mutex_unlock(&d->mu);
			free(cbs);
			return -ETIMEDOUT;
		}
	}
	rc = b->err;
	pthread_mutex_unlock(&d->mu);
	batch_free(b);
	free(cbs);
	return rc;
}

int diskio_batch(struct diskio *d, struct diskio_req *reqs, int n)
{
	if (n <= 0)
		return 0;
	if (d->failed || atomic_load(&d->fenced))
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
	if (d->failed || atomic_load(&d->fenced))
		return -EIO;
	if (fdatasync(d->fd) < 0)
		return -errno;
	return 0;
}
