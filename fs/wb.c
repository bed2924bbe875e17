/* wb.c — writes answered before their disk write completed (wb.h). */
#include "config.h"
#include "wb.h"

#include <errno.h>

void wb_init(struct wb_file *f)
{
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->list = NULL;
	atomic_init(&f->n, 0);
	f->err = 0;
}

void wb_destroy(struct wb_file *f)
{
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cond);
}

static bool overlaps(const struct wb_file *f, uint64_t off, uint64_t len)
{
	for (const struct wb_range *r = f->list; r; r = r->next)
		if (off < r->off + r->len && r->off < off + len)
			return true;
	return false;
}

void wb_wait_overlap(struct wb_file *f, uint64_t off, uint64_t len)
{
	if (!atomic_load(&f->n))
		return;
	pthread_mutex_lock(&f->mu);
	while (overlaps(f, off, len))
		pthread_cond_wait(&f->cond, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

bool wb_begin(struct wb_file *f, struct wb_range *r, uint64_t off, uint64_t len)
{
	bool ok;

	pthread_mutex_lock(&f->mu);
	ok = atomic_load(&f->n) < WB_MAX;
	if (ok) {
		*r = (struct wb_range){ off, len, f->list };
		f->list = r;
		atomic_fetch_add(&f->n, 1);
	}
	pthread_mutex_unlock(&f->mu);
	return ok;
}

void wb_end(struct wb_file *f, struct wb_range *r, int rc)
{
	struct wb_range **pp;

	pthread_mutex_lock(&f->mu);
	for (pp = &f->list; *pp && *pp != r; pp = &(*pp)->next)
		;
	if (*pp) {
		*pp = r->next;
		atomic_fetch_sub(&f->n, 1);
	}
	if (rc && !f->err)
		f->err = rc;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

void wb_wait_all(struct wb_file *f)
{
	if (!atomic_load(&f->n))
		return;
	pthread_mutex_lock(&f->mu);
	while (f->list)
		pthread_cond_wait(&f->cond, &f->mu);
	pthread_mutex_unlock(&f->mu);
}

int wb_drain(struct wb_file *f)
{
	int rc;

	pthread_mutex_lock(&f->mu);
	while (f->list)
		pthread_cond_wait(&f->cond, &f->mu);
	rc = f->err;
	f->err = 0;
	pthread_mutex_unlock(&f->mu);
	return rc;
}
