/* mount.c — vmfs-mount: serve a vmfs volume through FUSE.
 *
 * Start-up order matters: without -f the process forks first (threads and
 * the aio context do not survive fork) and the parent waits on a pipe for
 * the child's verdict, so errors such as a damaged superblock reach the
 * user's terminal and the exit status.  The child then opens the volume,
 * claims a host slot (replaying journals), mounts, reports success and
 * serves until unmounted (fusermount3 -u) or signalled, then commits,
 * marks its journal clean and frees its slot.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "cluster.h"
#include "fuse_loop.h"
#include "fuse_ops.h"
#include "log.h"
#include "slot.h"
#include "vol.h"

struct mopts {
	int slot;
	char *host;
	int local;		/* -o local: single host, no lock manager */
	int cluster;		/* -o cluster: refuse to mount without vmfs-dlmd */
	int commit;		/* -o commit=SECONDS: periodic journal commit */
	int foreground;
	int debug;
	int help, version;
	char *device;
	char *mountpoint;
};

#define MOPT(t, p) { t, offsetof(struct mopts, p), 1 }
static const struct fuse_opt mount_opts[] = {
	MOPT("slot=%d", slot),
	MOPT("host=%s", host),
	MOPT("local", local),
	MOPT("cluster", cluster),
	MOPT("commit=%d", commit),
	MOPT("-f", foreground),
	MOPT("-d", debug),
	MOPT("-h", help),
	MOPT("--help", help),
	MOPT("-V", version),
	MOPT("--version", version),
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct mopts *m = data;

	if (key == FUSE_OPT_KEY_NONOPT) {
		if (!m->device) {
			m->device = strdup(arg);
			return 0;
		}
		if (!m->mountpoint) {
			m->mountpoint = strdup(arg);
			return 0;
		}
		fprintf(stderr, "vmfs-mount: unexpected argument '%s'\n", arg);
		return -1;
	}
	return 1;	/* everything else goes to FUSE */
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmfs-mount [-f] [-d] [-o OPTIONS] DEVICE MOUNTPOINT\n"
	       "\n"
	       "Mount the vmfs volume on DEVICE (block device or image file) at MOUNTPOINT.\n"
	       "  -f            stay in the foreground\n"
	       "  -d            FUSE debug output (implies -f)\n"
	       "  -o slot=N     use host slot N (default: the first free one)\n"
	       "  -o host=NAME  host name recorded in the slot (default: hostname)\n"
	       "  -o cluster    require the lock manager (vmfs-dlmd); without it refuse\n"
	       "  -o local      single host: no lock manager; refused while another\n"
	       "                host has the volume mounted\n"
	       "  -o commit=S   commit metadata changes nobody synced every S seconds\n"
	       "                (1-300, default %d)\n"
	       "Default: the lock manager when vmfs-dlmd answers, else single-host.\n"
	       "  -o OPT        other options are passed to FUSE (e.g. ro, allow_other)\n"
	       "Unmount with: fusermount3 -u MOUNTPOINT\n", FSCTX_COMMIT_S);
}

/* The mount's source (fsname) is the device's absolute path, as with other
 * FUSE filesystems over a device: `vmfsctl volume|hosts|fileinfo` find the
 * disk behind a path through /proc/self/mountinfo.  0 or -ENOMEM. */
static int add_fsname(struct fuse_args *args, const char *device)
{
	char *real = realpath(device, NULL), *opts = NULL, *arg = NULL, *opt = NULL;
	int rc = -ENOMEM;

	if (asprintf(&opt, "fsname=%s", real ? real : device) < 0) {
		opt = NULL;
		goto out;
	}
	if (fuse_opt_add_opt_escaped(&opts, opt))	/* a ',' in the path */
		goto out;
	if (asprintf(&arg, "-o%s", opts) < 0) {
		arg = NULL;
		goto out;
	}
	if (fuse_opt_add_arg(args, arg))
		goto out;
	rc = 0;
out:
	free(arg);
	free(opts);
	free(opt);
	free(real);
	return rc;
}

/* Child side of the start-up pipe: tell the parent how it went. */
static void report(int fd, unsigned char status)
{
	if (fd >= 0) {
		ssize_t n = write(fd, &status, 1);

		(void)n;
		close(fd);
	}
}

static int detach(int *report_fd)
{
	int p[2];
	pid_t pid;

	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		unsigned char st = 1;

		close(p[1]);
		if (read(p[0], &st, 1) != 1)
			st = 1;	/* the child died before reporting */
		_exit(st);
	}
	close(p[0]);
	setsid();
	*report_fd = p[1];
	return 0;
}

static void quiet_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

/* Claim a host slot: through the lock manager when it answers (several
 * hosts), else single-host (refused while another slot is live). */
static int claim(struct mopts *m, struct fsctx *c, const char *host, uint64_t *recovered)
{
	int rc;

	if (!m->local) {
		rc = cluster_mount(c, m->slot, host, recovered);
		if (rc != -ENOTCONN)
			return rc;
		if (m->cluster) {
			log_err("vmfs-dlmd is not reachable and -o cluster was given; start "
				"vmfs-dlmd (and corosync) on this host first");
			return rc;
		}
		log_warn("vmfs-dlmd is not reachable: mounting single-host (refused if another "
			 "host has the volume mounted; use -o cluster to require the lock manager)");
	}
	rc = slot_claim(c->v, m->slot, host, recovered);
	if (!rc)
		*recovered |= 1ull << c->v->slot;
	return rc;
}

/* Open, recover, claim.  Everything that can refuse the mount.  On
 * success the context is ready; on failure nothing is left open. */
static int open_volume(struct mopts *m, struct fsctx *c, bool *ctx_ok)
{
	char host[HOST_NAME_MAX + 1] = "";
	uint64_t recovered = 0;
	struct vmfs_inode *root = malloc(sizeof(*root));
	struct vol *v = NULL;
	struct lkset ls;
	int rc;

	if (!root)
		return -ENOMEM;
	if (m->host)
		snprintf(host, sizeof(host), "%s", m->host);
	else
		gethostname(host, sizeof(host) - 1);
	rc = vol_open(m->device, VOL_MOUNT, false, &v, NULL);
	if (rc)
		goto out;
	if (v->sb.feature_ro_compat & ~VMFS_FEATURE_RO_COMPAT_SUPP) {
		log_err("volume has unknown read-only-compatible features; refusing to mount");
		rc = -EROFS;
		goto out;
	}
	if (m->slot >= (int)v->sb.max_hosts) {
		log_err("slot %d out of range (volume has %u host slots)", m->slot, v->sb.max_hosts);
		rc = -EINVAL;
		goto out;
	}
	rc = fsctx_init(c, v);
	if (rc)
		goto out;
	if (m->commit)
		c->commit_s = (unsigned)m->commit;
	*ctx_ok = true;
	rc = claim(m, c, host, &recovered);
	if (rc)
		goto fail;
	lks_init(&ls);
	lks_want(&ls, VMFS_LK_INODE, v->sb.root_ino, VMFS_LK_PR);
	rc = lks_lock(c, &ls);
	if (rc)
		goto release;
	pthread_mutex_lock(&v->mu);
	v->rg_locked = c->lk.cluster;	/* alloc.h */
	rc = alloc_init(v);
	if (!rc)
		rc = vol_inode_get(v, v->sb.root_ino, root);
	if (!rc && !S_ISDIR(root->mode)) {
		vol_report_bad(v, VMFS_T_INODE, v->sb.root_ino, VMFS_EBADFIELD);
		rc = VMFS_EBADFIELD;
	}
	pthread_mutex_unlock(&v->mu);
	lks_unlock(c, &ls);
	if (!rc)
		rc = cluster_finish_recovery(c, recovered);
	if (rc)
		goto release;
	free(root);
	return 0;
release:
	if (v->slot >= 0 && slot_release(v))
		log_err("could not release host slot %d", v->slot);
fail:
	cluster_stop(c);
	fsctx_fini(c);
	*ctx_ok = false;
out:
	vol_close(v);
	free(root);
	return rc;
}

static int shutdown_volume(struct fsctx *c)
{
	struct vol *v = c->v;
	struct lkset ls;
	int rc;

	lks_init(&ls);
	rc = cluster_free_orphans(c, &ls, (uint32_t)v->slot);	/* nothing is open any more */
	pthread_mutex_lock(&v->mu);
	if (!rc)
		rc = vol_commit(v);
	if (!rc)
		rc = journal_mark_clean(v, (uint32_t)v->slot, v->seq);
	pthread_mutex_unlock(&v->mu);
	lks_unlock(c, &ls);
	if (rc)
		log_err("unmount: could not checkpoint the journal: %s (it will be replayed)",
			vmfs_strerror(rc));
	return rc;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct vmfs_log_opts lo = { .ident = "vmfs-mount", .to_stderr = true,
				    .priority = LOG_INFO, .blackbox_size = 1 << 20 };
	struct mopts m = { .slot = -1 };
	struct fuse_session *se = NULL;
	struct fsctx ctx;
	struct vol *v = NULL;
	bool ctx_ok = false, mounted = false;
	int report_fd = -1, rc = 1;

	/* Keep I/O bounce buffers (up to a few MiB each) in the heap: fresh
	 * mmap'ed buffers cost a page fault per 4 KiB on every request. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (fuse_opt_parse(&args, &m, mount_opts, opt_proc) < 0) {
		rc = 2;
		goto done;
	}
	if (m.help || m.version || !m.device || !m.mountpoint) {
		if (m.version)
			printf("vmfs-mount %s (on-disk format %d.%d, FUSE %d, locking: vmfs-dlmd or single-host)\n",
			       PACKAGE_VERSION, VMFS_VERSION_MAJOR, VMFS_VERSION_MINOR, fuse_version());
		else if (m.help)
			usage(stdout);
		else {
			fprintf(stderr, "vmfs-mount: missing %s\n", m.device ? "MOUNTPOINT" : "DEVICE");
			usage(stderr);
		}
		rc = m.help || m.version ? 0 : 2;
		goto done;
	}
	if (m.commit && (m.commit < 1 || m.commit > 300)) {
		fprintf(stderr, "vmfs-mount: commit=%d: the commit interval is 1 to 300 seconds\n",
			m.commit);
		rc = 2;
		goto done;
	}
	if (m.debug) {
		m.foreground = 1;
		fuse_opt_add_arg(&args, "-d");
		lo.priority = LOG_DEBUG;
	}
	vmfs_log_init(&lo);
	/* Permission checks by the kernel; other users may use VM images. */
	fuse_opt_add_arg(&args, "-odefault_permissions,allow_other,subtype=vmfs");
	if (add_fsname(&args, m.device)) {
		log_err("out of memory");
		goto done;
	}
	if (!m.foreground && detach(&report_fd)) {
		log_err("cannot fork: %s", strerror(errno));
		return 1;
	}
	if (open_volume(&m, &ctx, &ctx_ok))
		goto out;
	v = ctx.v;
	se = fuse_session_new(&args, &vmfs_fuse_ops, sizeof(vmfs_fuse_ops), &ctx);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se))
		goto out;
	if (fuse_session_mount(se, m.mountpoint)) {
		log_err("cannot mount on %s", m.mountpoint);
		goto out;
	}
	mounted = true;
	if (hb_start(&ctx.hb, v) || fsctx_start_committer(&ctx))
		goto out;
	log_info("%s: volume \"%s\" mounted on %s (host slot %d)", m.device, v->sb.label,
		 m.mountpoint, v->slot);
	report(report_fd, 0);
	report_fd = -1;
	if (!m.foreground) {
		quiet_stdio();
		qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_TRUE);
	}
	rc = fuse_loop_run(se, VMFS_FUSE_WORKERS) ? 1 : 0;
	fsctx_end_lock_waits(&ctx);
	/* READs and WRITEs still in flight answer from the disk completion
	 * and hold cluster locks: let them finish before anything goes */
	diskio_drain(v->dio);
out:
	if (ctx_ok)
		fsctx_stop_committer(&ctx);
	if (v && v->slot >= 0) {
		if (shutdown_volume(&ctx))
			rc = 1;
		hb_stop(&ctx.hb);
		cluster_stop(&ctx);
		cluster_drop_locks(&ctx);	/* every lock but our slot's */
		if (slot_release(v))
			rc = 1;
		else
			log_info("released host slot %d", v->slot);
	}
	if (se) {
		if (mounted)
			fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
	}
	if (ctx_ok)
		fsctx_fini(&ctx);
	vol_close(v);
	report(report_fd, 1);
	vmfs_log_fini();
done:
	fuse_opt_free_args(&args);
	free(m.device);
	free(m.mountpoint);
	free(m.host);
	return rc;
}
