/* plock.h — cluster-wide POSIX record locks and flock (DESIGN.md decision 7).
 *
 * fcntl F_SETLK/F_SETLKW/F_GETLK (classic and OFD: FUSE hands us an owner
 * id either way) and flock() become lock-manager locks, so a lock taken on
 * host A conflicts with a request on host B (QEMU's image locking works
 * across hosts).  Lockspace = the volume UUID; resource names and the
 * range-to-resource mapping are described in plock.c.
 *
 * Threads: callable from any FUSE worker; a waiting F_SETLKW blocks only
 * its own worker.  The table has its own lock-manager handle.
 *
 * What differs from a local file system (details in plock.c):
 *   - ranges longer than 64 bytes (or to EOF) lock the whole file against
 *     other owners (over-locking: EAGAIN/waits more often, never a missed
 *     conflict); unlocking part of such a range keeps the whole-file lock
 *     until all of it is unlocked;
 *   - no deadlock detection (-EDEADLK is never returned: a real deadlock
 *     across hosts waits) and no FUSE interrupt (-EINTR is never returned);
 *   - F_GETLK reports pid 0 and, for a conflict on the whole-file lock,
 *     the range [0, PLOCK_EOF], when the holder is not a local owner;
 *   - without a lease, or once the daemon is gone, requests fail with
 *     -EIO (a waiting F_SETLKW too); unlocks always succeed.
 * t == NULL (no lock manager) is accepted: requests fail with -ENOLCK,
 * releases do nothing.
 */
#ifndef VMFS_FS_PLOCK_H
#define VMFS_FS_PLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct plock_tab;

#define PLOCK_EOF UINT64_MAX	/* end of a range that runs to end of file */

int plock_tab_new(const char *ls, struct plock_tab **out) __attribute__((warn_unused_result));
void plock_tab_free(struct plock_tab *t);

/* The interruption of a waiting request: FUSE sends INTERRUPT when the
 * process blocked in F_SETLKW or flock gets a signal.  The caller owns it
 * for the duration of the request; plock_interrupt() may come from any
 * thread, before or during the wait.  The wait's queued lock is cancelled
 * and the request fails with -EINTR, holding nothing it did not hold
 * before (or succeeds, when the grant won the race). */
struct plock_intr {
	struct plock_tab *t;
	atomic_bool fired;
};
void plock_intr_init(struct plock_intr *in, struct plock_tab *t);
void plock_interrupt(struct plock_intr *in);

/* fcntl record locks.  type: F_RDLCK, F_WRLCK or F_UNLCK; [start, end]
 * inclusive (end = PLOCK_EOF: to end of file).  0, -EAGAIN (would block,
 * wait == false), -EINTR (waiting, interrupted through intr, which may
 * be NULL), -EIO (no lease), -ENOLCK (too many locks, lock-manager
 * error), -ENOMEM, -EINVAL (bad type or end < start).  pid is shown by
 * F_GETLK of other local owners and recorded in the lock's tag ("pid N"). */
int plock_setlk(struct plock_tab *t, uint64_t ino, uint64_t owner, pid_t pid, short type,
		uint64_t start, uint64_t end, bool wait, struct plock_intr *intr)
	__attribute__((warn_unused_result));
/* F_GETLK: on entry the wanted lock; on return *type = F_UNLCK if it could
 * be granted, else the conflicting lock's type/range/pid (pid 0 when the
 * holder is on another host). */
int plock_getlk(struct plock_tab *t, uint64_t ino, uint64_t owner, short *type,
		uint64_t *start, uint64_t *end, pid_t *pid) __attribute__((warn_unused_result));
/* flock(): op = LOCK_SH, LOCK_EX or LOCK_UN, optionally | LOCK_NB.
 * SH -> EX: with LOCK_NB the shared lock is kept when EX is refused;
 * blocking, it is dropped first and EX waited for (as Linux does); an
 * interrupted wait (intr, may be NULL) returns -EINTR. */
int plock_flock(struct plock_tab *t, uint64_t ino, uint64_t owner, int op,
		struct plock_intr *intr) __attribute__((warn_unused_result));
/* Drop every record lock of owner on ino (close of a descriptor: FUSE
 * flush with lock_owner), or every flock of owner (release). */
void plock_release_owner(struct plock_tab *t, uint64_t ino, uint64_t owner);
void plock_release_flock(struct plock_tab *t, uint64_t ino, uint64_t owner);

#endif
