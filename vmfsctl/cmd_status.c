/* cmd_status.c — vmfsctl status: this host, membership, quorum, daemon state. */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmfsctl.h"

static void print_members(struct json_object *members)
{
	size_t i, n = json_object_array_length(members);

	printf("members (%zu):\n", n);
	for (i = 0; i < n; i++) {
		struct json_object *m = json_object_array_get_idx(members, i);

		printf("  %-6" PRId64 " %-16s %-8s %s\n", vj_int(m, "nodeid", 0),
		       vj_str(m, "name", "?"), vj_str(m, "state", "?"),
		       vj_bool(m, "synced", false) ? "synced" : "not synced");
	}
}

/* Nodes the daemon knows that are not current members (left, fenced). */
static void print_departed(struct json_object *nodes)
{
	size_t i, n = json_object_array_length(nodes), shown = 0;

	for (i = 0; i < n; i++) {
		struct json_object *m = json_object_array_get_idx(nodes, i);
		const char *state = vj_str(m, "state", "?");

		if (strcmp(state, "member") == 0)
			continue;
		if (!shown++)
			printf("departed nodes:\n");
		printf("  %-6" PRId64 " %-16s %s\n", vj_int(m, "nodeid", 0),
		       vj_str(m, "name", "?"), state);
	}
}

static void print_recovery(struct json_object *rec)
{
	size_t i, n = json_object_array_length(rec);

	if (!n) {
		printf("recovery:  none pending\n");
		return;
	}
	printf("recovery:\n");
	for (i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(rec, i);

		/* Print whatever the daemon reports: key=value, in its order. */
		printf(" ");
		if (json_object_is_type(r, json_type_object)) {
			json_object_object_foreach(r, key, val) {
				printf(" %s=%s", key, json_object_get_string(val));
			}
		} else {
			printf(" %s", json_object_get_string(r));
		}
		printf("\n");
	}
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *st = NULL, *arr;
	vmfs_dlm_t *h = NULL;
	bool json = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			printf("usage: vmfsctl status [--json]\n");
			return VMFSCTL_EXIT_OK;
		default:
			return vmfsctl_usage("status");
		}
	}
	if (optind != argc)
		return vmfsctl_usage("status");
	ret = vmfsctl_connect("vmfsctl", &h);
	if (ret)
		goto out;
	ret = vmfsctl_query_json(h, "status", NULL, &st);
	if (ret)
		goto out;
	if (json) {
		vmfsctl_print_json(st);
		goto out;
	}
	printf("host:      %s (nodeid %" PRId64 ")\n", vj_str(st, "name", "?"),
	       vj_int(st, "nodeid", 0));
	arr = vj_array(st, "members");
	printf("quorum:    %s (%zu members, expected votes %" PRId64 ")\n",
	       vj_bool(st, "quorate", false) ? "quorate" : "NOT QUORATE: no locks granted",
	       arr ? json_object_array_length(arr) : (size_t)0, vj_int(st, "expected_votes", 0));
	printf("state:     %s, seq %" PRId64 ", %" PRId64 " local client(s)\n",
	       vj_bool(st, "synced", false) ? "synced" : "not synced (waiting for a snapshot)",
	       vj_int(st, "seq", 0), vj_int(st, "clients", 0));
	if (!vj_bool(st, "connected", true))
		printf("corosync:  NOT CONNECTED (the daemon retries; is corosync running?)\n");
	printf("lease:     %s (T_lease %" PRId64 " ms, fence delay %" PRId64 " ms)\n",
	       vj_bool(st, "lease", vj_bool(st, "quorate", false)) ? "valid" :
	       "LOST: this host must not write to shared storage",
	       vj_int(st, "lease_ms", 0), vj_int(st, "fence_delay_ms", 0));
	if (arr)
		print_members(arr);
	arr = vj_array(st, "nodes");
	if (arr)
		print_departed(arr);
	arr = vj_array(st, "recovery");
	if (arr)
		print_recovery(arr);
out:
	json_object_put(st);
	vmfs_dlm_close(h);
	return ret;
}
