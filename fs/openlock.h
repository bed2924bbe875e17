/* openlock.h — per-file open locks (DESIGN.md decision 7), held by the mount.
 *
 * One lock-manager lock per (host, inode): lockspace = the volume UUID
 * (lowercase), resource "i<ino>" (decimal; vmfsctl fileinfo reads the same
 * name).  The mount holds it on behalf of every local process that has the
 * file open; the holder tag names the first opener as "program[pid]".
 *
 *   open for            normal file     multi-writer file (user.vmfs.multiwriter=1)
 *   write (O_WRONLY/RDWR)   EX             CW
 *   read only               PR             CR
 *
 * So a write open elsewhere excludes every other host (exclusive: a running
 * VM's disk), read-only opens share (base images), and multi-writer files
 * let every host write (clustered applications).  Requests are NOQUEUE: a
 * conflicting open fails at once with -EBUSY and a one-line reason naming
 * the holder (host, program, pid, tag).  Several opens on one host share
 * the lock; the mode held is the strongest any of them needs (converted up
 * NOQUEUE, down when the last stronger open closes); the lock is released
 * with the last close.
 *
 * Fencing (decision 4): the grant's epoch is the fencing token.  When the
 * lock is lost without our release (TRANSFER to a migration destination,
 * purge after this host was fenced, cluster reset) every handle opened under
 * it is fenced for good: openlock_check() returns -EIO, even if the process
 * keeps running; new opens take a new lock.
 *
 * Incoming migration: openlock_prepare() (driven by the xattr
 * "trusted.vmfs.incoming" = VM name on the destination) queues an EX
 * request tagged with the VM name that waits behind the source's lock.
 * While it waits, write opens of that inode on this host succeed but are
 * not yet allowed to write (openlock_check() -EAGAIN); when the handoff's
 * TRANSFER grants the request they may.  openlock_unprepare() cancels it.
 * If nobody holds the file when it is prepared, the request is granted at
 * once and kept: the file was free, so the incoming VM simply owns it
 * (refusing would fail a migration over a disk the source had closed).
 *
 * Return claim (source of a live migration): openlock_return_arm() (driven
 * by the xattr "trusted.vmfs.return" = VM name, on a file open here for
 * write) queues a second request at the held mode (EX), tagged
 * "return:VM", behind this host's own lock.  After the handoff moved the
 * lock to the destination it waits behind the destination's; when it is
 * granted (the destination gave the lock back by a TRANSFER, or released
 * it: closed the file, or died) the handles fenced by that transfer are
 * re-armed: a new epoch, writes allowed again.  Handles fenced for any
 * other reason (this host purged, cluster reset, daemon lost) never are.
 * It is cancelled by openlock_return_drop(), and at the last close;
 * openlock_return_state() (getxattr) says where it stands.
 * Open and fenced states, and the invariants, are described in openlock.c.
 *
 * Threads: every function may be called from any FUSE worker; the table
 * has its own lock-manager handle and event thread.
 */
#ifndef VMFS_FS_OPENLOCK_H
#define VMFS_FS_OPENLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct openlock_tab;
struct ol_ref;

/* Connect to the local vmfs-dlmd for lockspace ls (0, -EINVAL, -ENOMEM,
 * or -EIO: daemon not reachable, logged). */
int openlock_tab_new(const char *ls, struct openlock_tab **out) __attribute__((warn_unused_result));
/* Release every lock and disconnect.  Every ol_ref must be closed first
 * (refs still open are logged and their memory goes with the table). */
void openlock_tab_free(struct openlock_tab *t);

/* Take (or share) the open lock for one open of ino.  0 and *out, or
 * -EBUSY (why says who holds it), -EIO (no lease / daemon gone), -ENOMEM. */
int openlock_open(struct openlock_tab *t, uint64_t ino, bool write, bool multiwriter, pid_t pid,
		  const char *program, struct ol_ref **out, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/* May this handle write now?  0, -EIO (fenced: lock lost/transferred),
 * -EAGAIN (incoming migration not handed off yet). */
int openlock_check(const struct ol_ref *r);
/* The epoch (fencing token) of the lock this handle was opened under: the
 * grant's, or the latest up/down-convert's (same lock, same owner); 0 while
 * an incoming request is not granted; after a loss, the last one known. */
uint64_t openlock_epoch(const struct ol_ref *r);
void openlock_close(struct ol_ref *r);

/* Queue the incoming claim on ino tagged vm (1..VMFS_DLM_TAG_MAX bytes);
 * returns once the cluster queued (or granted) it, so a handoff started
 * right after finds it.  0 (also: already prepared for the same vm),
 * -EBUSY (open on this host, or prepared for another VM), -EINVAL, -EIO. */
int openlock_prepare(struct openlock_tab *t, uint64_t ino, const char *vm)
	__attribute__((warn_unused_result));
/* Drop the claim: a waiting request is cancelled (its attached handles,
 * if any, are fenced: they never got the file); a granted one is released
 * unless handles use it, in which case it lives until their last close.
 * 0, -ENOENT (not prepared), -ETIMEDOUT (the daemon did not answer), -EIO. */
int openlock_unprepare(struct openlock_tab *t, uint64_t ino);

/* Queue the return claim of the file ino open here (held EX), for VM vm
 * (1..VMFS_HANDOFF_RETURN_VM_MAX bytes); returns once the cluster queued
 * it.  0 (also: already armed for the same vm), -ENOENT (not open here, or
 * an incoming VM's claim not handed over yet), -EINVAL (bad name; the file is not held
 * exclusive), -EBUSY (armed for another VM), -ETIMEDOUT, -EIO. */
int openlock_return_arm(struct openlock_tab *t, uint64_t ino, const char *vm)
	__attribute__((warn_unused_result));
/* Withdraw it and wait for the cluster's answer (a grant that wins the
 * race is released, nothing is re-armed).  0, -ENOENT (none armed),
 * -ETIMEDOUT. */
int openlock_return_drop(struct openlock_tab *t, uint64_t ino);
/* Where it stands, as one line in buf: "armed VM" (queued behind this
 * host's lock), "waiting VM" (the lock was transferred away; the handles
 * are fenced), "returned VM" (it was granted: the handles were re-armed;
 * reported until the next arm or drop).  0, or -ENODATA (none). */
int openlock_return_state(struct openlock_tab *t, uint64_t ino, char *buf, size_t len);

#endif
