/* log.h — the one logging entry point of every vmfs program.
 *
 * Messages go through libqb's qb_log: to stderr (or syslog when a daemon is
 * not in the foreground) and always into an in-memory blackbox that
 * `vmfsctl log` dumps from the daemon.  Object-prefixed macros keep the
 * subject of each line in front: "ls vm1: ...", "res foo: ...".
 */
#ifndef VMFS_LIB_LOG_H
#define VMFS_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>
#include <qb/qblog.h>

struct vmfs_log_opts {
	const char *ident;	/* program name in every line */
	bool to_stderr;
	bool to_syslog;
	const char *file;	/* also append to this file, or NULL */
	int priority;		/* LOG_DEBUG .. LOG_ERR: least severe printed */
	size_t blackbox_size;	/* bytes of in-memory ring, 0 = none */
};

void vmfs_log_init(const struct vmfs_log_opts *opts);
void vmfs_log_fini(void);
/* Copy the blackbox (most recent lines, oldest first) as text into a
 * malloc'ed buffer.  Returns 0 or -errno. */
int vmfs_log_blackbox_text(char **out, size_t *len);

#define log_err(fmt, ...)   qb_log(LOG_ERR, fmt, ##__VA_ARGS__)
#define log_warn(fmt, ...)  qb_log(LOG_WARNING, fmt, ##__VA_ARGS__)
#define log_info(fmt, ...)  qb_log(LOG_INFO, fmt, ##__VA_ARGS__)
#define log_debug(fmt, ...) qb_log(LOG_DEBUG, fmt, ##__VA_ARGS__)

/* Object-prefixed forms. */
#define log_ls(pri, ls, fmt, ...) qb_log(pri, "ls %s: " fmt, (ls), ##__VA_ARGS__)
#define log_node(pri, id, fmt, ...) qb_log(pri, "node %u: " fmt, (unsigned)(id), ##__VA_ARGS__)
#define log_vm(pri, vm, fmt, ...) qb_log(pri, "vm %s: " fmt, (vm), ##__VA_ARGS__)

#endif
