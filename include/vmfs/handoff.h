/* vmfs/handoff.h — the disk-lock handoff of a live migration (vmfs-migrate).
 *
 * A VM's disk locks are EX locks of the vmfs lock manager, one per disk
 * file, named by lockspace + resource and tagged with the VM's name (the
 * holder tag of DESIGN.md decision 7).  At the switchover of a live
 * migration (decision 8) they move from the source host to the destination
 * host in ONE lock-manager message, vmfs_dlm_transfer_set(): every disk
 * moves, or none does, conditional on the source's epochs (the fencing
 * tokens of decision 4), so there is no moment where neither or both hosts
 * own a disk.
 *
 *   destination          vmfs_handoff_prepare()  queue one EX request per
 *                        disk, tagged with the VM name, PERSISTENT; they
 *                        wait behind the source's locks (the destination's
 *                        pending claims)
 *   either host          vmfs_handoff_commit()   look the VM's locks up in
 *                        the cluster table ("locks" query) and move them
 *                        with one TRANSFER_SET carrying the source's epochs
 *   destination          vmfs_handoff_abort()    cancel the pending
 *                        requests; ownership stays with the source
 *
 * Why prepare needs a live handle: a *waiting* request does not survive its
 * client (the lock manager drops waiting requests of a client that goes
 * away, PERSISTENT or not: only granted PERSISTENT locks become orphans).
 * So the handle that prepared must stay open until the commit or the abort.
 * After a commit the prepared requests are granted locks of that handle;
 * being PERSISTENT they survive it as orphans of the destination host,
 * which the destination hypervisor takes over with VMFS_DLM_ADOPT.  A
 * hypervisor that prepares through its own handle simply holds them.
 *
 * Disk locks must not be taken through the lock cache (vmfs_dlm_cache_*):
 * a cached lock is released when the destination's request queues behind
 * it, which would hand the disk over without the epoch check.
 *
 * Errors: 0, a negative errno, a VMFS_DLM_E* code of the lock manager
 * (VMFS_DLM_ESTALE: a source epoch changed since the lookup), or one of the
 * VMFS_HANDOFF_E* codes below.  The functions that can fail for a reason a
 * person must read also fill `why` (may be NULL) with one line of text.
 */
#ifndef VMFS_HANDOFF_H
#define VMFS_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "vmfs/dlm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_HANDOFF_DISKS_MAX VMFS_DLM_TRANSFER_SET_MAX	/* disks per VM */
#define VMFS_HANDOFF_DEFAULT_LS "default"			/* as vmfsctl lock */

/* Domain errors (their own negative range). */
#define VMFS_HANDOFF_EBASE	(-6000)
#define VMFS_HANDOFF_ENOSOURCE	(VMFS_HANDOFF_EBASE - 1)	/* no lock of the VM granted on the source */
#define VMFS_HANDOFF_ENOPREPARE	(VMFS_HANDOFF_EBASE - 2)	/* a disk has no prepared request */
#define VMFS_HANDOFF_EAMBIGUOUS	(VMFS_HANDOFF_EBASE - 3)	/* several holders/requests/hosts */
#define VMFS_HANDOFF_EFREE	(VMFS_HANDOFF_EBASE - 4)	/* prepare: disk not held by anyone */
#define VMFS_HANDOFF_ETOOMANY	(VMFS_HANDOFF_EBASE - 5)	/* more than VMFS_HANDOFF_DISKS_MAX */

/* One disk of a handoff, as looked up (and, after commit, moved). */
struct vmfs_handoff_disk {
	char res[VMFS_DLM_NAME_MAX + 1];
	uint64_t from_lkid;			/* the source's granted lock */
	uint64_t from_epoch;			/* its epoch at the lookup */
	char from_host[VMFS_DLM_NAME_MAX + 1];
	uint64_t to_lkid;			/* the destination's request */
	char to_host[VMFS_DLM_NAME_MAX + 1];
	uint64_t epoch;				/* the destination's epoch after commit; 0 before */
};

/* A prepared incoming VM (destination side); owned by the caller. */
struct vmfs_handoff;

/* Queue EX requests tagged `vm` (PERSISTENT) for the n resources in
 * lockspace ls (NULL: VMFS_HANDOFF_DEFAULT_LS) through h, and return once
 * the cluster has queued every one of them (timeout_ms < 0: no limit).
 * A disk that nobody holds is refused (VMFS_HANDOFF_EFREE): its request
 * would have been granted at once, outside any handoff; such grants are
 * released again.  On failure nothing stays queued. */
int vmfs_handoff_prepare(vmfs_dlm_t *h, const char *vm, const char *ls,
			 const char *const *res, size_t n, int timeout_ms,
			 struct vmfs_handoff **out, char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* Progress of a prepared VM, from the events read by vmfs_dlm_dispatch()
 * on its handle: 1 when every request has been granted (the handoff
 * happened; epochs in *disks if not NULL, up to n_disks entries), 0 while
 * they wait, or the negative error that ended one of them (refused,
 * cancelled, connection lost). */
int vmfs_handoff_poll(struct vmfs_handoff *p, struct vmfs_handoff_disk *disks, size_t n_disks);

/* Cancel the prepared requests that still wait (the library side of
 * `vmfs-migrate abort`); granted ones are left alone.  Then free p. */
int vmfs_handoff_abort(struct vmfs_handoff *p);

/* Forget p without touching its requests (they live as long as the handle). */
void vmfs_handoff_free(struct vmfs_handoff *p);

/* The switchover: find the locks tagged `vm` granted on the source host
 * (from_host, or NULL: the one host holding them) in lockspace ls and the
 * requests tagged `vm` waiting on the same resources from another host,
 * and move them all with ONE vmfs_dlm_transfer_set() carrying the epochs
 * read.  disks (capacity cap, may be NULL) receives what was moved with the
 * new epochs; *n_out its count.  On any failure nothing has moved. */
int vmfs_handoff_commit(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
			struct vmfs_handoff_disk *disks, size_t cap, size_t *n_out,
			char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* Move exactly disks[0..n) (from vmfs_handoff_lookup(), with from_epoch
 * possibly replaced by the epochs the source's own handles carry, so the
 * move is conditional on what the source VM actually writes under) with
 * ONE vmfs_dlm_transfer_set(); on success each disk's epoch is filled in.
 * ls as for the lookup (used to read the new epochs). */
int vmfs_handoff_commit_disks(vmfs_dlm_t *h, const char *ls, struct vmfs_handoff_disk *disks,
			      size_t n, char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* Look up without moving (what commit would do); same arguments. */
int vmfs_handoff_lookup(vmfs_dlm_t *h, const char *vm, const char *ls, const char *from_host,
			struct vmfs_handoff_disk *disks, size_t cap, size_t *n_out,
			char *why, size_t why_len)
	__attribute__((warn_unused_result));

const char *vmfs_handoff_strerror(int err);

/* --- Additions (append-only): disks in several lockspaces ------------------
 *
 * A VM whose disks are files on vmfs mounts (vmfs-migrate prepare PATH...)
 * has one disk lock per file, held by the mount of the source host: in the
 * lockspace of the file's volume (its UUID), resource "i<ino>", tagged with
 * the first opener ("program[pid]"), not with the VM.  The destination's
 * mount queues the claim tagged with the VM's name (fs/openlock.h).  So
 * these lookups start from the destination's waiting requests tagged vm and
 * take, on each of those resources, the one lock granted there whatever
 * its tag.  Lock ids are cluster-wide, so one TRANSFER_SET may mix
 * lockspaces. */

/* One disk of such a handoff: the lockspace it is in, and the disk. */
struct vmfs_handoff_ldisk {
	char ls[VMFS_DLM_NAME_MAX + 1];
	struct vmfs_handoff_disk d;
};

/* Look up vm's handoff in lockspace ls (NULL: every lockspace): every
 * request tagged vm waiting from one host (the destination), and on each of
 * those resources the source's lock: exactly one granted lock (EX, not
 * recovering, not converting; on from_host if not NULL), whatever its tag.
 * A lock tagged vm granted on another host than the destination without a
 * waiting request there is an unprepared disk (VMFS_HANDOFF_ENOPREPARE), so
 * a partial prepare is refused as with vmfs_handoff_lookup().  Nothing
 * waiting at all: VMFS_HANDOFF_ENOPREPARE. */
int vmfs_handoff_lookup_any(vmfs_dlm_t *h, const char *vm, const char *ls,
			    const char *from_host, struct vmfs_handoff_ldisk *disks, size_t cap,
			    size_t *n_out, char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* Move exactly disks[0..n) with ONE vmfs_dlm_transfer_set() conditional on
 * their from_epoch; on success each d.epoch is filled in. */
int vmfs_handoff_commit_ldisks(vmfs_dlm_t *h, struct vmfs_handoff_ldisk *disks, size_t n,
			       char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* --- Additions (append-only): giving the disks back ----------------------
 *
 * The point of no return of a migration is the destination's
 * acknowledgement that it resumed, which comes AFTER the handoff.  If it
 * does not come, the VM resumes on the source, which must own its disks
 * again.  So before the pause the source arms a *return claim* on each
 * disk file (vmfs_handoff_return_arm(): setxattr VMFS_HANDOFF_XATTR_RETURN =
 * VM on the source's mount, fs/openlock.h): the mount queues an EX request
 * tagged VMFS_HANDOFF_RETURN_TAG + VM behind its own lock.  After the
 * handoff it waits behind the destination's lock; vmfs_handoff_giveback()
 * moves the destination's locks to these claims with ONE TRANSFER_SET
 * (conditional on the destination's epochs), and the source's mount
 * re-arms the handles the handoff fenced.  A destination that closed the
 * file or died (its lock released or purged) gives it back by itself: the
 * claim is simply granted.  After a successful migration, or when the VM
 * stops, the claims are dropped (vmfs_handoff_return_drop(); the mount
 * also drops them at the file's last close on the source).
 *
 * The tag differs from the VM's own (destination claims are tagged VM):
 * a return claim waiting on the source is never taken for a prepare. */
#define VMFS_HANDOFF_XATTR_RETURN "trusted.vmfs.return"	/* as fs/fuse_ops.h */
#define VMFS_HANDOFF_RETURN_TAG "return:"
#define VMFS_HANDOFF_RETURN_VM_MAX \
	(VMFS_DLM_TAG_MAX - (int)(sizeof(VMFS_HANDOFF_RETURN_TAG) - 1))

/* Arm the return claims of vm (at most VMFS_HANDOFF_RETURN_VM_MAX bytes)
 * on the n disk files paths[] (on vmfs mounts of this host, open here for
 * write by the VM).  All or nothing: on failure the ones armed are
 * dropped again.  0, or a negative errno with why: -ENOTSUP (a file is not
 * on a clustered vmfs mount), -ENOENT (not open here), -EBUSY (armed for
 * another VM), -EINVAL, -EIO. */
int vmfs_handoff_return_arm(const char *vm, const char *const *paths, size_t n,
			    char *why, size_t why_len)
	__attribute__((warn_unused_result));

/* Drop them (none armed is not an error).  0 or the first error. */
int vmfs_handoff_return_drop(const char *const *paths, size_t n);

/* Where the return claim on path stands (the mount's answer: "armed VM",
 * "waiting VM", "returned VM"; see fs/openlock.h) into buf.  0, -ENODATA
 * (none), or a negative errno. */
int vmfs_handoff_return_state(const char *path, char *buf, size_t len);

/* After a give-back: wait, up to `ms`, until the mount re-armed path (its
 * return state "returned ..."): back in the lock table is not yet back in
 * the mount, which takes the grant on its claim and re-arms the handles the
 * handoff fenced.  Drop the claim only after this - a claim withdrawn
 * before its grant is processed is released again, and the disk would have
 * no holder.  0, -EINVAL, or -ETIMEDOUT with the last state seen (or "")
 * in buf. */
int vmfs_handoff_return_wait(const char *path, int ms, char *buf, size_t len);

/* Give the disks back: every return claim tagged VMFS_HANDOFF_RETURN_TAG +
 * vm waiting on host `me`, and on each of those resources the one EX lock
 * granted on another host (the destination's), moved with ONE
 * vmfs_dlm_transfer_set() conditional on the epochs read now.  moved (may
 * be NULL) is what the handoff moved (vmfs_handoff_lookup_any() entries):
 * then each of those disks must be back or come back, and the holder must
 * still be the lock the handoff created (d.to_lkid), else nothing moves.
 * A disk whose claim was granted already (the destination let go) counts
 * as back.  out (capacity cap, may be NULL) receives the transfers made
 * (from = the destination's lock, to = the return claim); *n_out their
 * count.  0 when every disk is back (or moves back now); otherwise
 * nothing moved: VMFS_HANDOFF_ENOPREPARE (a disk has no return claim),
 * VMFS_HANDOFF_EAMBIGUOUS (several holders, or one recovering: its host
 * died and the claim is granted once recovery ends), VMFS_HANDOFF_ENOSOURCE
 * (the holder is not the lock the handoff created), or the lock
 * manager's refusal.  Retries the lookup twice when an epoch changed
 * between the lookup and the transfer (VMFS_DLM_ESTALE). */
int vmfs_handoff_giveback(vmfs_dlm_t *h, const char *vm, const char *me,
			  const struct vmfs_handoff_ldisk *moved, size_t n_moved,
			  struct vmfs_handoff_ldisk *out, size_t cap, size_t *n_out,
			  char *why, size_t why_len)
	__attribute__((warn_unused_result));

#ifdef __cplusplus
}
#endif
#endif
