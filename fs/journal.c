/* journal.c — the per-host write-ahead metadata journal.
 *
 * A host slot's log holds at most one transaction, always written at the
 * start of the log:
 *
 *   log[0 .. ndesc-1]        descriptors (target mblk of each copy)
 *   log[ndesc .. ndesc+n-1]  copies of the metadata blocks
 *   log[ndesc+n]             commit record: seq + CRC32C over all of the above
 *
 * Invariants:
 *  1. A block is written in place only after the transaction holding it is
 *     durable in the journal (written + fdatasync).
 *  2. Before the log is overwritten by transaction N+1, the in-place writes
 *     of transaction N are made durable (fdatasync), so the log never holds
 *     the only copy of a change that is not yet durable elsewhere.
 *  3. Replaying the latest committed transaction is idempotent: nothing else
 *     wrote those blocks after it (single host; with the lock manager a lock
 *     downgrade will first checkpoint and mark the journal clean).
 *  4. A transaction without a valid commit record is torn: it was never
 *     checkpointed, so ignoring it leaves the previous consistent state.
 * The journal header's checkpoint_seq marks transactions known to be fully
 * in place (set at clean unmount and after replay).
 */
#include "config.h"
#include "vol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "log.h"

static uint64_t log_start(const struct vol *v, uint32_t slot)
{
	return vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_LOG;
}

int journal_commit(struct vol *v)
{
	uint32_t n = (uint32_t)v->ndirty, ndesc, total, i;
	uint64_t seq = v->seq + 1, start;
	struct diskio_req jr = { 0 };
	struct diskio_req *cp = NULL;
	struct mbuf *mb;
	uint32_t crc = 0;
	int rc;

	if (n == 0)
		return 0;
	if (v->slot < 0)
		return -EINVAL;
	ndesc = (n + VMFS_JDESC_MAX - 1) / VMFS_JDESC_MAX;
	total = ndesc + n + 1;
	if (total > v->sb.journal_blocks) {
		log_err("transaction of %u blocks does not fit the journal (%u blocks)",
			total, v->sb.journal_blocks);
		return -ENOSPC;
	}
	start = log_start(v, (uint32_t)v->slot);
	/* Invariant 2. */
	if (v->ckpt_unsynced) {
		rc = diskio_sync(v->dio);
		if (rc)
			goto out;
		v->ckpt_unsynced = false;
	}
	jr.len = (size_t)total * VMFS_MBLK;
	jr.off = start * VMFS_MBLK;
	jr.write = true;
	jr.buf = diskio_alloc(jr.len);
	cp = calloc(n, sizeof(*cp));
	if (!jr.buf || !cp) {
		rc = -ENOMEM;
		goto out;
	}
	/* copies first, then the descriptors that name them */
	for (mb = v->dirty, i = 0; mb; mb = mb->dnext, i++)
		memcpy((uint8_t *)jr.buf + (size_t)(ndesc + i) * VMFS_MBLK, mb->data, VMFS_MBLK);
	for (uint32_t d = 0; d < ndesc; d++) {
		struct vmfs_jdesc *jd = calloc(1, sizeof(*jd));

		if (!jd) {
			rc = -ENOMEM;
			goto out;
		}
		vmfs_hdr_init(&jd->h, VMFS_T_JDESC, start + d, v->sb.uuid);
		jd->seq = seq;
		jd->nblocks = n;
		jd->ndesc = ndesc;
		jd->index = d;
		jd->count = 0;
		for (mb = v->dirty, i = 0; mb; mb = mb->dnext, i++)
			if (i / VMFS_JDESC_MAX == d)
				jd->addr[jd->count++] = mb->addr;
		vmfs_jdesc_encode(jd, (uint8_t *)jr.buf + (size_t)d * VMFS_MBLK);
		free(jd);
	}
	crc = crc32c(0, jr.buf, (size_t)(ndesc + n) * VMFS_MBLK);
	{
		struct vmfs_jcommit jc;

		memset(&jc, 0, sizeof(jc));
		vmfs_hdr_init(&jc.h, VMFS_T_JCOMMIT, start + ndesc + n, v->sb.uuid);
		jc.seq = seq;
		jc.nblocks = n;
		jc.ndesc = ndesc;
		jc.data_crc = crc;
		jc.commit_time_ns = now_ns();
		vmfs_jcommit_encode(&jc, (uint8_t *)jr.buf + (size_t)(ndesc + n) * VMFS_MBLK);
	}
	rc = diskio_batch(v->dio, &jr, 1);
	if (!rc)
		rc = diskio_sync(v->dio);
	if (rc)
		goto out;
	v->seq = seq;
	/* Invariant 1 holds now: checkpoint. */
	for (mb = v->dirty, i = 0; mb; mb = mb->dnext, i++) {
		cp[i].buf = diskio_alloc(VMFS_MBLK);
		if (!cp[i].buf) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(cp[i].buf, mb->data, VMFS_MBLK);
		cp[i].len = VMFS_MBLK;
		cp[i].off = mb->addr * VMFS_MBLK;
		cp[i].write = true;
	}
	rc = diskio_batch(v->dio, cp, (int)n);
	if (rc)
		goto out;
	v->ckpt_unsynced = true;
	for (mb = v->dirty; mb; ) {
		struct mbuf *next = mb->dnext;

		mb->dirty = false;
		mb->dnext = NULL;
		mb = next;
	}
	v->dirty = NULL;
	v->ndirty = 0;
out:
	if (rc == -ETIMEDOUT)	/* the kernel may still use the buffers: diskio.h */
		return rc;
	if (cp)
		for (i = 0; i < n; i++)
			free(cp[i].buf);
	free(cp);
	free(jr.buf);
	return rc;
}

static int read_blk(struct vol *v, uint64_t addr, uint8_t *blk)
{
	return diskio_pread(v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
}

static int read_jhdr(struct vol *v, uint32_t slot, struct vmfs_jhdr *jh)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	uint64_t addr = vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_JHDR;
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = read_blk(v, addr, blk);
	if (!rc) {
		rc = vmfs_jhdr_decode(blk, addr, v->sb.uuid, jh);
		if (!rc && (jh->slot != slot || jh->log_blocks != v->sb.journal_blocks))
			rc = VMFS_EBADFIELD;
		if (rc)
			vol_report_bad(v, VMFS_T_JHDR, addr, rc);
	}
	free(blk);
	return rc;
}

int journal_mark_clean(struct vol *v, uint32_t slot, uint64_t seq)
{
	uint8_t *blk = diskio_alloc(VMFS_MBLK);
	uint64_t addr = vmfs_slot_addr(&v->sb, slot) + VMFS_SLOT_JHDR;
	struct vmfs_jhdr jh;
	int rc;

	if (!blk)
		return -ENOMEM;
	rc = diskio_sync(v->dio);
	if (rc)
		goto out;
	memset(&jh, 0, sizeof(jh));
	vmfs_hdr_init(&jh.h, VMFS_T_JHDR, addr, v->sb.uuid);
	jh.checkpoint_seq = seq;
	jh.log_blocks = v->sb.journal_blocks;
	jh.slot = slot;
	vmfs_jhdr_encode(&jh, blk);
	rc = diskio_pwrite(v->dio, blk, VMFS_MBLK, addr * VMFS_MBLK);
	if (!rc)
		rc = diskio_sync(v->dio);
out:
	free(blk);
	return rc;
}

/* Load the transaction at the start of slot's log.  Returns 1 with the
 * buffer (descriptors+copies) when a committed transaction newer than
 * ckpt is found, 0 when there is none (empty, old or torn), or an error for
 * a damaged descriptor that claims to be newer than the checkpoint. */
static int load_txn(struct vol *v, uint32_t slot, uint64_t ckpt, uint64_t *seq_out,
		    uint8_t **bufp, struct vmfs_jdesc **descs, uint32_t *nd, uint32_t *nb)
{
	uint64_t start = log_start(v, slot);
	uint8_t *buf = NULL, *blk = diskio_alloc(VMFS_MBLK);
	struct vmfs_jdesc *jd = calloc(1, sizeof(*jd)), *all = NULL;
	struct vmfs_jcommit jc;
	uint32_t ndesc, n;
	int rc;

	*seq_out = 0;
	if (!blk || !jd) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_blk(v, start, blk);
	if (rc)
		goto out;
	rc = vmfs_jdesc_decode(blk, start, v->sb.uuid, jd);
	if (rc == VMFS_EBADMAGIC || rc == VMFS_EBADUUID) {
		rc = 0;	/* never written, or from an earlier mkfs */
		goto out;
	}
	if (rc) {
		if (get_le64(blk + offsetof(struct vmfs_jdesc, seq)) <= ckpt) {
			rc = 0;
			goto out;
		}
		vol_report_bad(v, VMFS_T_JDESC, start, rc);
		goto out;
	}
	*seq_out = jd->seq;
	if (jd->seq <= ckpt || jd->index != 0) {
		rc = 0;
		goto out;
	}
	ndesc = jd->ndesc;
	n = jd->nblocks;
	if ((uint64_t)ndesc + n + 1 > v->sb.journal_blocks || n == 0) {
		rc = VMFS_EBADFIELD;
		vol_report_bad(v, VMFS_T_JDESC, start, rc);
		goto out;
	}
	buf = diskio_alloc((size_t)(ndesc + n) * VMFS_MBLK);
	all = calloc(ndesc, sizeof(*all));
	if (!buf || !all) {
		rc = -ENOMEM;
		goto out;
	}
	rc = diskio_pread(v->dio, buf, (size_t)(ndesc + n) * VMFS_MBLK, start * VMFS_MBLK);
	if (rc)
		goto out;
	rc = read_blk(v, start + ndesc + n, blk);
	if (rc)
		goto out;
	if (vmfs_jcommit_decode(blk, start + ndesc + n, v->sb.uuid, &jc) || jc.seq != jd->seq ||
	    jc.nblocks != n || jc.ndesc != ndesc ||
	    jc.data_crc != crc32c(0, buf, (size_t)(ndesc + n) * VMFS_MBLK)) {
		log_info("slot %u: journal transaction %llu has no valid commit record; ignored (torn)",
			 slot, (unsigned long long)jd->seq);
		rc = 0;
		goto out;
	}
	for (uint32_t d = 0; d < ndesc; d++) {
		rc = vmfs_jdesc_decode(buf + (size_t)d * VMFS_MBLK, start + d, v->sb.uuid, &all[d]);
		if (!rc && (all[d].seq != jd->seq || all[d].index != d ||
			    all[d].count != (d + 1 < ndesc ? VMFS_JDESC_MAX : n - d * VMFS_JDESC_MAX)))
			rc = VMFS_EBADFIELD;
		if (rc) {
			vol_report_bad(v, VMFS_T_JDESC, start + d, rc);
			goto out;
		}
	}
	*bufp = buf;
	*descs = all;
	*nd = ndesc;
	*nb = n;
	buf = NULL;
	all = NULL;
	rc = 1;
out:
	free(buf);
	free(all);
	free(blk);
	free(jd);
	return rc;
}

int journal_scan(struct vol *v, uint32_t slot, uint64_t *ckpt_seq, uint64_t *last_seq,
		 bool *dirty)
{
	struct vmfs_jhdr jh;
	struct vmfs_jdesc *descs = NULL;
	uint8_t *buf = NULL;
	uint32_t nd, nb;
	uint64_t seq;
	int rc = read_jhdr(v, slot, &jh);

	if (rc)
		return rc;
	rc = load_txn(v, slot, jh.checkpoint_seq, &seq, &buf, &descs, &nd, &nb);
	*ckpt_seq = jh.checkpoint_seq;
	*last_seq = seq > jh.checkpoint_seq ? seq : jh.checkpoint_seq;
	*dirty = rc == 1;
	free(buf);
	free(descs);
	return rc < 0 ? rc : 0;
}

int journal_replay(struct vol *v, uint32_t slot, unsigned *replayed)
{
	struct vmfs_jhdr jh;
	struct vmfs_jdesc *descs = NULL;
	uint8_t *buf = NULL;
	uint32_t nd = 0, nb = 0;
	uint64_t seq;
	int rc = read_jhdr(v, slot, &jh);

	*replayed = 0;
	if (rc)
		return rc;
	rc = load_txn(v, slot, jh.checkpoint_seq, &seq, &buf, &descs, &nd, &nb);
	if (rc <= 0)
		goto out;
	for (uint32_t i = 0; i < nb; i++) {
		uint64_t target = descs[i / VMFS_JDESC_MAX].addr[i % VMFS_JDESC_MAX];
		uint8_t *copy = buf + (size_t)(nd + i) * VMFS_MBLK;

		/* A copy must be a valid record for its own target address. */
		if (vmfs_hdr_peek_type(copy) < 0 || get_le64(copy + 24) != target ||
		    target == 0 || target >= v->sb.total_bytes / VMFS_MBLK) {
			rc = VMFS_EBADFIELD;
			vol_report_bad(v, VMFS_T_JDESC, log_start(v, slot), rc);
			goto out;
		}
	}
	for (uint32_t i = 0; i < nb; i++) {
		uint64_t target = descs[i / VMFS_JDESC_MAX].addr[i % VMFS_JDESC_MAX];

		rc = diskio_pwrite(v->dio, buf + (size_t)(nd + i) * VMFS_MBLK, VMFS_MBLK,
				   target * VMFS_MBLK);
		if (rc)
			goto out;
		mc_forget(v, target);
	}
	rc = journal_mark_clean(v, slot, seq);
	if (rc)
		goto out;
	*replayed = nb;
	log_info("slot %u: replayed journal transaction %llu (%u blocks)", slot,
		 (unsigned long long)seq, nb);
out:
	free(buf);
	free(descs);
	return rc < 0 ? rc : 0;
}
