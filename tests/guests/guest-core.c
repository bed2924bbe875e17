/* guest-core.c — the migration test workload.
 *
 * - dirties work pages at bootinfo.dirty_rate_kib; page i at generation g
 *   holds words derived from (i, g, word index), g = 0 means all zero;
 *   the generation table and its sum (the checksum region) are in RAM;
 * - verifies a few pages every step, and every page plus the table sum
 *   whenever bootinfo.resume_count changes (the VMM bumps it after an
 *   incoming migration), reporting on the serial port;
 * - writes numbered records to the paravirtual disk;
 * - prints a tick line every second.
 * Only 32-bit arithmetic: the freestanding build has no libgcc.
 */
#include "guest-core.h"

#define GSTATE_MAGIC 0x54534756u	/* "VGST" */
#define BURST_PAGES 64u
#define VERIFY_PER_STEP 8u
#define MAX_APS 16u

struct gstate {
	uint32_t magic;
	uint32_t seen_resume;
	uint32_t window_ms;		/* start of the current 1 s pacing window */
	uint32_t window_pages;		/* pages dirtied in it (carried over) */
	uint32_t total_dirtied;
	uint32_t cursor;
	uint32_t stride;
	uint32_t gen_sum;		/* sum of the generation table */
	uint32_t rec_seq;		/* next disk record */
	uint32_t next_rec_ms;
	uint32_t next_tick_ms;
	uint32_t verify_cursor;
	uint32_t verify_errors;
	uint32_t disk_errors;
	uint32_t steps;
	uint32_t ap_ticks[MAX_APS];
	uint32_t rec_pending;		/* the record write waits (GUEST_BLK_PENDING) */
};

#define REC_BUF_GPA (GUEST_STATE_GPA + GUEST_PAGE)

static inline void *gp(const struct vmfs_guest_env *e, uint32_t gpa)
{
	return (void *)(e->base + gpa);
}

static inline struct gstate *st(const struct vmfs_guest_env *e)
{
	return gp(e, GUEST_STATE_GPA);
}

static inline const volatile struct vmfs_bootinfo *bi(const struct vmfs_guest_env *e)
{
	return gp(e, GUEST_BOOTINFO_GPA);
}

static inline void mark(const struct vmfs_guest_env *e, uint32_t gpa, uint32_t len)
{
	if (e->dirty)
		e->dirty(e->opaque, gpa, len);
}

static void putc_(const struct vmfs_guest_env *e, char c)
{
	e->out8(e->opaque, GUEST_PORT_COM1, (uint8_t)c);
}

static void puts_(const struct vmfs_guest_env *e, const char *s)
{
	while (*s)
		putc_(e, *s++);
}

static void putu(const struct vmfs_guest_env *e, uint32_t v)
{
	char b[11];
	int n = 0;

	do {
		b[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		putc_(e, b[--n]);
}

static void kv(const struct vmfs_guest_env *e, const char *k, uint32_t v)
{
	putc_(e, ' ');
	puts_(e, k);
	putc_(e, '=');
	putu(e, v);
}

static inline uint32_t now_ms(const struct vmfs_guest_env *e)
{
	return e->in32(e->opaque, GUEST_PORT_CLOCK);
}

static inline uint32_t pattern(uint32_t page, uint32_t gen, uint32_t k)
{
	uint32_t x = page * 0x9e3779b1u ^ gen * 0x85ebca77u ^ k * 0xc2b2ae3du;

	return x ^ (x >> 15);
}

static void fill_page(const struct vmfs_guest_env *e, uint32_t page, uint32_t gen)
{
	uint32_t gpa = bi(e)->work_gpa + page * GUEST_PAGE;
	volatile uint32_t *w = gp(e, gpa);

	w[0] = page;
	w[1] = gen;
	for (uint32_t k = 2; k < GUEST_PAGE / 4; k++)
		w[k] = pattern(page, gen, k);
	mark(e, gpa, GUEST_PAGE);
}

/* 0 when page `page` holds what its generation says. */
static int check_page(const struct vmfs_guest_env *e, uint32_t page)
{
	const volatile uint32_t *gen = gp(e, bi(e)->gen_gpa);
	const volatile uint32_t *w = gp(e, bi(e)->work_gpa + page * GUEST_PAGE);
	uint32_t g = gen[page];

	if (g == 0) {
		for (uint32_t k = 0; k < GUEST_PAGE / 4; k++)
			if (w[k])
				return -1;
		return 0;
	}
	if (w[0] != page || w[1] != g)
		return -1;
	for (uint32_t k = 2; k < GUEST_PAGE / 4; k++)
		if (w[k] != pattern(page, g, k))
			return -1;
	return 0;
}

static void report_bad(const struct vmfs_guest_env *e, const char *what, uint32_t page)
{
	st(e)->verify_errors++;
	puts_(e, "vmfs-guest: verify FAILED");
	kv(e, what, page);
	putc_(e, '\n');
	e->out32(e->opaque, GUEST_PORT_STATUS, GUEST_STATUS_VERIFY_FAIL);
}

static void verify_all(const struct vmfs_guest_env *e, uint32_t resume)
{
	const volatile uint32_t *gen = gp(e, bi(e)->gen_gpa);
	uint32_t n = bi(e)->work_pages, sum = 0, bad = 0;

	for (uint32_t i = 0; i < n; i++) {
		sum += gen[i];
		if (check_page(e, i)) {
			if (!bad)
				report_bad(e, "page", i);
			bad++;
		}
	}
	if (sum != st(e)->gen_sum)
		report_bad(e, "gen_sum", sum);
	puts_(e, "vmfs-guest: resume");
	kv(e, "n", resume);
	puts_(e, bad || sum != st(e)->gen_sum ? " verify FAILED" : " verify ok");
	kv(e, "pages", n);
	kv(e, "bad", bad);
	kv(e, "gen_sum", sum);
	kv(e, "records", st(e)->rec_seq);
	putc_(e, '\n');
}

/* The outcome of the record write issued last. */
static void record_done(const struct vmfs_guest_env *e, uint32_t rc)
{
	struct gstate *s = st(e);

	if (rc) {
		/* Not acknowledged: the same seq is tried again next time. */
		if (!s->disk_errors++) {
			puts_(e, "vmfs-guest: disk error");
			kv(e, "errno", rc);
			kv(e, "seq", s->rec_seq);
			putc_(e, '\n');
		}
		return;
	}
	s->rec_seq++;
}

static void write_record(const struct vmfs_guest_env *e, uint32_t now)
{
	struct gstate *s = st(e);
	volatile struct guest_record *r = gp(e, REC_BUF_GPA);
	uint32_t cap = e->in32(e->opaque, GUEST_PORT_BLK_CAP), rc;

	if (!cap)
		return;
	r->magic = GUEST_REC_MAGIC;
	r->seq = s->rec_seq;
	r->run_id = bi(e)->run_id;
	r->time_ms = now;
	r->resume_count = bi(e)->resume_count;
	r->check = r->magic ^ r->seq ^ r->run_id ^ r->time_ms ^ r->resume_count;
	mark(e, REC_BUF_GPA, GUEST_PAGE);
	e->out32(e->opaque, GUEST_PORT_BLK_BLOCK, s->rec_seq % cap);
	e->out32(e->opaque, GUEST_PORT_BLK_BUF, REC_BUF_GPA);
	e->out32(e->opaque, GUEST_PORT_BLK_CMD, GUEST_BLK_WRITE);
	rc = e->in32(e->opaque, GUEST_PORT_BLK_CMD);
	if (rc == GUEST_BLK_PENDING) {
		/* Held back while a migration hands the disk over
		 * (guest-abi.h): polled at the next steps, so that a vCPU of
		 * the thread accelerator, which parks between steps only,
		 * can be paused meanwhile.  The buffer stays untouched. */
		s->rec_pending = 1;
		return;
	}
	record_done(e, rc);
}

static void poll_record(const struct vmfs_guest_env *e)
{
	uint32_t rc = e->in32(e->opaque, GUEST_PORT_BLK_CMD);

	if (rc == GUEST_BLK_PENDING)
		return;
	st(e)->rec_pending = 0;
	record_done(e, rc);
}

void vmfs_guest_init(const struct vmfs_guest_env *e)
{
	struct gstate *s = st(e);
	uint32_t now = now_ms(e), n = bi(e)->work_pages;

	if (s->magic == GSTATE_MAGIC)
		return;		/* state came with the RAM: keep going */
	s->magic = GSTATE_MAGIC;
	s->seen_resume = bi(e)->resume_count;
	s->window_ms = now;
	s->next_rec_ms = now;
	s->next_tick_ms = now + 1000;
	s->stride = (n > 4099 && n % 4099) ? 4099 : 1;
	if (bi(e)->flags & VMFS_BOOT_PREFILL) {
		volatile uint32_t *gen = gp(e, bi(e)->gen_gpa);

		for (uint32_t p = 0; p < n; p++) {
			fill_page(e, p, 1);
			gen[p] = 1;
		}
		mark(e, bi(e)->gen_gpa, n * 4);
		s->gen_sum = n;
	}
	mark(e, GUEST_STATE_GPA, GUEST_PAGE);
	puts_(e, "vmfs-guest: up");
	kv(e, "cpus", bi(e)->ncpus);
	kv(e, "work_pages", n);
	kv(e, "rate_kib", bi(e)->dirty_rate_kib);
	kv(e, "run", bi(e)->run_id);
	kv(e, "prefilled", s->gen_sum);
	putc_(e, '\n');
	e->out32(e->opaque, GUEST_PORT_STATUS, GUEST_STATUS_UP);
}

static uint32_t dirty_some(const struct vmfs_guest_env *e, uint32_t now)
{
	struct gstate *s = st(e);
	volatile uint32_t *gen = gp(e, bi(e)->gen_gpa);
	uint32_t pps = bi(e)->dirty_rate_kib / 4, due, todo, n = bi(e)->work_pages;

	if (!pps || !n)
		return 0;
	while (now - s->window_ms >= 1000) {
		s->window_ms += 1000;
		s->window_pages = s->window_pages > pps ? s->window_pages - pps : 0;
	}
	due = pps * (now - s->window_ms) / 1000 + 1;
	if (due <= s->window_pages)
		return 0;
	todo = due - s->window_pages;
	if (todo > BURST_PAGES)
		todo = BURST_PAGES;
	for (uint32_t i = 0; i < todo; i++) {
		uint32_t p = s->cursor, g = gen[p] + 1;

		if (g == 0)
			g = 1;
		s->gen_sum += g - gen[p];
		fill_page(e, p, g);
		gen[p] = g;
		mark(e, bi(e)->gen_gpa + p * 4, 4);
		s->cursor = (p + s->stride) % n;
	}
	s->window_pages += todo;
	s->total_dirtied += todo;
	return todo;
}

void vmfs_guest_step(const struct vmfs_guest_env *e)
{
	struct gstate *s = st(e);
	uint32_t now = now_ms(e), busy, resume = bi(e)->resume_count;

	s->steps++;
	if (resume != s->seen_resume) {
		s->seen_resume = resume;
		verify_all(e, resume);
	}
	busy = dirty_some(e, now);
	for (uint32_t i = 0; i < VERIFY_PER_STEP && bi(e)->work_pages; i++) {
		uint32_t p = s->verify_cursor;

		if (check_page(e, p))
			report_bad(e, "page", p);
		s->verify_cursor = (p + 1) % bi(e)->work_pages;
	}
	if (s->rec_pending) {
		poll_record(e);
	} else if (bi(e)->record_interval_ms && (int32_t)(now - s->next_rec_ms) >= 0) {
		write_record(e, now);
		s->next_rec_ms = now + bi(e)->record_interval_ms;
	}
	if ((int32_t)(now - s->next_tick_ms) >= 0) {
		s->next_tick_ms = now + 1000;
		puts_(e, "vmfs-guest: tick");
		kv(e, "t", now);
		kv(e, "dirtied", s->total_dirtied);
		kv(e, "records", s->rec_seq);
		kv(e, "verify_errors", s->verify_errors);
		kv(e, "resumes", s->seen_resume);
		kv(e, "ap0", s->ap_ticks[1 % MAX_APS]);
		putc_(e, '\n');
	}
	mark(e, GUEST_STATE_GPA, GUEST_PAGE);
	if (!busy)
		e->out32(e->opaque, GUEST_PORT_IDLE, 1000);
}

void vmfs_guest_ap_step(const struct vmfs_guest_env *e, uint32_t cpu)
{
	st(e)->ap_ticks[cpu % MAX_APS]++;
	mark(e, GUEST_STATE_GPA, GUEST_PAGE);
	e->out32(e->opaque, GUEST_PORT_IDLE, 10000);
}
