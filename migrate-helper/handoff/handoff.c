/* handoff.c — the disk-lock handoff of a live migration (include/vmfs/handoff.h).
 *
 * PREPARED VM STATES (struct vmfs_handoff, one slot per disk)
 *
 *   slot state   | QUEUED            | GRANTED          | REFUSED/err    | abort
 *   -------------+-------------------+------------------+----------------+-------------
 *   SENT         | -> WAITING        | -> GRANTED (*)   | -> FAILED      | cancel later
 *   WAITING      | -                 | -> GRANTED       | -> FAILED      | cancel
 *   GRANTED      | -                 | -                | -              | left alone
 *   FAILED       | (sticky)          |                  |                |
 *
 *   (*) during prepare a grant means the disk was free: the prepare fails
 *       (VMFS_HANDOFF_EFREE) and the grant is released again.
 *
 * Invariants:
 *   H1  Only one lock-manager message moves locks: the TRANSFER_SET of
 *       commit.  Nothing here releases a source lock or grants a target.
 *   H2  commit sends the epochs it read; if any changed in between, the
 *       lock manager refuses the whole set (ESTALE) and nothing moves.
 *   H3  A failed prepare leaves no request of ours queued (cancelled or
 *       released before returning, or gone with the handle).
 *
 * Ownership: a struct vmfs_handoff belongs to the caller's thread; the
 * completion callback that updates its slots runs from vmfs_dlm_dispatch()
 * (or a synchronous call) on the same handle, so in that thread too.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "vmfs/handoff.h"

/* The identity of a file on a vmfs mount ("<volume UUID>/i<ino>"), as
 * fs/fuse_ops.h VMFS_XATTR_ID. */
#define VMFSDISK_ID_XATTR "trusted.vmfs.id"

enum slot_state { SL_SENT = 0, SL_WAITING, SL_GRANTED, SL_FAILED };

struct slot {
	struct vmfs_handoff *p;		/* back pointer for the completion */
	char res[VMFS_DLM_NAME_MAX + 1];
	uint64_t lkid;			/* set by the library when queued */
	enum slot_state state;
	int err;			/* FAILED: why */
	bool cancel_sent;		/* undo(): CANCEL sent once */
	struct vmfs_dlm_lksb lksb;	/* GRANTED: the grant */
};

struct vmfs_handoff {
	vmfs_dlm_t *h;
	char vm[VMFS_DLM_TAG_MAX + 1];
	char ls[VMFS_DLM_NAME_MAX + 1];
	size_t n;
	struct slot s[VMFS_HANDOFF_DISKS_MAX];
};

static void say(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

const char *vmfs_handoff_strerror(int err)
{
	switch (err) {
	case VMFS_HANDOFF_ENOSOURCE:
		return "the VM holds no disk lock on the source";
	case VMFS_HANDOFF_ENOPREPARE:
		return "a disk of the VM has no prepared request on the destination";
	case VMFS_HANDOFF_EAMBIGUOUS:
		return "several holders, requests or hosts match";
	case VMFS_HANDOFF_EFREE:
		return "the disk is not locked by anyone";
	case VMFS_HANDOFF_ETOOMANY:
		return "too many disks for one transfer";
	default:
		return vmfs_dlm_strerror(err);
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- prepare / poll / abort ---------------------------------------------- */

static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	struct slot *s = arg;

	if (!s)
		return;
	if (lksb->status == 0) {
		s->state = SL_GRANTED;
		s->lksb = *lksb;
		s->lkid = lksb->lkid;
	} else {
		s->state = SL_FAILED;
		s->err = lksb->status;
	}
}

/* Read events until done(p) or the deadline (0 = none).  0, -ETIMEDOUT,
 * or the handle's error. */
static int pump(struct vmfs_handoff *p, bool (*done)(const struct vmfs_handoff *p),
		uint64_t deadline)
{
	while (!done(p)) {
		struct pollfd pfd = { .fd = vmfs_dlm_fd(p->h), .events = POLLIN };
		int timeout = -1, rc;

		if (deadline) {
			uint64_t now = mono_ms();

			if (now >= deadline)
				return -ETIMEDOUT;
			timeout = (int)(deadline - now);
		}
		if (pfd.fd < 0)
			return VMFS_DLM_EDAEMON;
		rc = poll(&pfd, 1, timeout);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc > 0) {
			rc = vmfs_dlm_dispatch(p->h);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Every slot has its lkid (queued) or an outcome. */
static bool all_known(const struct vmfs_handoff *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->s[i].state == SL_SENT && !p->s[i].lkid)
			return false;
	return true;
}

/* Every slot has an outcome (granted or failed). */
static bool all_final(const struct vmfs_handoff *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->s[i].state == SL_SENT || p->s[i].state == SL_WAITING)
			return false;
	return true;
}

static void mark_waiting(struct vmfs_handoff *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->s[i].state == SL_SENT && p->s[i].lkid)
			p->s[i].state = SL_WAITING;
}

static void cancel_waiting(struct vmfs_handoff *p)
{
	mark_waiting(p);
	for (size_t i = 0; i < p->n; i++) {
		struct slot *s = &p->s[i];

		if (s->state == SL_WAITING && s->lkid && !s->cancel_sent) {
			s->cancel_sent = true;
			(void)vmfs_dlm_cancel(p->h, s->lkid);
		}
	}
}

/* Cancel what waits, wait (bounded) for the outcomes; with release, also
 * give back what was granted.  The callbacks are detached before p is
 * freed, so a late completion finds nothing. */
static int undo(struct vmfs_handoff *p, bool release)
{
	static const struct vmfs_dlm_callbacks none = { 0 };
	int rc = 0;

	cancel_waiting(p);
	/* requests still without lkid get cancelled once it is known */
	if (pump(p, all_known, mono_ms() + 10000) == 0)
		cancel_waiting(p);
	rc = pump(p, all_final, mono_ms() + 10000);
	for (size_t i = 0; i < p->n; i++) {
		struct slot *s = &p->s[i];

		if (s->state != SL_GRANTED)
			continue;
		if (release) {
			int r = vmfs_dlm_unlock(p->h, &s->lksb, 0);

			if (r < 0 && !rc)
				rc = r;
		} else if (!rc) {
			rc = -EALREADY;	/* the handoff won the race with the cancel */
		}
	}
	vmfs_dlm_set_callbacks(p->h, &none, NULL);
	return rc;
}

int vmfs_handoff_prepare(vmfs_dlm_t *h, const char *vm, const char *ls,
			 const char *const *res, size_t n, int timeout_ms,
			 struct vmfs_handoff **out, char *why, size_t why_len)
{
	struct vmfs_dlm_callbacks cb = { .completion = on_completion };
	struct vmfs_handoff *p;
	uint64_t deadline = timeout_ms >= 0 ? mono_ms() + (uint64_t)timeout_ms : 0;
	int rc = 0;

	say(why, why_len, "ok");
	if (!h || !vm || !*vm || strlen(vm) > VMFS_DLM_TAG_MAX || !res || !out ||
	    (ls && (!*ls || strlen(ls) > VMFS_DLM_NAME_MAX))) {
		say(why, why_len, "bad arguments");
		return -EINVAL;
	}
	*out = NULL;
	if (n == 0 || n > VMFS_HANDOFF_DISKS_MAX) {
		say(why, why_len, "%zu disks: 1 to %d per VM", n, VMFS_HANDOFF_DISKS_MAX);
		return n ? VMFS_HANDOFF_ETOOMANY : -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!res[i] || !*res[i] || strlen(res[i]) > VMFS_DLM_NAME_MAX) {
			say(why, why_len, "disk lock names must be 1 to %d bytes", VMFS_DLM_NAME_MAX);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(res[i], res[j]) == 0) {
				say(why, why_len, "disk %s named twice", res[i]);
				return -EINVAL;
			}
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->h = h;
	snprintf(p->vm, sizeof(p->vm), "%s", vm);
	snprintf(p->ls, sizeof(p->ls), "%s", ls ? ls : VMFS_HANDOFF_DEFAULT_LS);
	vmfs_dlm_set_callbacks(h, &cb, NULL);
	for (size_t i = 0; i < n; i++) {
		struct slot *s = &p->s[i];

		s->p = p;
		snprintf(s->res, sizeof(s->res), "%s", res[i]);
		rc = vmfs_dlm_lock_async(h, p->ls, s->res, VMFS_DLM_EX, VMFS_DLM_PERSISTENT, p->vm,
					 s, &s->lkid);
		if (rc < 0) {
			say(why, why_len, "request for %s/%s refused: %s", p->ls, s->res,
			    vmfs_handoff_strerror(rc));
			s->state = SL_FAILED;
			s->err = rc;
			p->n = i + 1;
			goto fail;
		}
		p->n = i + 1;
	}
	rc = pump(p, all_known, deadline);
	if (rc < 0) {
		say(why, why_len, "requests not queued in time: %s", vmfs_handoff_strerror(rc));
		goto fail;
	}
	mark_waiting(p);
	for (size_t i = 0; i < p->n; i++) {
		const struct slot *s = &p->s[i];

		if (s->state == SL_GRANTED) {
			say(why, why_len, "%s/%s is not locked by anyone: nothing to hand over", p->ls,
			    s->res);
			rc = VMFS_HANDOFF_EFREE;
			goto fail;
		}
		if (s->state == SL_FAILED) {
			say(why, why_len, "request for %s/%s failed: %s", p->ls, s->res,
			    vmfs_handoff_strerror(s->err));
			rc = s->err;
			goto fail;
		}
	}
	*out = p;
	return 0;
fail:
	(void)undo(p, true);
	free(p);
	return rc;
}

int vmfs_handoff_poll(struct vmfs_handoff *p, struct vmfs_handoff_disk *disks, size_t n_disks)
{
	bool all = true;

	if (!p)
		return -EINVAL;
	mark_waiting(p);
	for (size_t i = 0; i < p->n; i++) {
		if (p->s[i].state == SL_FAILED)
			return p->s[i].err;
		if (p->s[i].state != SL_GRANTED)
			all = false;
	}
	if (!all)
		return 0;
	for (size_t i = 0; disks && i < p->n && i < n_disks; i++) {
		memset(&disks[i], 0, sizeof(disks[i]));
		snprintf(disks[i].res, sizeof(disks[i].res), "%s", p->s[i].res);
		disks[i].to_lkid = p->s[i].lkid;
		disks[i].epoch = p->s[i].lksb.epoch;
	}
	return 1;
}

int vmfs_handoff_abort(struct vmfs_handoff *p)
{
	int rc;

	if (!p)
		return -EINVAL;
	rc = undo(p, false);
	free(p);
	return rc;
}

void vmfs_handoff_free(struct vmfs_handoff *p)
{
	static const struct vmfs_dlm_callbacks none = { 0 };

	if (!p)
		return;
	vmfs_dlm_set_callbacks(p->h, &none, NULL);
	free(p);
}

/* --- lookup / commit ----------------------------------------------------- */

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

static uint64_t ju64(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_uint64(v);
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static json_object *jarr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

/* The resources array of lockspace ls in a "locks" answer (NULL if none). */
static json_object *ls_resources(json_object *table, const char *ls)
{
	json_object *lss = jarr(table, "lockspaces");

	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *l = json_object_array_get_idx(lss, i);

		if (strcmp(jstr(l, "name"), ls) == 0)
			return jarr(l, "resources");
	}
	return NULL;
}

static int query_locks(vmfs_dlm_t *h, const char *ls, json_object **out, char *why, size_t len)
{
	char *text = NULL;
	int rc = vmfs_dlm_query(h, "locks", ls, &text);

	*out = NULL;
	if (rc < 0) {
		say(why, len, "cannot read the lock table: %s", vmfs_handoff_strerror(rc));
		return rc;
	}
	*out = json_tokener_parse(text);
	free(text);
	if (!*out) {
		say(why, len, "cannot parse the lock table");
		return VMFS_DLM_EPROTO;
	}
	return 0;
}

/* The source host: from_host, or the only host holding granted locks
 * tagged vm (not recovering) in the resources. */
static int pick_source(json_object *resources, const char *vm, const char *from_host,
		       char *src, size_t src_len, char *why, size_t len)
{
	src[0] = '\0';
	if (from_host) {
		snprintf(src, src_len, "%s", from_host);
		return 0;
	}
	for (size_t i = 0; resources && i < json_object_array_length(resources); i++) {
		json_object *locks = jarr(json_object_array_get_idx(resources, i), "locks");

		for (size_t j = 0; locks && j < json_object_array_length(locks); j++) {
			json_object *l = json_object_array_get_idx(locks, j);
			const char *host = jstr(l, "host");

			if (strcmp(jstr(l, "queue"), "granted") != 0 || strcmp(jstr(l, "tag"), vm) ||
			    jbool(l, "recovering"))
				continue;
			if (src[0] && strcmp(src, host) != 0) {
				say(why, len, "locks tagged %s are granted on %s and on %s: say which "
				    "host is the source (--from-host)", vm, src, host);
				return VMFS_HANDOFF_EAMBIGUOUS;
			}
			snprintf(src, src_len, "%s", host);
		}
	}
	return 0;
}

static int lookup(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
		  struct vmfs_handoff_disk *d, size_t *n_out, char *why, size_t len)
{
	json_object *table = NULL, *resources;
	char src[VMFS_DLM_NAME_MAX + 1], dst[VMFS_DLM_NAME_MAX + 1] = "";
	size_t n = 0;
	int rc;

	*n_out = 0;
	rc = query_locks(h, ls, &table, why, len);
	if (rc < 0)
		return rc;
	resources = ls_resources(table, ls);
	rc = pick_source(resources, vm, from_host, src, sizeof(src), why, len);
	if (rc < 0)
		goto out;
	for (size_t i = 0; resources && i < json_object_array_length(resources); i++) {
		json_object *r = json_object_array_get_idx(resources, i);
		json_object *locks = jarr(r, "locks");
		json_object *from = NULL, *to = NULL;

		for (size_t j = 0; locks && j < json_object_array_length(locks); j++) {
			json_object *l = json_object_array_get_idx(locks, j);
			const char *q = jstr(l, "queue");

			if (strcmp(jstr(l, "tag"), vm) != 0)
				continue;
			if (strcmp(q, "granted") == 0 && strcmp(jstr(l, "host"), src) == 0 &&
			    !jbool(l, "recovering")) {
				if (from) {
					say(why, len, "%s/%s: two locks tagged %s granted on %s", ls,
					    jstr(r, "name"), vm, src);
					rc = VMFS_HANDOFF_EAMBIGUOUS;
					goto out;
				}
				from = l;
			} else if (strcmp(q, "waiting") == 0 && strcmp(jstr(l, "host"), src) != 0) {
				if (to) {
					say(why, len, "%s/%s: two requests tagged %s wait for it", ls,
					    jstr(r, "name"), vm);
					rc = VMFS_HANDOFF_EAMBIGUOUS;
					goto out;
				}
				to = l;
			}
		}
		if (!from && !to)
			continue;
		if (!from) {
			say(why, len, "%s/%s: a request tagged %s waits on %s, but %s holds no lock "
			    "tagged %s on it", ls, jstr(r, "name"), vm, jstr(to, "host"),
			    src[0] ? src : "the source", vm);
			rc = VMFS_HANDOFF_ENOSOURCE;
			goto out;
		}
		if (!to) {
			say(why, len, "%s/%s: no prepared request tagged %s (run 'vmfs-migrate "
			    "prepare' on the destination first)", ls, jstr(r, "name"), vm);
			rc = VMFS_HANDOFF_ENOPREPARE;
			goto out;
		}
		if (dst[0] && strcmp(dst, jstr(to, "host")) != 0) {
			say(why, len, "requests tagged %s wait on %s and on %s", vm, dst,
			    jstr(to, "host"));
			rc = VMFS_HANDOFF_EAMBIGUOUS;
			goto out;
		}
		snprintf(dst, sizeof(dst), "%s", jstr(to, "host"));
		if (n == VMFS_HANDOFF_DISKS_MAX) {
			say(why, len, "%s has more than %d disks", vm, VMFS_HANDOFF_DISKS_MAX);
			rc = VMFS_HANDOFF_ETOOMANY;
			goto out;
		}
		memset(&d[n], 0, sizeof(d[n]));
		snprintf(d[n].res, sizeof(d[n].res), "%s", jstr(r, "name"));
		d[n].from_lkid = ju64(from, "lkid");
		d[n].from_epoch = ju64(from, "epoch");
		snprintf(d[n].from_host, sizeof(d[n].from_host), "%s", src);
		d[n].to_lkid = ju64(to, "lkid");
		snprintf(d[n].to_host, sizeof(d[n].to_host), "%s", dst);
		n++;
	}
	if (n == 0) {
		say(why, len, "no lock tagged %s is granted%s%s in lockspace %s", vm,
		    src[0] ? " on " : "", src, ls);
		rc = VMFS_HANDOFF_ENOSOURCE;
		goto out;
	}
	*n_out = n;
out:
	json_object_put(table);
	return rc;
}

static void copy_out(const struct vmfs_handoff_disk *d, size_t n,
		     struct vmfs_handoff_disk *disks, size_t cap, size_t *n_out)
{
	for (size_t i = 0; disks && i < n && i < cap; i++)
		disks[i] = d[i];
	if (n_out)
		*n_out = n;
}

/* The common start of the lookups: "ok" in why, no disks out yet, and the
 * arguments checked (-EINVAL, said in why). */
static int lookup_start(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
			size_t *n_out, char *why, size_t why_len)
{
	say(why, why_len, "ok");
	if (n_out)
		*n_out = 0;
	if (!h || !vm || !*vm || strlen(vm) > VMFS_DLM_TAG_MAX ||
	    (ls && (!*ls || strlen(ls) > VMFS_DLM_NAME_MAX)) ||
	    (from_host && (!*from_host || strlen(from_host) > VMFS_DLM_NAME_MAX))) {
		say(why, why_len, "bad arguments");
		return -EINVAL;
	}
	return 0;
}

int vmfs_handoff_lookup(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
			struct vmfs_handoff_disk *disks, size_t cap, size_t *n_out,
			char *why, size_t why_len)
{
	struct vmfs_handoff_disk d[VMFS_HANDOFF_DISKS_MAX];
	size_t n = 0;
	int rc;

	rc = lookup_start(h, vm, ls, from_host, n_out, why, why_len);
	if (rc < 0)
		return rc;
	rc = lookup(h, vm, ls ? ls : VMFS_HANDOFF_DEFAULT_LS, from_host, d, &n, why, why_len);
	if (rc == 0)
		copy_out(d, n, disks, cap, n_out);
	return rc;
}

/* After the move: the targets' epochs as the table shows them now. */
static void read_epochs(vmfs_dlm_t *h, const char *ls, struct vmfs_handoff_disk *d, size_t n)
{
	json_object *table = NULL, *resources;

	if (query_locks(h, ls, &table, NULL, 0) < 0)
		return;
	resources = ls_resources(table, ls);
	for (size_t i = 0; resources && i < json_object_array_length(resources); i++) {
		json_object *locks = jarr(json_object_array_get_idx(resources, i), "locks");

		for (size_t j = 0; locks && j < json_object_array_length(locks); j++) {
			json_object *l = json_object_array_get_idx(locks, j);
			uint64_t lkid = ju64(l, "lkid");

			for (size_t k = 0; k < n; k++)
				if (d[k].to_lkid == lkid && strcmp(jstr(l, "queue"), "granted") == 0)
					d[k].epoch = ju64(l, "epoch");
		}
	}
	json_object_put(table);
}

int vmfs_handoff_commit_disks(vmfs_dlm_t *h, const char *ls, struct vmfs_handoff_disk *disks,
			      size_t n, char *why, size_t why_len)
{
	struct vmfs_dlm_transfer t[VMFS_HANDOFF_DISKS_MAX];
	int rc;

	say(why, why_len, "ok");
	if (!h || !disks || n == 0 || (ls && (!*ls || strlen(ls) > VMFS_DLM_NAME_MAX))) {
		say(why, why_len, "bad arguments");
		return -EINVAL;
	}
	if (n > VMFS_HANDOFF_DISKS_MAX) {
		say(why, why_len, "%zu disks: at most %d in one transfer", n, VMFS_HANDOFF_DISKS_MAX);
		return VMFS_HANDOFF_ETOOMANY;
	}
	for (size_t i = 0; i < n; i++) {
		t[i].from = disks[i].from_lkid;
		t[i].from_epoch = disks[i].from_epoch;
		t[i].to = disks[i].to_lkid;
		disks[i].epoch = 0;
	}
	/* H1, H2: one message, conditional on the source's epochs. */
	rc = vmfs_dlm_transfer_set(h, t, n);
	if (rc < 0) {
		switch (rc) {
		case VMFS_DLM_ESTALE:
			say(why, why_len, "a source epoch is not current (the source re-acquired "
			    "or lost a disk lock): %s", vmfs_handoff_strerror(rc));
			break;
		case VMFS_DLM_ENOLOCK:
			say(why, why_len, "a lock went away since the lookup (released, cancelled "
			    "or its host left): %s", vmfs_handoff_strerror(rc));
			break;
		default:
			say(why, why_len, "the lock manager refused the transfer: %s",
			    vmfs_handoff_strerror(rc));
			break;
		}
		return rc;
	}
	read_epochs(h, ls ? ls : VMFS_HANDOFF_DEFAULT_LS, disks, n);
	return 0;
}

int vmfs_handoff_commit(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
			struct vmfs_handoff_disk *disks, size_t cap, size_t *n_out,
			char *why, size_t why_len)
{
	struct vmfs_handoff_disk d[VMFS_HANDOFF_DISKS_MAX];
	size_t n = 0;
	int rc;

	if (n_out)
		*n_out = 0;
	rc = vmfs_handoff_lookup(h, vm, ls, from_host, d, VMFS_HANDOFF_DISKS_MAX, &n, why,
				 why_len);
	if (rc < 0)
		return rc;
	rc = vmfs_handoff_commit_disks(h, ls, d, n, why, why_len);
	if (rc < 0)
		return rc;
	copy_out(d, n, disks, cap, n_out);
	return 0;
}

/* --- disks in several lockspaces (vmfs files) ------------------------------ */

/* Lock-table walk state of lookup_any(). */
struct any_ctx {
	const char *vm, *from_host;
	char dst[VMFS_DLM_NAME_MAX + 1];	/* the destination host, once seen */
	struct vmfs_handoff_ldisk *d;
	size_t n;
	char *why;
	size_t len;
};

/* The destination: the one host with requests tagged vm waiting. */
static int any_pick_dest(json_object *lss, struct any_ctx *x)
{
	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *res = jarr(json_object_array_get_idx(lss, i), "resources");

		for (size_t j = 0; res && j < json_object_array_length(res); j++) {
			json_object *locks = jarr(json_object_array_get_idx(res, j), "locks");

			for (size_t k = 0; locks && k < json_object_array_length(locks); k++) {
				json_object *l = json_object_array_get_idx(locks, k);
				const char *host = jstr(l, "host");

				if (strcmp(jstr(l, "queue"), "waiting") != 0 ||
				    strcmp(jstr(l, "tag"), x->vm) != 0)
					continue;
				if (x->dst[0] && strcmp(x->dst, host) != 0) {
					say(x->why, x->len, "requests tagged %s wait on %s and on %s: "
					    "prepare on one destination only", x->vm, x->dst, host);
					return VMFS_HANDOFF_EAMBIGUOUS;
				}
				snprintf(x->dst, sizeof(x->dst), "%s", host);
			}
		}
	}
	if (!x->dst[0]) {
		say(x->why, x->len, "nothing is prepared for %s: no request tagged %s waits (run "
		    "'vmfs-migrate prepare --vm %s DISK...' on the destination first)", x->vm,
		    x->vm, x->vm);
		return VMFS_HANDOFF_ENOPREPARE;
	}
	return 0;
}

/* One resource: add its disk, skip it, or refuse. */
static int any_resource(const char *ls, json_object *r, struct any_ctx *x)
{
	json_object *locks = jarr(r, "locks"), *to = NULL, *from = NULL, *vm_elsewhere = NULL;
	const char *name = jstr(r, "name");
	int holders = 0;

	for (size_t k = 0; locks && k < json_object_array_length(locks); k++) {
		json_object *l = json_object_array_get_idx(locks, k);
		const char *q = jstr(l, "queue"), *host = jstr(l, "host");
		bool tagged = strcmp(jstr(l, "tag"), x->vm) == 0;

		if (strcmp(q, "waiting") == 0) {
			if (!tagged || strcmp(host, x->dst) != 0)
				continue;
			if (to) {
				say(x->why, x->len, "%s/%s: two requests tagged %s wait for it", ls,
				    name, x->vm);
				return VMFS_HANDOFF_EAMBIGUOUS;
			}
			to = l;
			continue;
		}
		/* granted or converting: a holder */
		if (tagged && strcmp(host, x->dst) != 0)
			vm_elsewhere = l;
		if (strcmp(host, x->dst) == 0 && tagged)
			continue;	/* the destination's own (e.g. a claim granted at once) */
		holders++;
		from = l;
	}
	if (!to) {
		if (!vm_elsewhere)
			return 0;	/* not a disk of this handoff */
		say(x->why, x->len, "%s/%s: held for %s on %s but has no prepared request tagged "
		    "%s (prepare every disk of %s on %s)", ls, name, x->vm,
		    jstr(vm_elsewhere, "host"), x->vm, x->vm, x->dst);
		return VMFS_HANDOFF_ENOPREPARE;
	}
	if (holders == 0) {
		say(x->why, x->len, "%s/%s: a request tagged %s waits on %s but nobody holds the "
		    "disk: nothing to hand over", ls, name, x->vm, x->dst);
		return VMFS_HANDOFF_ENOSOURCE;
	}
	if (holders > 1) {
		say(x->why, x->len, "%s/%s: %d holders (shared or several locks): a VM disk must "
		    "have exactly one exclusive holder to hand over", ls, name, holders);
		return VMFS_HANDOFF_EAMBIGUOUS;
	}
	if (strcmp(jstr(from, "queue"), "granted") != 0 || jbool(from, "recovering") ||
	    strcmp(jstr(from, "mode"), "EX") != 0) {
		say(x->why, x->len, "%s/%s: its holder on %s (%s) is %s, not a settled EX lock",
		    ls, name, jstr(from, "host"), jstr(from, "tag"),
		    jbool(from, "recovering") ? "recovering (its host left)" :
		    strcmp(jstr(from, "queue"), "granted") ? "converting" : jstr(from, "mode"));
		return VMFS_HANDOFF_EAMBIGUOUS;
	}
	if (x->from_host && strcmp(jstr(from, "host"), x->from_host) != 0) {
		say(x->why, x->len, "%s/%s is held by %s, not by %s", ls, name, jstr(from, "host"),
		    x->from_host);
		return VMFS_HANDOFF_ENOSOURCE;
	}
	if (x->n == VMFS_HANDOFF_DISKS_MAX) {
		say(x->why, x->len, "%s has more than %d disks", x->vm, VMFS_HANDOFF_DISKS_MAX);
		return VMFS_HANDOFF_ETOOMANY;
	}
	{
		struct vmfs_handoff_ldisk *d = &x->d[x->n++];

		memset(d, 0, sizeof(*d));
		snprintf(d->ls, sizeof(d->ls), "%s", ls);
		snprintf(d->d.res, sizeof(d->d.res), "%s", name);
		d->d.from_lkid = ju64(from, "lkid");
		d->d.from_epoch = ju64(from, "epoch");
		snprintf(d->d.from_host, sizeof(d->d.from_host), "%s", jstr(from, "host"));
		d->d.to_lkid = ju64(to, "lkid");
		snprintf(d->d.to_host, sizeof(d->d.to_host), "%s", x->dst);
	}
	return 0;
}

int vmfs_handoff_lookup_any(vmfs_dlm_t *h, const char *vm, const char *ls,
			    const char *from_host, struct vmfs_handoff_ldisk *disks, size_t cap,
			    size_t *n_out, char *why, size_t why_len)
{
	struct vmfs_handoff_ldisk d[VMFS_HANDOFF_DISKS_MAX];
	struct any_ctx x = { .vm = vm, .from_host = from_host, .d = d, .why = why,
			     .len = why_len };
	json_object *table = NULL, *lss;
	int rc;

	rc = lookup_start(h, vm, ls, from_host, n_out, why, why_len);
	if (rc < 0)
		return rc;
	rc = query_locks(h, ls, &table, why, why_len);
	if (rc < 0)
		return rc;
	lss = jarr(table, "lockspaces");
	rc = any_pick_dest(lss, &x);
	for (size_t i = 0; rc == 0 && lss && i < json_object_array_length(lss); i++) {
		json_object *l = json_object_array_get_idx(lss, i), *res = jarr(l, "resources");
		const char *name = jstr(l, "name");

		if (ls && strcmp(name, ls) != 0)
			continue;
		for (size_t j = 0; rc == 0 && res && j < json_object_array_length(res); j++)
			rc = any_resource(name, json_object_array_get_idx(res, j), &x);
	}
	json_object_put(table);
	if (rc < 0)
		return rc;
	if (x.n == 0) {
		say(why, why_len, "nothing to hand over for %s", vm);
		return VMFS_HANDOFF_ENOPREPARE;
	}
	for (size_t i = 0; disks && i < x.n && i < cap; i++)
		disks[i] = d[i];
	if (n_out)
		*n_out = x.n;
	return 0;
}

int vmfs_handoff_commit_ldisks(vmfs_dlm_t *h, struct vmfs_handoff_ldisk *disks, size_t n,
			       char *why, size_t why_len)
{
	struct vmfs_dlm_transfer t[VMFS_HANDOFF_DISKS_MAX];
	int rc;

	say(why, why_len, "ok");
	if (!h || !disks || n == 0) {
		say(why, why_len, "bad arguments");
		return -EINVAL;
	}
	if (n > VMFS_HANDOFF_DISKS_MAX) {
		say(why, why_len, "%zu disks: at most %d in one transfer", n, VMFS_HANDOFF_DISKS_MAX);
		return VMFS_HANDOFF_ETOOMANY;
	}
	for (size_t i = 0; i < n; i++) {
		t[i].from = disks[i].d.from_lkid;
		t[i].from_epoch = disks[i].d.from_epoch;
		t[i].to = disks[i].d.to_lkid;
		disks[i].d.epoch = 0;
	}
	/* H1, H2: one message for every lockspace, conditional on the epochs. */
	rc = vmfs_dlm_transfer_set(h, t, n);
	if (rc < 0) {
		if (rc == VMFS_DLM_ESTALE)
			say(why, why_len, "a source epoch is not current (the source re-acquired "
			    "or lost a disk lock): %s", vmfs_handoff_strerror(rc));
		else if (rc == VMFS_DLM_ENOLOCK)
			say(why, why_len, "a lock went away since the lookup (released, cancelled "
			    "or its host left): %s", vmfs_handoff_strerror(rc));
		else
			say(why, why_len, "the lock manager refused the transfer: %s",
			    vmfs_handoff_strerror(rc));
		return rc;
	}
	/* the new epochs, per disk: read_epochs() finds a lock by its lkid */
	for (size_t i = 0; i < n; i++)
		read_epochs(h, disks[i].ls, &disks[i].d, 1);
	return 0;
}

/* --- giving the disks back (return claims) --------------------------------
 *
 * The claims are the source mount's (fs/openlock.h): armed and dropped
 * through its xattr, so they live and die with the file's open lock there.
 * Only the give-back itself is a lock-manager call of ours: ONE
 * TRANSFER_SET from the destination's locks to those claims (H1 for the
 * way back). */

/* Is path a file on a clustered vmfs mount?  (Its identity xattr exists
 * only there; a trusted.* xattr set elsewhere would be stored, not acted
 * on.) */
static int on_vmfs(const char *path, char *why, size_t len)
{
	char id[2 * VMFS_DLM_NAME_MAX + 2];

	if (getxattr(path, VMFSDISK_ID_XATTR, id, sizeof(id)) >= 0)
		return 0;
	if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP) {
		say(why, len, "%s is not a file on a vmfs mount: no return claim", path);
		return -ENOTSUP;
	}
	say(why, len, "%s: %s", path, strerror(errno));
	return -errno;
}

int vmfs_handoff_return_arm(const char *vm, const char *const *paths, size_t n,
			    char *why, size_t why_len)
{
	int rc = 0;
	size_t i;

	say(why, why_len, "ok");
	if (!vm || !*vm || strlen(vm) > VMFS_HANDOFF_RETURN_VM_MAX || !paths || !n ||
	    n > VMFS_HANDOFF_DISKS_MAX) {
		say(why, why_len, "bad arguments (a VM name of 1 to %d bytes, 1 to %d disks)",
		    VMFS_HANDOFF_RETURN_VM_MAX, VMFS_HANDOFF_DISKS_MAX);
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		rc = on_vmfs(paths[i], why, why_len);
		if (rc < 0)
			break;
		if (setxattr(paths[i], VMFS_HANDOFF_XATTR_RETURN, vm, strlen(vm), 0) == 0)
			continue;
		rc = -errno;
		switch (errno) {
		case ENOENT:
			say(why, why_len, "%s: not open for write on this host (the mount has no "
			    "lock to queue a return claim behind)", paths[i]);
			break;
		case EBUSY:
			say(why, why_len, "%s: a return claim for another VM is armed", paths[i]);
			break;
		case EINVAL:
			say(why, why_len, "%s: not held exclusive here, or a bad VM name", paths[i]);
			break;
		case EOPNOTSUPP:
			say(why, why_len, "%s: the vmfs mount has no lock manager (-o cluster)",
			    paths[i]);
			rc = -ENOTSUP;
			break;
		default:
			say(why, why_len, "%s: setxattr %s: %s", paths[i], VMFS_HANDOFF_XATTR_RETURN,
			    strerror(errno));
			break;
		}
		break;
	}
	if (rc < 0)
		(void)vmfs_handoff_return_drop(paths, i);
	return rc;
}

int vmfs_handoff_return_drop(const char *const *paths, size_t n)
{
	int rc = 0;

	for (size_t i = 0; paths && i < n; i++)
		if (removexattr(paths[i], VMFS_HANDOFF_XATTR_RETURN) < 0 && errno != ENOENT &&
		    errno != ENODATA && !rc)
			rc = -errno;
	return rc;
}

int vmfs_handoff_return_state(const char *path, char *buf, size_t len)
{
	ssize_t n;

	if (!path || !buf || len < 2)
		return -EINVAL;
	n = getxattr(path, VMFS_HANDOFF_XATTR_RETURN, buf, len - 1);
	if (n < 0)
		return errno == ENOENT ? -ENODATA : -errno;
	buf[n] = '\0';
	return 0;
}

int vmfs_handoff_return_wait(const char *path, int ms, char *buf, size_t len)
{
	if (!buf || len < 2)
		return -EINVAL;
	buf[0] = '\0';
	for (int waited = 0;; waited += 5) {
		if (vmfs_handoff_return_state(path, buf, len) == 0 &&
		    strncmp(buf, "returned ", 9) == 0)
			return 0;
		if (waited >= ms)
			break;
		usleep(5000);
	}
	return -ETIMEDOUT;
}

/* One disk of a give-back, as found in the table. */
struct gb_disk {
	struct vmfs_handoff_ldisk x;	/* from = the holder, to = our claim */
	bool back;			/* our claim is granted already */
};

/* The return claims of tag on host me and their holders.  0 or an error
 * (why says which disk). */
static int gb_lookup(json_object *table, const char *tag, const char *me, struct gb_disk *g,
		     size_t *n_out, char *why, size_t len)
{
	json_object *lss = jarr(table, "lockspaces");
	size_t n = 0;

	for (size_t i = 0; lss && i < json_object_array_length(lss); i++) {
		json_object *lsp = json_object_array_get_idx(lss, i), *res = jarr(lsp, "resources");
		const char *ls = jstr(lsp, "name");

		for (size_t j = 0; res && j < json_object_array_length(res); j++) {
			json_object *r = json_object_array_get_idx(res, j), *locks = jarr(r, "locks");
			json_object *claim = NULL, *holder = NULL;
			int holders = 0;
			bool back = false;

			for (size_t k = 0; locks && k < json_object_array_length(locks); k++) {
				json_object *l = json_object_array_get_idx(locks, k);
				bool mine = strcmp(jstr(l, "host"), me) == 0 &&
					    strcmp(jstr(l, "tag"), tag) == 0;

				if (strcmp(jstr(l, "queue"), "waiting") == 0) {
					if (mine)
						claim = l;
					continue;
				}
				if (mine) {
					back = true;	/* granted: the lock is ours again */
					claim = l;
					continue;
				}
				if (strcmp(jstr(l, "host"), me) == 0) {
					/* this host's own lock (the mount's, for the
					 * VM's opens): nothing was handed over */
					back = true;
					continue;
				}
				holders++;
				holder = l;
			}
			if (!claim)
				continue;
			if (n == VMFS_HANDOFF_DISKS_MAX) {
				say(why, len, "more than %d return claims tagged %s",
				    VMFS_HANDOFF_DISKS_MAX, tag);
				return VMFS_HANDOFF_ETOOMANY;
			}
			memset(&g[n], 0, sizeof(g[n]));
			snprintf(g[n].x.ls, sizeof(g[n].x.ls), "%s", ls);
			snprintf(g[n].x.d.res, sizeof(g[n].x.d.res), "%s", jstr(r, "name"));
			g[n].x.d.to_lkid = ju64(claim, "lkid");
			snprintf(g[n].x.d.to_host, sizeof(g[n].x.d.to_host), "%s", me);
			g[n].back = back;
			if (!back) {
				if (holders != 1) {
					say(why, len, "%s/%s: %d holders in front of the return claim "
					    "(expected the destination's lock alone)", ls,
					    jstr(r, "name"), holders);
					return VMFS_HANDOFF_EAMBIGUOUS;
				}
				if (jbool(holder, "recovering") ||
				    strcmp(jstr(holder, "queue"), "granted") != 0 ||
				    strcmp(jstr(holder, "mode"), "EX") != 0) {
					say(why, len, "%s/%s: its holder on %s is %s: the return claim "
					    "is granted when that settles", ls, jstr(r, "name"),
					    jstr(holder, "host"), jbool(holder, "recovering") ?
					    "recovering (its host left)" : "not a settled EX lock");
					return VMFS_HANDOFF_EAMBIGUOUS;
				}
				g[n].x.d.from_lkid = ju64(holder, "lkid");
				g[n].x.d.from_epoch = ju64(holder, "epoch");
				snprintf(g[n].x.d.from_host, sizeof(g[n].x.d.from_host), "%s",
					 jstr(holder, "host"));
			}
			n++;
		}
	}
	*n_out = n;
	return 0;
}

/* Check the claims found against what the handoff moved. */
static int gb_match(const struct gb_disk *g, size_t n, const struct vmfs_handoff_ldisk *moved,
		    size_t n_moved, char *why, size_t len)
{
	for (size_t i = 0; i < n_moved; i++) {
		const struct vmfs_handoff_ldisk *m = &moved[i];
		size_t k;

		for (k = 0; k < n; k++)
			if (!strcmp(g[k].x.ls, m->ls) && !strcmp(g[k].x.d.res, m->d.res))
				break;
		if (k == n) {
			say(why, len, "%s/%s: moved to %s by the handoff but has no return claim here",
			    m->ls, m->d.res, m->d.to_host);
			return VMFS_HANDOFF_ENOPREPARE;
		}
		if (!g[k].back && g[k].x.d.from_lkid != m->d.to_lkid) {
			say(why, len, "%s/%s: held by lkid %" PRIu64 " on %s, not by the lock the "
			    "handoff created (lkid %" PRIu64 " on %s)", m->ls, m->d.res,
			    g[k].x.d.from_lkid, g[k].x.d.from_host, m->d.to_lkid, m->d.to_host);
			return VMFS_HANDOFF_ENOSOURCE;
		}
	}
	return 0;
}

int vmfs_handoff_giveback(vmfs_dlm_t *h, const char *vm, const char *me,
			  const struct vmfs_handoff_ldisk *moved, size_t n_moved,
			  struct vmfs_handoff_ldisk *out, size_t cap, size_t *n_out,
			  char *why, size_t why_len)
{
	struct gb_disk g[VMFS_HANDOFF_DISKS_MAX];
	struct vmfs_dlm_transfer t[VMFS_HANDOFF_DISKS_MAX];
	char tag[VMFS_DLM_TAG_MAX + 1];
	size_t n = 0, nt = 0;
	int rc = 0;

	say(why, why_len, "ok");
	if (n_out)
		*n_out = 0;
	if (!h || !vm || !*vm || strlen(vm) > VMFS_HANDOFF_RETURN_VM_MAX || !me || !*me ||
	    (n_moved && !moved) || n_moved > VMFS_HANDOFF_DISKS_MAX) {
		say(why, why_len, "bad arguments");
		return -EINVAL;
	}
	snprintf(tag, sizeof(tag), "%s%s", VMFS_HANDOFF_RETURN_TAG, vm);
	for (int attempt = 0; attempt < 3; attempt++) {
		json_object *table = NULL;

		rc = query_locks(h, NULL, &table, why, why_len);
		if (rc < 0)
			return rc;
		rc = gb_lookup(table, tag, me, g, &n, why, why_len);
		json_object_put(table);
		if (rc == 0)
			rc = gb_match(g, n, moved, n_moved, why, why_len);
		if (rc < 0)
			return rc;
		if (n == 0) {
			say(why, why_len, "no return claim tagged %s on %s", tag, me);
			return VMFS_HANDOFF_ENOPREPARE;
		}
		nt = 0;
		for (size_t i = 0; i < n; i++) {
			if (g[i].back)
				continue;
			t[nt].from = g[i].x.d.from_lkid;
			t[nt].from_epoch = g[i].x.d.from_epoch;
			t[nt].to = g[i].x.d.to_lkid;
			nt++;
		}
		if (nt == 0)
			break;
		/* H1, H2 on the way back: one message, conditional on the
		 * destination's epochs as read just now. */
		rc = vmfs_dlm_transfer_set(h, t, nt);
		if (rc != VMFS_DLM_ESTALE && rc != VMFS_DLM_ENOLOCK)
			break;
	}
	if (rc < 0) {
		say(why, why_len, "the lock manager refused the give-back: %s",
		    vmfs_handoff_strerror(rc));
		return rc;
	}
	for (size_t i = 0, k = 0; i < n; i++) {
		if (g[i].back)
			continue;
		if (out && k < cap)
			out[k] = g[i].x;
		k++;
	}
	if (n_out)
		*n_out = nt;
	say(why, why_len, "%zu disk lock%s moved back, %zu back already", nt, nt == 1 ? "" : "s",
	    n - nt);
	return 0;
}
