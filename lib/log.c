/* log.c — qb_log set-up shared by daemons and tools. */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int blackbox_on;
static int file_target = -1;

void vmfs_log_init(const struct vmfs_log_opts *o)
{
	int pri = o->priority ? o->priority : LOG_INFO;

	qb_log_init(o->ident, LOG_DAEMON, pri);
	qb_log_format_set(QB_LOG_STDERR, "%t %N[%P] %p: %b");
	qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, o->to_syslog ? QB_TRUE : QB_FALSE);
	qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, o->to_stderr ? QB_TRUE : QB_FALSE);
	qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", pri);
	qb_log_filter_ctl(QB_LOG_SYSLOG, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", pri);
	if (o->file) {
		file_target = qb_log_file_open(o->file);
		if (file_target >= 0) {
			qb_log_format_set(file_target, "%t %N[%P] %p: %b");
			/* the file follows the chosen priority: debug lines
			 * cost a write(2) each on the lock path; the
			 * in-memory blackbox below keeps them anyway */
			qb_log_filter_ctl(file_target, QB_LOG_FILTER_ADD,
					  QB_LOG_FILTER_FILE, "*", pri);
			qb_log_ctl(file_target, QB_LOG_CONF_ENABLED, QB_TRUE);
		}
	}
	if (o->blackbox_size) {
		qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_SIZE, (int32_t)o->blackbox_size);
		qb_log_filter_ctl(QB_LOG_BLACKBOX, QB_LOG_FILTER_ADD,
				  QB_LOG_FILTER_FILE, "*", LOG_DEBUG);
		qb_log_format_set(QB_LOG_BLACKBOX, "%t %p: %b");
		qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_ENABLED, QB_TRUE);
		blackbox_on = 1;
	}
}

void vmfs_log_fini(void)
{
	qb_log_fini();
}

/* qb_log_blackbox_write_to_file() writes a binary dump; qb_log_blackbox_print_from_file()
 * prints it to stdout.  We want text in memory, so print the dump through a
 * temporary stdout redirection into an anonymous file. */
int vmfs_log_blackbox_text(char **out, size_t *len)
{
	char path[] = "/tmp/vmfs-blackbox-XXXXXX";
	FILE *txt = NULL;
	int fd, saved = -1, saved_err = -1, devnull = -1, rc = 0;
	long n;

	*out = NULL;
	*len = 0;
	if (!blackbox_on)
		return -ENOENT;
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	if (qb_log_blackbox_write_to_file(path) < 0) {
		rc = -EIO;
		goto out;
	}
	txt = tmpfile();
	if (!txt) {
		rc = -errno;
		goto out;
	}
	/* libqb prints the dump to stdout, and a note about the end of the
	 * ring ("qb_rb_chunk_read failed") to stderr: capture the one, drop
	 * the other, so a daemon's log stays clean on every dump. */
	fflush(stdout);
	fflush(stderr);
	saved = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (saved < 0 || saved_err < 0 || devnull < 0 ||
	    dup2(fileno(txt), STDOUT_FILENO) < 0 || dup2(devnull, STDERR_FILENO) < 0) {
		rc = -errno;
		goto out;
	}
	qb_log_blackbox_print_from_file(path);
	fflush(stdout);
	fflush(stderr);
	dup2(saved, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	n = lseek(fileno(txt), 0, SEEK_END);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	*out = malloc((size_t)n + 1);
	if (!*out) {
		rc = -ENOMEM;
		goto out;
	}
	if (pread(fileno(txt), *out, (size_t)n, 0) != n) {
		free(*out);
		*out = NULL;
		rc = -EIO;
		goto out;
	}
	(*out)[n] = '\0';
	*len = (size_t)n;
out:
	if (saved >= 0) {
		dup2(saved, STDOUT_FILENO);
		close(saved);
	}
	if (saved_err >= 0) {
		dup2(saved_err, STDERR_FILENO);
		close(saved_err);
	}
	if (devnull >= 0)
		close(devnull);
	if (txt)
		fclose(txt);
	unlink(path);
	return rc;
}
