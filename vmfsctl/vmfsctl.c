/* vmfsctl.c — command dispatch and helpers shared by the subcommands. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmfsctl.h"

struct vmfsctl_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *synopsis;
	const char *summary;
};

#define VMFSCTL_ENTRY(name, synopsis, summary) { #name, cmd_##name, synopsis, summary },
static const struct vmfsctl_cmd commands[] = {
	VMFSCTL_COMMANDS(VMFSCTL_ENTRY)
};
#undef VMFSCTL_ENTRY

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: vmfsctl [--help | --version] COMMAND [ARGS...]\n\ncommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'vmfsctl COMMAND --help' shows a command's options; see vmfsctl(8).\n");
}

int vmfsctl_usage(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0) {
			fprintf(stderr, "usage: vmfsctl %s %s\n", name, commands[i].synopsis);
			break;
		}
	}
	return VMFSCTL_EXIT_USAGE;
}

int vmfsctl_one_arg_json(int argc, char **argv, const char *name,
			 const char **arg, bool *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*json = false;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			*json = true;
			break;
		case 'h':
			for (size_t i = 0; i < N_COMMANDS; i++)
				if (strcmp(commands[i].name, name) == 0)
					printf("usage: vmfsctl %s %s\n", name, commands[i].synopsis);
			return VMFSCTL_EXIT_OK;
		default:
			return vmfsctl_usage(name);
		}
	}
	if (optind + 1 != argc)
		return vmfsctl_usage(name);
	*arg = argv[optind];
	return -1;
}

void vmfsctl_err(const char *fmt, ...)
{
	va_list ap;

	fputs("vmfsctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

const char *vmfsctl_strerror(int err)
{
	return vmfs_dlm_strerror(err);
}

static const char *ipc_name(void)
{
	const char *name = getenv("VMFS_DLM_IPC_NAME");

	return name && *name ? name : "vmfs-dlm";
}

int vmfsctl_connect(const char *program, vmfs_dlm_t **h)
{
	int ret = vmfs_dlm_open(program, h);
	const char *hint;

	if (ret == 0)
		return 0;
	switch (ret) {
	case -EACCES:
	case -EPERM:
		hint = "only root (or the group given to vmfs-dlmd --group) may connect";
		break;
	case -EPROTO:
	case -EPROTONOSUPPORT:
	case VMFS_DLM_EPROTO:
		hint = "vmfsctl and vmfs-dlmd are from different builds; install matching versions";
		break;
	default:
		hint = "is vmfs-dlmd running on this host?";
		break;
	}
	vmfsctl_err("cannot connect to vmfs-dlmd (ipc '%s'): %s \u2014 %s", ipc_name(),
		    vmfsctl_strerror(ret), hint);
	return VMFSCTL_EXIT_FAIL;
}

int vmfsctl_query_json(vmfs_dlm_t *h, const char *what, const char *arg,
		       struct json_object **out)
{
	struct json_tokener *tok;
	char *text = NULL;
	int ret;

	*out = NULL;
	ret = vmfs_dlm_query(h, what, arg, &text);
	if (ret < 0) {
		vmfsctl_err("query '%s' to vmfs-dlmd failed: %s", what, vmfsctl_strerror(ret));
		return VMFSCTL_EXIT_FAIL;
	}
	tok = json_tokener_new();
	if (!tok) {
		free(text);
		vmfsctl_err("out of memory");
		return VMFSCTL_EXIT_FAIL;
	}
	*out = json_tokener_parse_ex(tok, text, (int)strlen(text));
	if (!*out || json_tokener_get_error(tok) != json_tokener_success) {
		vmfsctl_err("vmfs-dlmd answered query '%s' with invalid JSON: %s", what,
			    json_tokener_error_desc(json_tokener_get_error(tok)));
		json_object_put(*out);
		*out = NULL;
		ret = VMFSCTL_EXIT_FAIL;
	}
	json_tokener_free(tok);
	free(text);
	return ret < 0 ? VMFSCTL_EXIT_FAIL : ret;
}

void vmfsctl_print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
					    JSON_C_TO_STRING_SPACED |
					    JSON_C_TO_STRING_NOSLASHESCAPE));
}

const char *vj_str(struct json_object *o, const char *key, const char *def)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return def;
}

int64_t vj_int(struct json_object *o, const char *key, int64_t def)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
		return json_object_get_int64(v);
	return def;
}

bool vj_bool(struct json_object *o, const char *key, bool def)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) &&
	    (json_object_is_type(v, json_type_boolean) || json_object_is_type(v, json_type_int)))
		return json_object_get_boolean(v);
	return def;
}

struct json_object *vj_array(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	return NULL;
}

void vmfsctl_fmt_time(uint64_t wall_ms, char *buf, size_t len)
{
	time_t t = (time_t)(wall_ms / 1000), now = time(NULL);
	struct tm tm, tm_now;

	if (!wall_ms || !localtime_r(&t, &tm) || !localtime_r(&now, &tm_now)) {
		snprintf(buf, len, "?");
		return;
	}
	if (tm.tm_year == tm_now.tm_year && tm.tm_yday == tm_now.tm_yday)
		strftime(buf, len, "%H:%M:%S", &tm);
	else
		strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return VMFSCTL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return VMFSCTL_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("vmfsctl %s (vmfs; json output: json-c)\n", PACKAGE_VERSION);
		return VMFSCTL_EXIT_OK;
	}
	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	vmfsctl_err("unknown command '%s'", argv[1]);
	usage(stderr);
	return VMFSCTL_EXIT_USAGE;
}
