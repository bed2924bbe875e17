/* vmfsctl.h — shared declarations of the vmfsctl subcommands.
 *
 * Adding a subcommand: write `int cmd_NAME(int argc, char **argv)` in its
 * own cmd_*.c (listed in Makefile.am) and add one X() line below; the
 * declaration, the dispatch table and the usage text all come from it.
 * argv[0] is the subcommand name; the return value is the exit status.
 */
#ifndef VMFSCTL_H
#define VMFSCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "vmfs/dlm.h"

/*        name      synopsis after the name                     summary */
#define VMFSCTL_COMMANDS(X) \
	X(status,   "[--json]",                                   "this host, membership, quorum, daemon state") \
	X(locks,    "[--json] [--lockspace LS] [PATTERN]",        "the whole cluster's lock table") \
	X(lock,     "[OPTIONS] NAME [--] CMD [ARG...]",           "run CMD while holding a cluster lock") \
	X(transfer, "[--lockspace LS] FROM_LKID FROM_EPOCH TO_LKID [...]", "move granted locks to pending requests (several: all or none)") \
	X(log,      "",                                           "dump the daemon's in-memory log") \
	X(volume,   "MOUNT|DEVICE [--json]",                      "a vmfs volume: label, UUID, size, free space, hosts") \
	X(hosts,    "MOUNT|DEVICE [--json]",                      "a vmfs volume's host slots: live, dead or free, journals") \
	X(fileinfo, "PATH [--json]",                              "a file's inode, sizes, extents and lock holders")

#define VMFSCTL_DECLARE(name, synopsis, summary) int cmd_##name(int argc, char **argv);
VMFSCTL_COMMANDS(VMFSCTL_DECLARE)
#undef VMFSCTL_DECLARE

/* Exit statuses (also in vmfsctl(8)). */
#define VMFSCTL_EXIT_OK 0
#define VMFSCTL_EXIT_FAIL 1		/* the operation failed; message on stderr */
#define VMFSCTL_EXIT_USAGE 2		/* bad command line */
#define VMFSCTL_EXIT_TEMPFAIL 75	/* lock not granted (EX_TEMPFAIL) */

/* "vmfsctl: " + message + newline on stderr. */
void vmfsctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Text for a library/daemon error code (domain codes and -errno). */
const char *vmfsctl_strerror(int err);
/* Print "usage: vmfsctl NAME SYNOPSIS" for one subcommand to stderr and
 * return VMFSCTL_EXIT_USAGE. */
int vmfsctl_usage(const char *name);
/* The command line of a subcommand taking one argument and --json
 * (volume, hosts, fileinfo): on success *arg and *json are set and -1 is
 * returned; otherwise the exit status to return (--help, bad usage). */
int vmfsctl_one_arg_json(int argc, char **argv, const char *name,
			 const char **arg, bool *json);

/* Connect to the local vmfs-dlmd; on failure print why and what to do.
 * Returns 0 or the exit status to use. */
int vmfsctl_connect(const char *program, vmfs_dlm_t **h);
/* Run query `what` and parse the JSON; prints errors.  0 or exit status. */
int vmfsctl_query_json(vmfs_dlm_t *h, const char *what, const char *arg,
		       struct json_object **out);
/* Print a JSON document pretty-printed on stdout. */
void vmfsctl_print_json(struct json_object *o);

/* Lenient accessors: a missing or mistyped member gives the default. */
const char *vj_str(struct json_object *o, const char *key, const char *def);
int64_t vj_int(struct json_object *o, const char *key, int64_t def);
bool vj_bool(struct json_object *o, const char *key, bool def);
struct json_object *vj_array(struct json_object *o, const char *key);

/* Wall-clock ms to "HH:MM:SS" (today) or "YYYY-MM-DD HH:MM:SS". */
void vmfsctl_fmt_time(uint64_t wall_ms, char *buf, size_t len);

#endif
