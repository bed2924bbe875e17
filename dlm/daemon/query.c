/* query.c — answers to QUERY: "status", "locks" (JSON) and "log" (text).
 *
 * The JSON schemas are a stable interface for tools (vmfsctl --json, tests):
 * they are documented in vmfs-dlmd(8).  Rule: fields are only ever added,
 * never renamed, removed or changed in type; "version" changes if that rule
 * ever has to be broken.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "daemon.h"
#include "log.h"

#define QUERY_SCHEMA_VERSION 1

static json_object *jstr(const char *s)
{
	return json_object_new_string(s ? s : "");
}

static json_object *jmode(int mode)
{
	if (mode < VMFS_DLM_NL || mode > VMFS_DLM_EX)
		return NULL;	/* JSON null */
	return json_object_new_string(vmfs_dlm_mode_name(mode));
}

static const char *node_state_name(enum rsm_node_state s)
{
	switch (s) {
	case RSM_NODE_MEMBER: return "member";
	case RSM_NODE_LEFT: return "left";
	case RSM_NODE_FENCED: return "fenced";
	}
	return "unknown";
}

static const char *queue_name(enum rsm_lock_queue q)
{
	switch (q) {
	case RSM_Q_GRANTED: return "granted";
	case RSM_Q_CONVERTING: return "converting";
	case RSM_Q_WAITING: return "waiting";
	}
	return "unknown";
}

/* ISO 8601 UTC with milliseconds: "2026-11-26T05:00:00.123Z". */
static json_object *jtime(uint64_t ms)
{
	char buf[96];	/* room for any int year, to keep -Wformat-truncation quiet */
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!ms || !gmtime_r(&t, &tm))
		return NULL;
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ms % 1000));
	return json_object_new_string(buf);
}

/* ---------------------------------------------------------------- status */

struct nodes_ctx {
	json_object *members;
	json_object *nodes;
};

static void status_node(void *arg, const struct rsm_node_view *v)
{
	struct nodes_ctx *x = arg;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "nodeid", json_object_new_int64(v->nodeid));
	json_object_object_add(o, "name", jstr(v->name));
	json_object_object_add(o, "state", jstr(node_state_name(v->state)));
	json_object_object_add(o, "synced", json_object_new_boolean(v->synced));
	if (v->state == RSM_NODE_MEMBER)
		json_object_array_add(x->members, json_object_get(o));
	json_object_array_add(x->nodes, o);
}

static void status_recovery(void *arg, const char *ls, uint32_t nodeid, uint32_t agent)
{
	json_object *arr = arg;
	json_object *o = json_object_new_object();

	json_object_object_add(o, "lockspace", jstr(ls));
	json_object_object_add(o, "nodeid", json_object_new_int64(nodeid));
	json_object_object_add(o, "agent_node", json_object_new_int64(agent));
	json_object_array_add(arr, o);
}

static json_object *build_status(struct dlmd *d)
{
	json_object *o = json_object_new_object();
	struct nodes_ctx x = { json_object_new_array(), json_object_new_array() };
	json_object *rec = json_object_new_array();
	bool rq = d->rsm && rsm_quorate(d->rsm);

	json_object_object_add(o, "version", json_object_new_int(QUERY_SCHEMA_VERSION));
	json_object_object_add(o, "nodeid", json_object_new_int64(d->nodeid));
	json_object_object_add(o, "name", jstr(d->cfg.name));
	json_object_object_add(o, "quorate", json_object_new_boolean(rq && d->vq_quorate));
	json_object_object_add(o, "synced",
			       json_object_new_boolean(d->rsm && rsm_synced(d->rsm)));
	json_object_object_add(o, "expected_votes", json_object_new_int64(d->expected_votes));
	json_object_object_add(o, "seq", json_object_new_uint64(d->rsm ? rsm_seq(d->rsm) : 0));
	json_object_object_add(o, "lease_ms", json_object_new_uint64(d->lease_ms));
	json_object_object_add(o, "fence_delay_ms", json_object_new_uint64(d->fence_delay_ms));
	if (d->rsm) {
		rsm_foreach_node(d->rsm, status_node, &x);
		rsm_foreach_recovery(d->rsm, status_recovery, rec);
	}
	json_object_object_add(o, "members", x.members);
	json_object_object_add(o, "nodes", x.nodes);
	json_object_object_add(o, "recovery", rec);
	json_object_object_add(o, "clients", json_object_new_int64(d->n_clients));
	/* additions after the first schema: diagnostics */
	json_object_object_add(o, "lease", json_object_new_boolean(d->lease));
	json_object_object_add(o, "connected", json_object_new_boolean(d->rsm != NULL));
	json_object_object_add(o, "cpg_joined", json_object_new_boolean(d->cpg_joined));
	json_object_object_add(o, "votequorum_quorate", json_object_new_boolean(d->vq_quorate));
	json_object_object_add(o, "rsm_quorate", json_object_new_boolean(rq));
	json_object_object_add(o, "token_ms", json_object_new_int64(d->token_ms));
	json_object_object_add(o, "messages_delivered", json_object_new_uint64(d->n_delivered));
	json_object_object_add(o, "messages_dropped", json_object_new_uint64(d->n_dropped));
	json_object_object_add(o, "send_queue", json_object_new_int64(d->n_sendq));
	json_object_object_add(o, "send_retries", json_object_new_uint64(d->n_try_again));
	json_object_object_add(o, "warm", json_object_new_boolean(d->warm_on));
	json_object_object_add(o, "warm_requests", json_object_new_uint64(d->n_warm_requests));
	json_object_object_add(o, "warm_noops_sent", json_object_new_uint64(d->n_warm_noops));
	json_object_object_add(o, "noops_delivered", json_object_new_uint64(d->n_noops_seen));
	json_object_object_add(o, "warm_ended_by_request",
			       json_object_new_uint64(d->n_warm_by_request));
	json_object_object_add(o, "warm_ended_by_disconnect",
			       json_object_new_uint64(d->n_warm_by_gone));
	return o;
}

/* ---------------------------------------------------------------- locks */

struct locks_ctx {
	json_object *lockspaces;
	json_object *cur_ls;		/* the "resources" array of the last lockspace */
	char cur_name[VMFS_DLM_NAME_MAX + 1];
};

static json_object *build_lock(const struct rsm_lock_view *v)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "lkid", json_object_new_uint64(v->lkid));
	json_object_object_add(o, "queue", jstr(queue_name(v->queue)));
	json_object_object_add(o, "mode", jmode(v->mode));
	json_object_object_add(o, "rqmode", jmode(v->rqmode));
	json_object_object_add(o, "epoch", json_object_new_uint64(v->epoch));
	json_object_object_add(o, "nodeid", json_object_new_int64(v->nodeid));
	json_object_object_add(o, "host", jstr(v->node_name));
	json_object_object_add(o, "pid", json_object_new_int64(v->pid));
	json_object_object_add(o, "program", jstr(v->program));
	json_object_object_add(o, "tag", jstr(v->tag));
	json_object_object_add(o, "since", jtime(v->since_ms));
	json_object_object_add(o, "since_ms", json_object_new_uint64(v->since_ms));
	json_object_object_add(o, "persistent",
			       json_object_new_boolean(!!(v->flags & VMFS_DLM_PERSISTENT)));
	json_object_object_add(o, "orphan", json_object_new_boolean(v->orphan));
	json_object_object_add(o, "recovering", json_object_new_boolean(v->recovering));
	return o;
}

static void locks_resource(void *arg, const struct rsm_resource_view *r)
{
	struct locks_ctx *x = arg;
	json_object *o, *locks;
	char hex[2 * VMFS_DLM_LVB_LEN + 1];

	/* resources come sorted by lockspace: open a new one when it changes */
	if (!x->cur_ls || strcmp(x->cur_name, r->ls) != 0) {
		json_object *ls = json_object_new_object();

		x->cur_ls = json_object_new_array();
		snprintf(x->cur_name, sizeof(x->cur_name), "%s", r->ls);
		json_object_object_add(ls, "name", jstr(r->ls));
		json_object_object_add(ls, "resources", x->cur_ls);
		json_object_array_add(x->lockspaces, ls);
	}
	o = json_object_new_object();
	json_object_object_add(o, "name", jstr(r->name));
	json_object_object_add(o, "epoch", json_object_new_uint64(r->epoch));
	json_object_object_add(o, "lvb_valid", json_object_new_boolean(r->lvb_valid));
	for (size_t i = 0; i < VMFS_DLM_LVB_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", r->lvb[i]);
	json_object_object_add(o, "lvb", jstr(hex));
	locks = json_object_new_array();
	for (size_t i = 0; i < r->n_locks; i++)
		json_object_array_add(locks, build_lock(&r->locks[i]));
	json_object_object_add(o, "locks", locks);
	json_object_array_add(x->cur_ls, o);
}

static json_object *build_locks(struct dlmd *d, const char *ls)
{
	json_object *o = json_object_new_object();
	struct locks_ctx x = { .lockspaces = json_object_new_array() };

	json_object_object_add(o, "version", json_object_new_int(QUERY_SCHEMA_VERSION));
	if (d->rsm)
		rsm_foreach_resource(d->rsm, ls, locks_resource, &x);
	json_object_object_add(o, "lockspaces", x.lockspaces);
	return o;
}

/* ---------------------------------------------------------------- entry */

int dlmd_query(struct dlmd *d, const char *what, const char *arg, char **out, size_t *len)
{
	json_object *o = NULL;
	const char *s;
	size_t n = 0;
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (strcmp(what, "log") == 0)
		return vmfs_log_blackbox_text(out, len);
	if (strcmp(what, "status") == 0) {
		o = build_status(d);
	} else if (strcmp(what, "locks") == 0) {
		o = build_locks(d, arg);
	} else {
		rc = -EINVAL;
		goto out;
	}
	if (!o) {
		rc = -ENOMEM;
		goto out;
	}
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	*out = malloc(n + 1);
	if (!*out) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(*out, s, n + 1);
	*len = n;
out:
	if (o)
		json_object_put(o);
	return rc;
}
