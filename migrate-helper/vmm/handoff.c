/* handoff.c — vmfs-vmm's switchover hook: the disk-lock handoff, either in
 * this process (--handoff: libvmfs-handoff, include/vmfs/handoff.h) or by a
 * program (--handoff-exec PROG: PROG handoff|abort NAME).
 *
 * Why in process: the hook runs while the guest is paused, and starting a
 * program there costs 10-40 ms on a loaded host (exec, dynamic linking,
 * connecting to vmfs-dlmd, reading the lock table) where the handoff itself
 * is one lock-manager message.  So everything but that message happens
 * before the pause, on the migration thread:
 *
 *   migrate_start        open a vmfs_dlm handle, learn this host's name;
 *                        arm the return claim on the VM's disk file
 *                        (vmfs_handoff_return_arm: the mount queues a
 *                        request behind its own lock, see below)
 *   every pre-copy round look the VM's handoff up (vmfs_handoff_lookup_any:
 *                        the destination's prepared claims tagged NAME and,
 *                        on each of their resources, the lock granted on
 *                        this host, with its epoch) at most every 100 ms
 *   before the pause     the engine decided to switch over and pauses the
 *                        guest next (ops.pre_switchover).  The guest still
 *                        runs, but its disk commands are held back from now
 *                        on (dev_disk_hold: one being run finishes first,
 *                        the next waits and the guest polls), vmfs-mount's
 *                        writes in flight are drained, and the transfer is
 *                        made NOW - ONE vmfs_dlm_transfer_set() with those
 *                        locks and epochs.  The epochs make it safe to use
 *                        a lookup made earlier: if anything moved since,
 *                        the lock manager refuses the whole set (ESTALE,
 *                        ENOLOCK) and nothing changes; we then look up
 *                        again and retry once.  A refusal fails the
 *                        migration before any pause.  The transfer is one
 *                        totem round trip (1-1.5 ms on a loaded host,
 *                        tests/dlm/bench-transfer.sh) and is not downtime:
 *                        the guest computes on, and only a disk command it
 *                        issues meanwhile waits - until the resume on the
 *                        destination, which runs it (the held command
 *                        travels in the device state), or the resume here
 *                        if the migration fails.
 *   switchover (paused)  the hook reports what was done before the pause.
 *   abort                (the migration failed after the transfer: the
 *                        destination did not acknowledge, or anything
 *                        failed between the transfer and the switchover)
 *                        give the disks back: ONE vmfs_dlm_transfer_set() from
 *                        the destination's locks to the return claims
 *                        (vmfs_handoff_giveback), then wait until the mount
 *                        re-armed the VM's handles; the guest resumes here
 *                        owning its disks.
 *   end of the migration drop the return claim; close the handle; log what
 *                        moved.
 *
 * The return claim is what makes the handoff undoable: a transfer needs a
 * request of this host waiting on each disk, and only the mount holding the
 * file can queue one (it is the lock's owner; fs/openlock.h).  It costs one
 * lock-manager message before the pause and one after the migration;
 * nothing in the pause.  Without it (the disk is not a file on a clustered
 * vmfs mount, or the mount refused) nothing can undo a transfer, so it waits
 * for the switchover hook (after the destination said READY), the ring kept
 * warm from the pause (vmfs_dlm_warm, on a thread of ours: on a ring idle
 * for a few ms the transfer would first wait for the held token, about 1 ms
 * more); a failure after it leaves the disks with the destination (said in
 * the log).
 *
 * The commit is vmfs_dlm_transfer_set() itself, not
 * vmfs_handoff_commit_ldisks(): that one also reads the new epochs back
 * (one lock-table query per disk) for a destination that needs them, which
 * the source does not, and would add them to the pause.
 *
 * Threads: handoff_begin runs on the control thread before the migration
 * thread starts; everything else but handoff_json runs on the migration
 * thread, except the ring warm-up request, made from a thread of its own
 * that is joined before the handle's next use (warm_join).  The figures
 * shown by status are under v->mig_lock.
 */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "vmfs/dlm.h"
#include "vmfs/handoff.h"

#define REFRESH_US 100000	/* pre-copy lookups at most this often */
/* Ring warm-up from the pause to the transfer: the final pages and the
 * device state take 10-30 ms at the downtime targets we use; the lock
 * manager ends it as soon as the transfer is applied, so the bound only
 * matters when the switchover fails before the transfer. */
#define WARM_MS VMFS_DLM_WARM_MAX_MS

struct vmm_handoff {
	/* migration thread only */
	vmfs_dlm_t *h;
	char me[VMFS_DLM_NAME_MAX + 1];		/* this host: the source */
	struct vmfs_handoff_ldisk d[VMFS_HANDOFF_DISKS_MAX];
	size_t n;
	int lookup_rc;			/* of the last lookup; 1: none yet */
	char why[384];			/* its reason when it failed */
	uint64_t lookup_at;		/* when (monotonic us) */
	bool moved;			/* the transfer of this migration succeeded */
	bool gave_back;			/* abort ran its give-back (it is not retried) */
	bool ret_armed;			/* the return claim on cfg.disk is armed */
	bool ret_keep;			/* give-back failed: the claim outlives the migration */
	pthread_t warm_thread;		/* the ring warm-up (handoff_paused); joined
					 * before any other use of h (warm_join) */
	bool warming;			/* started, not joined */
	int warm_rc;			/* written by warm_thread, read after the join */
	bool early;			/* the transfer was made before the pause (a
					 * refusal there ends the migration, so the
					 * hook only ever sees it made) */
	unsigned early_lookups;		/* lookups it made */
	uint64_t transfer_us;		/* its own time */

	/* the last switchover, for status; under v->mig_lock */
	const char *mode;		/* "in-process", "exec" */
	uint64_t hook_us;		/* time in the hook, guest paused */
	uint64_t lookup_us;		/* last lookup (before the pause) */
	uint64_t transfer_shown_us;	/* the transfer before the pause, for status */
	unsigned lookups_in_pause;	/* 0 when the pre-pause lookup served */
	unsigned disks;
	char result[256];
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void set_result(struct vmm *v, const char *mode, uint64_t hook_us, unsigned in_pause,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_result(struct vmm *v, const char *mode, uint64_t hook_us, unsigned in_pause,
		       const char *fmt, ...)
{
	struct vmm_handoff *x = v->handoff;
	va_list ap;

	pthread_mutex_lock(&v->mig_lock);
	x->mode = mode;
	x->hook_us = hook_us;
	x->lookups_in_pause = in_pause;
	x->disks = x->moved ? (unsigned)x->n : 0;
	va_start(ap, fmt);
	vsnprintf(x->result, sizeof(x->result), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&v->mig_lock);
}

/* The return claim on the VM's disk (see the top of this file).  0 also
 * when there is none to arm (no disk, not on vmfs); x->why on failure. */
static int return_arm(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	const char *disk = v->cfg.disk;
	int rc;

	if (!disk)
		return 0;
	rc = vmfs_handoff_return_arm(v->cfg.name, &disk, 1, x->why, sizeof(x->why));
	if (rc == -ENOTSUP) {
		log_info("vm %s: %s: the disk cannot be given back after a handoff", v->cfg.name,
			 x->why);
		return 0;
	}
	if (rc < 0)
		return rc;
	x->ret_armed = true;
	log_debug("vm %s: return claim armed on %s", v->cfg.name, disk);
	return 0;
}

static void return_drop(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	const char *disk = v->cfg.disk;
	int rc;

	if (!x->ret_armed)
		return;
	x->ret_armed = false;
	rc = vmfs_handoff_return_drop(&disk, 1);
	if (rc < 0)
		log_warn("vm %s: cannot drop the return claim on %s: %s (it goes at the file's "
			 "last close)", v->cfg.name, disk, strerror(-rc));
}

/* After a give-back: wait (bounded) until the mount re-armed the VM's
 * handles, so that the guest's first write after the resume finds them
 * writable.  true when it did. */
static bool return_wait(struct vmm *v, int ms)
{
	const char *disk = v->cfg.disk;
	char st[128] = "";

	if (!vmfs_handoff_return_wait(disk, ms, st, sizeof(st)))
		return true;
	log_err("vm %s: %s: the mount did not re-arm the disk within %d ms (return claim: %s)",
		v->cfg.name, disk, ms, st[0] ? st : "none");
	return false;
}

int handoff_begin(struct vmm *v, char *err, size_t errlen)
{
	struct vmm_handoff *x;
	uint32_t nodeid;
	int rc;

	if (!v->cfg.handoff_inproc && !v->cfg.handoff_exec)
		return 0;
	if (!v->handoff) {
		/* kept for the VM's life: status shows the last switchover */
		v->handoff = calloc(1, sizeof(*v->handoff));
		if (!v->handoff) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	x = v->handoff;
	pthread_mutex_lock(&v->mig_lock);
	x->mode = NULL;		/* no switchover in this migration yet */
	x->transfer_shown_us = 0;
	pthread_mutex_unlock(&v->mig_lock);
	x->n = 0;
	x->lookup_rc = 1;
	x->lookup_at = 0;
	x->moved = false;
	x->gave_back = false;
	x->early = false;
	x->ret_armed = false;
	x->ret_keep = false;	/* a kept claim is armed again (same VM) just below */
	snprintf(x->why, sizeof(x->why), "not looked up yet");
	rc = return_arm(v);
	if (rc < 0) {
		snprintf(err, errlen, "cannot arm the return claim on the disk (the way back if "
			 "the destination fails after the handoff): %s", x->why);
		return rc;
	}
	if (!v->cfg.handoff_inproc)
		return 0;
	rc = vmfs_dlm_open("vmfs-vmm", &x->h);
	if (rc < 0) {
		x->h = NULL;
		snprintf(err, errlen, "--handoff: cannot connect to vmfs-dlmd: %s (is it running "
			 "on this host?)", vmfs_dlm_strerror(rc));
		return_drop(v);
		return rc;
	}
	rc = vmfs_dlm_local_node(x->h, &nodeid, x->me);
	if (rc < 0) {
		snprintf(err, errlen, "--handoff: cannot ask vmfs-dlmd for this host's name: %s",
			 vmfs_dlm_strerror(rc));
		vmfs_dlm_close(x->h);
		x->h = NULL;
		return_drop(v);
		return rc;
	}
	return 0;
}

/* Look the handoff up now (guest running, or paused in a retry). */
static int lookup(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	uint64_t t0 = now_us();

	x->n = 0;
	x->lookup_rc = vmfs_handoff_lookup_any(x->h, v->cfg.name, NULL, x->me, x->d,
					       VMFS_HANDOFF_DISKS_MAX, &x->n, x->why,
					       sizeof(x->why));
	if (x->lookup_rc < 0)
		x->n = 0;
	x->lookup_at = now_us();
	pthread_mutex_lock(&v->mig_lock);
	x->lookup_us = x->lookup_at - t0;
	pthread_mutex_unlock(&v->mig_lock);
	return x->lookup_rc;
}

void handoff_refresh(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;

	if (!x || !x->h)
		return;
	if (x->lookup_rc != 1 && now_us() - x->lookup_at < REFRESH_US)
		return;
	if (lookup(v) < 0)
		log_debug("vm %s: handoff not ready yet: %s", v->cfg.name, x->why);
}

/* The transfer of x->d[0..n), conditional on the epochs looked up. */
static int transfer(struct vmm_handoff *x)
{
	struct vmfs_dlm_transfer t[VMFS_HANDOFF_DISKS_MAX];

	for (size_t i = 0; i < x->n; i++) {
		t[i].from = x->d[i].d.from_lkid;
		t[i].from_epoch = x->d[i].d.from_epoch;
		t[i].to = x->d[i].d.to_lkid;
	}
	return vmfs_dlm_transfer_set(x->h, t, x->n);
}

/* The handoff proper: transfer with the lookup made during the pre-copy;
 * look up (again) only when there was none usable or the locks moved since
 * (refused whole: nothing changed), and retry once.  Sets x->moved; x->why
 * on failure.  *lookups: lookups made here. */
static int transfer_now(struct vmm *v, unsigned *lookups)
{
	struct vmm_handoff *x = v->handoff;
	int rc;

	*lookups = 0;
	if (x->lookup_rc != 0) {
		/* nothing usable from before the pause (not prepared yet?) */
		++*lookups;
		rc = lookup(v);
		if (rc < 0)
			return rc;
	}
	rc = transfer(x);
	if (rc == VMFS_DLM_ESTALE || rc == VMFS_DLM_ENOLOCK) {
		++*lookups;
		rc = lookup(v);
		if (rc == 0)
			rc = transfer(x);
	}
	if (rc < 0) {
		snprintf(x->why, sizeof(x->why), "the lock manager refused the transfer: %s",
			 vmfs_handoff_strerror(rc));
		return rc;
	}
	x->moved = true;
	return 0;
}

/* Tests only (vmfs-vmm(8)): VMFS_VMM_TEST_HOLD_MS keeps the disk held this
 * long before the transfer, so that the guest's next disk write (every
 * --record-ms) is surely held and has to run after the resume. */
static void test_hold(struct vmm *v)
{
	const char *e = getenv("VMFS_VMM_TEST_HOLD_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;

	if (ms <= 0)
		return;
	if (ms > 5000)
		ms = 5000;
	log_info("vm %s: VMFS_VMM_TEST_HOLD_MS: disk held %ld ms before the transfer",
		 v->cfg.name, ms);
	usleep((useconds_t)ms * 1000);
}

/* See the top of this file.  Without a return claim the transfer waits
 * for the hook: nothing could undo it. */
int handoff_before_pause(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	uint64_t t0;
	int rc;

	if (!x || !x->h || !x->ret_armed)
		return 0;
	dev_disk_hold(v);
	test_hold(v);
	/* vmfs-mount may answer a write before it completes: the destination
	 * must find it on the disk.  One that failed after its answer is
	 * lost either way; logged, it does not hold the VM back. */
	(void)dev_disk_drain(v);
	t0 = now_us();
	x->early = true;
	rc = transfer_now(v, &x->early_lookups);
	x->transfer_us = now_us() - t0;
	pthread_mutex_lock(&v->mig_lock);
	x->transfer_shown_us = x->transfer_us;
	pthread_mutex_unlock(&v->mig_lock);
	if (rc < 0) {
		dev_disk_release(v);
		set_result(v, "in-process", 0, x->early_lookups,
			   "refused: %s (before the pause, the guest running)", x->why);
		log_warn("vm %s: handoff refused, the VM stays here: %s", v->cfg.name, x->why);
		return VMFS_PRECOPY_EHANDOFF;
	}
	return 0;
}

static void *warm_main(void *arg)
{
	struct vmm_handoff *x = arg;

	x->warm_rc = vmfs_dlm_warm(x->h, WARM_MS);
	return NULL;
}

/* The guest was just paused for the switchover (migrate.c).  When the
 * transfer waits for the hook, warm the ring up for it from a thread of
 * ours, so that the migration thread goes on with the final pages at once
 * (the engine counts the downtime from before its pause callback).  The
 * warm-up request is a local IPC round trip (the daemon answers once it
 * has handed its first NOOP to corosync); failing only means the transfer
 * takes the cold path. */
void handoff_paused(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	int rc;

	if (!x || !x->h || x->early || x->warming)
		return;
	x->warm_rc = 0;
	rc = pthread_create(&x->warm_thread, NULL, warm_main, x);
	if (rc)
		log_info("vm %s: no thread for the ring warm-up: %s", v->cfg.name, strerror(rc));
	else
		x->warming = true;
}

static void warm_join(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;

	if (!x || !x->warming)
		return;
	pthread_join(x->warm_thread, NULL);
	x->warming = false;
	if (x->warm_rc < 0)
		log_info("vm %s: lock manager ring warm-up refused: %s (the handoff may take "
			 "1-2 ms longer)", v->cfg.name, vmfs_dlm_strerror(x->warm_rc));
}

static int switchover_inproc(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	uint64_t t0 = now_us();
	unsigned in_pause = 0;
	int rc;

	warm_join(v);
	rc = x->early ? 0 : transfer_now(v, &in_pause);
	if (rc < 0) {
		set_result(v, "in-process", now_us() - t0, in_pause, "refused: %s", x->why);
		log_warn("vm %s: handoff refused, the VM stays here: %s", v->cfg.name, x->why);
		return -EPERM;
	}
	if (x->early)
		set_result(v, "in-process", now_us() - t0, in_pause,
			   "moved %zu disk lock%s to %s before the pause (transfer %" PRIu64 " us, "
			   "guest running, its disk held)", x->n, x->n == 1 ? "" : "s",
			   x->d[0].d.to_host, x->transfer_us);
	else
		set_result(v, "in-process", now_us() - t0, in_pause, "moved %zu disk lock%s to %s",
			   x->n, x->n == 1 ? "" : "s", x->d[0].d.to_host);
	return 0;
}

/* --handoff-exec: PROG handoff|abort NAME.  It runs while the VM is paused,
 * so it is started with posix_spawn (a vfork-style clone that shares the
 * address space): fork() would first copy the page tables of all guest
 * RAM, tens of milliseconds of downtime for a large guest on a loaded
 * host. */
static int run_hook(struct vmm *v, const char *what)
{
	char *argv[] = { (char *)v->cfg.handoff_exec, (char *)what, (char *)v->cfg.name, NULL };
	pid_t pid;
	int status, rc;

	rc = posix_spawn(&pid, v->cfg.handoff_exec, NULL, NULL, argv, environ);
	if (rc) {
		log_warn("vm %s: cannot run %s: %s", v->cfg.name, v->cfg.handoff_exec,
			 strerror(rc));
		return -rc;
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		log_warn("vm %s: %s %s refused (status %d)", v->cfg.name,
			 v->cfg.handoff_exec, what, status);
		return -EPERM;
	}
	return 0;
}

int handoff_switchover(struct vmm *v)
{
	uint64_t t0;
	int rc;

	if (v->cfg.handoff_inproc)
		return v->handoff && v->handoff->h ? switchover_inproc(v) : -ENOTCONN;
	if (!v->cfg.handoff_exec)
		return 0;
	t0 = now_us();
	rc = run_hook(v, "handoff");
	set_result(v, "exec", now_us() - t0, 0, "%s handoff %s: %s", v->cfg.handoff_exec,
		   v->cfg.name, rc ? "refused" : "ok");
	return rc;
}

/* The migration failed after the transfer: the destination did not
 * acknowledge after a successful switchover, or something failed between
 * the transfer before the pause and the switchover.  The guest resumes here as soon
 * as this returns, so the disks must be ours again first.  In process:
 * vmfs_handoff_giveback() moves the destination's locks (the ones the
 * handoff created, conditional on their epochs) to the return claims in
 * ONE transfer; if the destination let go meanwhile (it
 * closed the file or died) a claim is simply granted.  --handoff-exec:
 * PROG abort NAME, which does the same (vmfs-migrate abort on the source).
 * Then wait until the mount re-armed the handles the handoff fenced.
 * Without a return claim there is no way back: say plainly that the VM's
 * writes fail with EIO (the fencing epochs, DESIGN.md decision 4) until it
 * is stopped and started where the locks are. */
void handoff_abort(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;
	struct vmfs_handoff_ldisk back[VMFS_HANDOFF_DISKS_MAX];
	char why[384];
	size_t n = 0;
	uint64_t t0 = now_us(), hook_us;
	unsigned in_pause;
	int rc;

	if (v->cfg.handoff_exec && !v->cfg.handoff_inproc) {
		if (run_hook(v, "abort")) {
			log_err("vm %s: could not return the disks to this host", v->cfg.name);
			if (x)
				x->ret_keep = x->ret_armed;	/* as in process, below */
		}
		else if (x && x->ret_armed && return_wait(v, 5000))
			log_warn("vm %s: the destination did not acknowledge; the disks are back "
				 "(%s abort, %" PRIu64 " us)", v->cfg.name, v->cfg.handoff_exec,
				 now_us() - t0);
		return;
	}
	warm_join(v);
	if (!x || !x->moved || x->gave_back)
		return;
	x->gave_back = true;	/* once: a failed give-back leaves the claim queued */
	if (!x->ret_armed) {
		for (size_t i = 0; i < x->n; i++)
			log_err("vm %s: disk lock %s/%s stays with %s (lkid %" PRIu64 "): this "
				"host's writes to it are fenced", v->cfg.name, x->d[i].ls,
				x->d[i].d.res, x->d[i].d.to_host, x->d[i].d.to_lkid);
		log_err("vm %s: the destination did not acknowledge after the handoff and there "
			"is no return claim; the VM resumes here without its disks: stop it and "
			"start it on %s", v->cfg.name, x->n ? x->d[0].d.to_host : "the destination");
		return;
	}
	/* the switchover's figures stay what they were */
	pthread_mutex_lock(&v->mig_lock);
	hook_us = x->hook_us;
	in_pause = x->lookups_in_pause;
	pthread_mutex_unlock(&v->mig_lock);
	rc = vmfs_handoff_giveback(x->h, v->cfg.name, x->me, x->d, x->n, back,
				   VMFS_HANDOFF_DISKS_MAX, &n, why, sizeof(why));
	if (rc < 0) {
		log_err("vm %s: the migration failed after the handoff; giving the disks back "
			"failed: %s.  The return claim stays: the disks come back when %s lets "
			"go of them; until then this host's writes are fenced (EIO)", v->cfg.name,
			why, x->n ? x->d[0].d.to_host : "the destination");
		x->ret_keep = true;	/* handoff_end leaves it queued */
		set_result(v, "in-process", hook_us, in_pause,
			   "moved %zu disk lock%s to %s; failed after; give-back failed: %s", x->n,
			   x->n == 1 ? "" : "s", x->n ? x->d[0].d.to_host : "?", why);
		return;
	}
	for (size_t i = 0; i < n && i < VMFS_HANDOFF_DISKS_MAX; i++)
		log_info("vm %s: give-back %s/%s: %s -> %s, lkid %" PRIu64 " (epoch %" PRIu64
			 ") -> %" PRIu64, v->cfg.name, back[i].ls, back[i].d.res,
			 back[i].d.from_host, back[i].d.to_host, back[i].d.from_lkid,
			 back[i].d.from_epoch, back[i].d.to_lkid);
	if (return_wait(v, 5000))
		log_warn("vm %s: the migration failed after the handoff; the disks are back "
			 "(%s, %" PRIu64 " us): the VM resumes here", v->cfg.name, why,
			 now_us() - t0);
	x->moved = false;	/* undone */
	/* x->mode is set once the switchover hook ran */
	set_result(v, "in-process", hook_us, in_pause, "%s: disks given back (%s)",
		   x->mode ? "no ack from the destination" :
		   "the migration failed after the transfer before the pause", why);
}

void handoff_resume_source(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;

	warm_join(v);
	/* In process only: an exec hook's abort already ran (after the hook),
	 * or the hook never ran and nothing moved.  The caller releases the
	 * disk's held commands after this. */
	if (x && v->cfg.handoff_inproc)
		handoff_abort(v);
}

void handoff_end(struct vmm *v)
{
	struct vmm_handoff *x = v->handoff;

	if (!x)
		return;
	warm_join(v);
	if (x->moved) {
		uint64_t us;

		pthread_mutex_lock(&v->mig_lock);
		us = x->hook_us;
		pthread_mutex_unlock(&v->mig_lock);
		for (size_t i = 0; i < x->n; i++)
			log_info("vm %s: handoff %s/%s: %s -> %s, lkid %" PRIu64 " -> %" PRIu64
				 ", source epoch %" PRIu64, v->cfg.name, x->d[i].ls, x->d[i].d.res,
				 x->d[i].d.from_host, x->d[i].d.to_host, x->d[i].d.from_lkid,
				 x->d[i].d.to_lkid, x->d[i].d.from_epoch);
		log_info("vm %s: handed over %zu disk lock%s in one transfer, %" PRIu64
			 " us in the pause", v->cfg.name, x->n, x->n == 1 ? "" : "s", us);
	}
	/* The migration is over either way: on success the claim would give
	 * the file back to this host (and re-arm handles of a VM that left)
	 * when the destination closes it; on failure the lock is ours.  Only
	 * a failed give-back keeps it: it is the way the disk comes back when
	 * the destination's locks are released (its host recovered); it goes
	 * at the file's last close here, or with the next migration. */
	if (x->ret_keep)
		log_warn("vm %s: the return claim on %s stays queued until the destination "
			 "releases the disk", v->cfg.name, v->cfg.disk);
	else
		return_drop(v);
	if (x->h) {
		vmfs_dlm_close(x->h);
		x->h = NULL;
	}
}

void handoff_json(struct vmm *v, json_object *o)
{
	struct vmm_handoff *x = v->handoff;
	json_object *j;

	if (!x) {
		json_object_object_add(o, "handoff", NULL);
		return;
	}
	j = json_object_new_object();
	pthread_mutex_lock(&v->mig_lock);
	json_object_object_add(j, "mode", json_object_new_string(
		x->mode ? x->mode : v->cfg.handoff_inproc ? "in-process" : "exec"));
	if (x->mode) {
		json_object_object_add(j, "hook_us", json_object_new_int64((int64_t)x->hook_us));
		json_object_object_add(j, "result", json_object_new_string(x->result));
		if (!strcmp(x->mode, "in-process")) {
			json_object_object_add(j, "disks", json_object_new_int((int)x->disks));
			json_object_object_add(j, "lookup_us",
					       json_object_new_int64((int64_t)x->lookup_us));
			json_object_object_add(j, "lookups_in_pause",
					       json_object_new_int((int)x->lookups_in_pause));
			/* before the pause: the transfer's own time, the guest
			 * running (hook_us is what the handoff added to the
			 * pause); 0 when it was made in the hook */
			json_object_object_add(j, "transfer_before_pause_us",
					       json_object_new_int64((int64_t)x->transfer_shown_us));
		}
	}
	pthread_mutex_unlock(&v->mig_lock);
	json_object_object_add(o, "handoff", j);
}

void handoff_free(struct vmm *v)
{
	if (!v->handoff)
		return;
	v->handoff->ret_keep = false;	/* the VM goes, and its claim with it */
	handoff_end(v);
	free(v->handoff);
	v->handoff = NULL;
}
