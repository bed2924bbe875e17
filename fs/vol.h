/* vol.h — an open vmfs volume: superblock, metadata cache, transactions.
 *
 * Concurrency (single-host implementation): vol.mu is "the metadata lock".
 * Every read or change of metadata (the cache, allocators, inodes,
 * directories, the running transaction) happens with vol.mu held.  File
 * data I/O happens outside it, under the per-inode rwlock of the mount's
 * vnode.  With the lock manager (later), vol.mu stays the local lock and
 * cluster locks from locking.h are taken before it, never while holding it.
 *
 * Transactions: changes go to cached mblks marked dirty; they form the
 * running transaction.  journal_commit() writes them to this host's journal
 * (descriptors, copies, commit record with CRC), makes that durable, and
 * only then writes them in place ("checkpoint").  Until a block is in the
 * journal the on-disk state is the previous consistent one.
 */
#ifndef VMFS_FS_VOL_H
#define VMFS_FS_VOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "diskio.h"
#include "ondisk.h"

struct mbuf {
	uint64_t addr;		/* mblk */
	uint8_t *data;		/* VMFS_MBLK bytes, 4096-aligned, encoded */
	bool dirty;		/* member of the running transaction */
	struct mbuf *hnext;	/* hash chain */
	struct mbuf *dnext;	/* dirty list */
};

/* A freed data-block range that must not be reused before the transaction
 * freeing it is durable: data writes bypass the journal, so reusing the
 * block earlier could put new data into a file that a crash resurrects. */
struct pending_free {
	uint64_t start;
	uint32_t len;
};

enum vol_mode {
	VOL_OFFLINE,		/* mkfs/fsck: sync I/O, no journal, writes in place */
	VOL_MOUNT,		/* the mount: aio + O_DIRECT, journaled */
};

struct vol {
	struct diskio *dio;
	struct vmfs_sb sb;
	enum vol_mode mode;
	bool rdonly;
	uint32_t bsize;		/* sb.block_size */
	uint32_t mpb;		/* mblks per block */
	uint32_t pages_max;	/* small files in pages up to this size; 0 = none */

	pthread_mutex_t mu;	/* the metadata lock, see above */
	/* cache: protected by mu */
	struct mbuf **htab;
	size_t hsize, ncached, cache_limit;
	struct mbuf *dirty;
	size_t ndirty;
	struct pending_free *pfree;
	size_t npfree, pfree_cap;
	/* mblks freed to their chunk in the running transaction: not yet
	 * reusable as file data pages (alloc_page), which are written in
	 * place at once, before the free is durable */
	uint64_t *pmfree;
	size_t npmfree, pmfree_cap;
	/* journal: protected by mu */
	int slot;		/* claimed host slot, -1 offline */
	uint64_t seq;		/* last committed transaction */
	uint64_t clean_seq;	/* journal header says clean up to here */
	bool ckpt_unsynced;	/* in-place writes not yet fdatasync'ed */
	int error;		/* sticky: once set every change fails */
	/* Fills whose blocks are marked written in the running transaction
	 * while their data is still on its way to the disk (vol_data_begin):
	 * a commit waits for them first, so no transaction makes a block
	 * written before its data is on the disk.  Protected by dmu, never
	 * taken with it held; the completions need no mu. */
	pthread_mutex_t dmu;
	pthread_cond_t dcond;
	unsigned data_inflight;
	atomic_bool data_lost;	/* one failed: its block reads garbage */
	/* allocator: protected by mu (alloc.h says how the RG locks work) */
	uint32_t rg_pref;	/* the RG this host starts in (its own) */
	uint32_t rg_cur;	/* the RG this host allocates in now */
	uint64_t chunk_hint;	/* mblk of a chunk header that had free slots */
	bool rg_locked;		/* per-RG cluster locks in force (a shared mount) */
	uint8_t *rg_held;	/* [nrgs]: this host holds RG i's lock "a<i>" */
	uint32_t *rg_hint;	/* [nrgs]: free blocks last seen, locked or not */
	uint64_t recount_ns;	/* when free_blocks was last summed */
	/* spare mblks of this host (spare.h): protected by mu */
	uint64_t spare[128];
	unsigned nspare;
	bool spare_mode;	/* this operation runs without group locks: use them */
	/* statistics */
	uint64_t free_blocks;	/* sum of RG free counts, protected by mu */
	bool free_stale;	/* another host may have changed them: recount */
};

/* Open the device and read+validate the superblock.  On a damaged primary
 * superblock: offline mode falls back to the backup (and sets *used_backup);
 * mount mode refuses, naming the structure and offset. */
int vol_open(const char *path, enum vol_mode mode, bool rdonly, struct vol **out,
	     bool *used_backup) __attribute__((warn_unused_result));
void vol_close(struct vol *v);

/* Log "<structure> at byte offset N: <reason>" for a bad block. */
void vol_report_bad(struct vol *v, int type, uint64_t addr, int err);

/* Cache.  mc_get reads (if needed) and validates the header against type;
 * a failure is reported once and returned (a domain error).  mc_new returns
 * a zeroed buffer for a block about to be written whole.  mc_dirty adds a
 * buffer to the running transaction after its bytes changed (bumps the
 * generation and reseals the CRC). */
int mc_get(struct vol *v, uint64_t addr, int type, struct mbuf **out)
	__attribute__((warn_unused_result));
int mc_new(struct vol *v, uint64_t addr, struct mbuf **out)
	__attribute__((warn_unused_result));
void mc_dirty(struct vol *v, struct mbuf *mb);
/* Drop clean buffers when over the limit; call between operations only. */
void mc_trim(struct vol *v);
/* Drop every clean buffer. */
void mc_drop_clean(struct vol *v);
/* Block-type masks: which cached blocks a kind of lock covers (the one
 * place that says so; locking.h names the locks). */
#define VMFS_MC_TYPE(t) (1u << (t))
#define VMFS_MC_ALLOC (VMFS_MC_TYPE(VMFS_T_RG) | VMFS_MC_TYPE(VMFS_T_CHUNK))
#define VMFS_MC_INODES (VMFS_MC_TYPE(VMFS_T_INODE) | VMFS_MC_TYPE(VMFS_T_EXTBLK) | \
			VMFS_MC_TYPE(VMFS_T_DIRIDX) | VMFS_MC_TYPE(VMFS_T_DIRBKT))
#define VMFS_MC_ALL 0xffffffffu
/* Drop the clean buffers whose block type is in types (VMFS_MC_*). */
void mc_drop_clean_types(struct vol *v, uint32_t types);
/* Before another host may take a lock we held (the blocking callback of
 * locking.h): commit, checkpoint, mark the journal clean (so a replay
 * after our crash can never overwrite what the next holder writes:
 * journal.c invariant 3), forget the cached blocks of the types that
 * lock covers (VMFS_MC_*; the others stay valid: each is covered by a
 * lock this host still holds).  Needs mu. */
int vol_handover(struct vol *v, uint32_t types) __attribute__((warn_unused_result));
/* The same, forgetting only the blocks in mblks [lo, hi) (a resource
 * group's lock covers its own blocks only). */
int vol_handover_in(struct vol *v, uint32_t types, uint64_t lo, uint64_t hi)
	__attribute__((warn_unused_result));
/* Drop one clean buffer (fsck after repairs). */
void mc_forget(struct vol *v, uint64_t addr);

/* Typed accessors (decode/encode through the cache). */
int vol_inode_get(struct vol *v, uint64_t ino, struct vmfs_inode *out)
	__attribute__((warn_unused_result));
int vol_inode_put(struct vol *v, const struct vmfs_inode *in)
	__attribute__((warn_unused_result));

/* Commit the running transaction (see above).  Offline mode writes dirty
 * blocks in place and syncs.  Needs mu held. */
int vol_commit(struct vol *v) __attribute__((warn_unused_result));
/* Without vol.mu: make the last commit's in-place writes durable, so that
 * the next commit need not (journal.c invariant 2) while it holds vol.mu.
 * That fdatasync waits for every write in flight on the device, which
 * under load takes tens of ms (hundreds on a backing file still being
 * allocated), during which no operation could take vol.mu; done here,
 * only the caller waits.  The periodic commit and fsync call it first. */
void vol_presync(struct vol *v);
/* The data of a fill goes to the disk after its block is marked written
 * in the running transaction (fuse_ops.c write_fill answers such writes
 * at submission): vol_data_begin before the mark, vol_data_end(rc) when
 * the data write completed (any thread, without mu).  vol_commit waits
 * for every such write first.  One that failed (rc != 0) leaves a block
 * marked written over old bytes: the volume fails (vol.error, no commit
 * any more, so the mark never reaches the disk) and reads get EIO
 * (vol_data_check). */
void vol_data_begin(struct vol *v);
void vol_data_end(struct vol *v, int rc);
/* 0, or -EIO once a fill's data was lost. */
int vol_data_check(const struct vol *v);
/* Commit if the running transaction is getting large. */
int vol_maybe_commit(struct vol *v) __attribute__((warn_unused_result));

/* Journal (journal.c). */
int journal_commit(struct vol *v) __attribute__((warn_unused_result));
/* Replay slot's journal if it holds a committed transaction newer than its
 * checkpoint.  *replayed = number of blocks written.  Works offline too. */
int journal_replay(struct vol *v, uint32_t slot, unsigned *replayed)
	__attribute__((warn_unused_result));
/* Mark slot's journal clean (checkpoint_seq = seq) after syncing. */
int journal_mark_clean(struct vol *v, uint32_t slot, uint64_t seq)
	__attribute__((warn_unused_result));
/* Read the journal header; returns the newest seq seen in the log. */
int journal_scan(struct vol *v, uint32_t slot, uint64_t *ckpt_seq, uint64_t *last_seq,
		 bool *dirty) __attribute__((warn_unused_result));

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
