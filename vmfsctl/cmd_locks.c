/* cmd_locks.c — vmfsctl locks: the whole cluster's lock table. */
#include "config.h"

#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmfsctl.h"

/* One lock row:
 *   granted     EX      host2  pid 1234  qemu  tag=vm1  epoch 7  since 05:12:03  lkid 42  [orphan]
 *   converting  PR->EX  ...
 *   waiting     EX      ...                                   */
static void print_lock(struct json_object *l)
{
	const char *queue = vj_str(l, "queue", "?");
	const char *mode = vj_str(l, "mode", NULL);
	const char *rqmode = vj_str(l, "rqmode", NULL);
	const char *tag = vj_str(l, "tag", "");
	char modes[16], since[32];

	if (strcmp(queue, "converting") == 0)
		snprintf(modes, sizeof(modes), "%s->%s", mode ? mode : "?", rqmode ? rqmode : "?");
	else if (strcmp(queue, "waiting") == 0)
		snprintf(modes, sizeof(modes), "%s", rqmode ? rqmode : (mode ? mode : "?"));
	else
		snprintf(modes, sizeof(modes), "%s", mode ? mode : "?");
	vmfsctl_fmt_time((uint64_t)vj_int(l, "since_ms", 0), since, sizeof(since));

	printf("  %-10s  %-6s  %-12s  pid %-7" PRId64 "  %-12s", queue, modes,
	       vj_str(l, "host", "?"), vj_int(l, "pid", 0), vj_str(l, "program", "?"));
	if (*tag)
		printf("  tag=%s", tag);
	if (vj_int(l, "epoch", 0))
		printf("  epoch %" PRId64, vj_int(l, "epoch", 0));
	printf("  since %s  lkid %" PRId64, since, vj_int(l, "lkid", 0));
	if (vj_bool(l, "persistent", false))
		printf("  [persistent]");
	if (vj_bool(l, "orphan", false))
		printf("  [orphan]");
	if (vj_bool(l, "recovering", false))
		printf("  [recovering]");
	printf("\n");
}

static void print_resource(const char *ls, struct json_object *r)
{
	struct json_object *locks = vj_array(r, "locks");
	size_t i, n = locks ? json_object_array_length(locks) : 0;

	printf("%s/%s  epoch %" PRId64 "  lvb %s\n", ls, vj_str(r, "name", "?"),
	       vj_int(r, "epoch", 0), vj_bool(r, "lvb_valid", true) ? "valid" : "invalid");
	for (i = 0; i < n; i++)
		print_lock(json_object_array_get_idx(locks, i));
}

/* Keep only the resources whose name matches pattern (in place, so
 * --json prints the daemon's own document minus the rest).  Returns the
 * number of resources left. */
static size_t filter(struct json_object *table, const char *pattern)
{
	struct json_object *lss = vj_array(table, "lockspaces");
	size_t i, j, kept = 0;

	for (i = 0; lss && i < json_object_array_length(lss); i++) {
		struct json_object *ls = json_object_array_get_idx(lss, i);
		struct json_object *res = vj_array(ls, "resources"), *keep;

		if (!res)
			continue;
		keep = json_object_new_array();
		for (j = 0; j < json_object_array_length(res); j++) {
			struct json_object *r = json_object_array_get_idx(res, j);

			if (pattern && fnmatch(pattern, vj_str(r, "name", ""), 0) != 0)
				continue;
			json_object_array_add(keep, json_object_get(r));
			kept++;
		}
		json_object_object_add(ls, "resources", keep);
	}
	return kept;
}

int cmd_locks(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "lockspace", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *table = NULL, *lss;
	const char *lockspace = NULL, *pattern = NULL;
	vmfs_dlm_t *h = NULL;
	bool json = false;
	size_t i, j, n;
	int c, ret;

	while ((c = getopt_long(argc, argv, "jl:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'l':
			lockspace = optarg;
			break;
		case 'h':
			printf("usage: vmfsctl locks [--json] [--lockspace LS] [PATTERN]\n");
			return VMFSCTL_EXIT_OK;
		default:
			return vmfsctl_usage("locks");
		}
	}
	if (optind < argc)
		pattern = argv[optind++];
	if (optind != argc)
		return vmfsctl_usage("locks");
	if (lockspace && strlen(lockspace) > VMFS_DLM_NAME_MAX) {
		vmfsctl_err("lockspace name '%s' is longer than %d bytes", lockspace,
			    VMFS_DLM_NAME_MAX);
		return VMFSCTL_EXIT_USAGE;
	}
	ret = vmfsctl_connect("vmfsctl", &h);
	if (ret)
		goto out;
	ret = vmfsctl_query_json(h, "locks", lockspace, &table);
	if (ret)
		goto out;
	n = filter(table, pattern);
	if (json) {
		vmfsctl_print_json(table);
		goto out;
	}
	if (!n) {
		printf("no locks%s%s%s%s\n", lockspace ? " in lockspace " : "",
		       lockspace ? lockspace : "", pattern ? " matching " : "",
		       pattern ? pattern : "");
		goto out;
	}
	lss = vj_array(table, "lockspaces");
	for (i = 0; lss && i < json_object_array_length(lss); i++) {
		struct json_object *ls = json_object_array_get_idx(lss, i);
		struct json_object *res = vj_array(ls, "resources");

		for (j = 0; res && j < json_object_array_length(res); j++)
			print_resource(vj_str(ls, "name", "?"), json_object_array_get_idx(res, j));
	}
out:
	json_object_put(table);
	vmfs_dlm_close(h);
	return ret;
}
