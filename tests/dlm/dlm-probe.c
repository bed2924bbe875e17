/* dlm-probe — a scriptable libvmfsdlm client for the integration tests.
 *
 * Reads commands from stdin, one per line, and prints every outcome and
 * callback as one line on stdout (flushed), so a shell test can drive it
 * through a fifo and wait for lines with grep:
 *
 *   lock ID LS RES MODE [noqueue] [persistent] [adopt] [tag=T]
 *        -> "queued ID lkid=N" (when known), then
 *           "granted ID lkid=N epoch=E mode=M lvb=HEX|invalid"
 *           or "refused ID err=TEXT"
 *   convert ID MODE [noqueue] [lvb=HEX]   (lvb written on down-convert)
 *   unlock ID [lvb=HEX]                  -> "unlocked ID" | "unlock-failed ID err=TEXT"
 *   transfer FROM_LKID FROM_EPOCH TO_LKID -> "transfer ok" | "transfer err=TEXT"
 *   recovery-register LS                 -> "registered LS"
 *   recovery-done LS NODEID              -> "recovery-done LS NODEID"
 *   warm MS                              -> "warm ok" | "warm err=TEXT"
 *   quit
 * callbacks: "blocking lkid=N wanted=MODE", "lost lkid=N reason=R",
 *            "lease valid=V", "recover LS NODEID"
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/dlm.h"

#define MAX_LOCKS 64

struct probe_lock {
	char id[32];
	struct vmfs_dlm_lksb lksb;
	int used;
};

static struct probe_lock locks[MAX_LOCKS];
static vmfs_dlm_t *h;

static struct probe_lock *find(const char *id, int create)
{
	for (int i = 0; i < MAX_LOCKS; i++)
		if (locks[i].used && strcmp(locks[i].id, id) == 0)
			return &locks[i];
	if (!create)
		return NULL;
	for (int i = 0; i < MAX_LOCKS; i++) {
		if (!locks[i].used) {
			memset(&locks[i], 0, sizeof(locks[i]));
			locks[i].used = 1;
			snprintf(locks[i].id, sizeof(locks[i].id), "%s", id);
			return &locks[i];
		}
	}
	return NULL;
}

static void print_lvb(const struct vmfs_dlm_lksb *l)
{
	if (!l->lvb_valid) {
		printf("invalid");
		return;
	}
	for (int i = 0; i < VMFS_DLM_LVB_LEN; i++)
		printf("%02x", (unsigned char)l->lvb[i]);
}

static int parse_lvb(const char *hex, char *lvb)
{
	size_t n = strlen(hex);

	memset(lvb, 0, VMFS_DLM_LVB_LEN);
	if (n % 2 || n / 2 > VMFS_DLM_LVB_LEN)
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		lvb[i] = (char)v;
	}
	return 0;
}

static void on_completion(void *arg, const struct vmfs_dlm_lksb *lksb)
{
	struct probe_lock *pl = arg;

	pl->lksb = *lksb;
	if (lksb->status == 0) {
		printf("granted %s lkid=%llu epoch=%llu mode=%s lvb=", pl->id,
		       (unsigned long long)lksb->lkid, (unsigned long long)lksb->epoch,
		       vmfs_dlm_mode_name(lksb->mode));
		print_lvb(lksb);
		printf("\n");
	} else {
		printf("refused %s err=%s\n", pl->id, vmfs_dlm_strerror(lksb->status));
	}
	fflush(stdout);
}

static void on_blocking(void *ctx, uint64_t lkid, int wanted)
{
	printf("blocking lkid=%llu wanted=%s\n", (unsigned long long)lkid,
	       vmfs_dlm_mode_name(wanted));
	fflush(stdout);
}

static void on_lost(void *ctx, uint64_t lkid, int reason)
{
	printf("lost lkid=%llu reason=%d\n", (unsigned long long)lkid, reason);
	fflush(stdout);
}

static void on_lease(void *ctx, int valid)
{
	printf("lease valid=%d\n", valid);
	fflush(stdout);
}

static void on_recover(void *ctx, const char *ls, uint32_t nodeid)
{
	printf("recover %s %u\n", ls, nodeid);
	fflush(stdout);
}

static unsigned parse_flags(char **tok, int n, const char **tag, char *lvb, int *has_lvb)
{
	unsigned f = 0;

	for (int i = 0; i < n; i++) {
		if (strcmp(tok[i], "noqueue") == 0)
			f |= VMFS_DLM_NOQUEUE;
		else if (strcmp(tok[i], "persistent") == 0)
			f |= VMFS_DLM_PERSISTENT;
		else if (strcmp(tok[i], "adopt") == 0)
			f |= VMFS_DLM_ADOPT;
		else if (tag && strncmp(tok[i], "tag=", 4) == 0)
			*tag = tok[i] + 4;
		else if (lvb && strncmp(tok[i], "lvb=", 4) == 0 && parse_lvb(tok[i] + 4, lvb) == 0)
			*has_lvb = 1;
	}
	return f;
}

static void command(char *line)
{
	char *tok[16];
	int n = 0;

	for (char *s = strtok(line, " \t\n"); s && n < 16; s = strtok(NULL, " \t\n"))
		tok[n++] = s;
	if (n == 0)
		return;

	if (strcmp(tok[0], "lock") == 0 && n >= 5) {
		const char *tag = NULL;
		unsigned flags = parse_flags(tok + 5, n - 5, &tag, NULL, NULL);
		struct probe_lock *pl = find(tok[1], 1);
		int mode = vmfs_dlm_mode_parse(tok[4]);
		uint64_t lkid = 0;
		int rc;

		if (!pl || mode < 0) {
			printf("error bad lock command\n");
			return;
		}
		rc = vmfs_dlm_lock_async(h, tok[2], tok[3], mode, flags, tag, pl, &lkid);
		if (rc < 0)
			printf("refused %s err=%s\n", pl->id, vmfs_dlm_strerror(rc));
		else if (lkid)
			printf("queued %s lkid=%llu\n", pl->id, (unsigned long long)lkid);
	} else if (strcmp(tok[0], "convert") == 0 && n >= 3) {
		struct probe_lock *pl = find(tok[1], 0);
		char lvb[VMFS_DLM_LVB_LEN];
		int has_lvb = 0, rc, mode = vmfs_dlm_mode_parse(tok[2]);
		unsigned flags = parse_flags(tok + 3, n - 3, NULL, lvb, &has_lvb);

		if (!pl || mode < 0) {
			printf("error bad convert command\n");
			return;
		}
		if (has_lvb)
			flags |= VMFS_DLM_VALBLK;
		rc = vmfs_dlm_convert_async(h, pl->lksb.lkid, mode, flags,
					    has_lvb ? lvb : NULL, pl);
		if (rc < 0)
			printf("refused %s err=%s\n", pl->id, vmfs_dlm_strerror(rc));
	} else if (strcmp(tok[0], "unlock") == 0 && n >= 2) {
		struct probe_lock *pl = find(tok[1], 0);
		int has_lvb = 0, rc;
		unsigned flags;

		if (!pl) {
			printf("error no lock %s\n", tok[1]);
			return;
		}
		flags = parse_flags(tok + 2, n - 2, NULL, pl->lksb.lvb, &has_lvb);
		if (has_lvb)
			flags |= VMFS_DLM_VALBLK;
		rc = vmfs_dlm_unlock(h, &pl->lksb, flags);
		if (rc < 0) {
			printf("unlock-failed %s err=%s\n", pl->id, vmfs_dlm_strerror(rc));
		} else {
			printf("unlocked %s\n", pl->id);
			pl->used = 0;
		}
	} else if (strcmp(tok[0], "transfer") == 0 && n == 4) {
		int rc = vmfs_dlm_transfer(h, strtoull(tok[1], NULL, 0),
					   strtoull(tok[2], NULL, 0), strtoull(tok[3], NULL, 0));
		if (rc < 0)
			printf("transfer err=%s\n", vmfs_dlm_strerror(rc));
		else
			printf("transfer ok\n");
	} else if (strcmp(tok[0], "warm") == 0 && n == 2) {
		int rc = vmfs_dlm_warm(h, (unsigned)strtoul(tok[1], NULL, 0));

		if (rc < 0)
			printf("warm err=%s\n", vmfs_dlm_strerror(rc));
		else
			printf("warm ok\n");
	} else if (strcmp(tok[0], "recovery-register") == 0 && n == 2) {
		int rc = vmfs_dlm_recovery_register(h, tok[1]);
		printf(rc < 0 ? "register-failed %s\n" : "registered %s\n", tok[1]);
	} else if (strcmp(tok[0], "recovery-done") == 0 && n == 3) {
		int rc = vmfs_dlm_recovery_done(h, tok[1], (uint32_t)strtoul(tok[2], NULL, 0));
		printf(rc < 0 ? "recovery-failed %s %s\n" : "recovery-done %s %s\n", tok[1], tok[2]);
	} else if (strcmp(tok[0], "quit") == 0) {
		vmfs_dlm_close(h);
		exit(0);
	} else {
		printf("error unknown command %s\n", tok[0]);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct vmfs_dlm_callbacks cb = {
		.completion = on_completion,
		.blocking = on_blocking,
		.lost = on_lost,
		.lease = on_lease,
		.recover = on_recover,
	};
	char line[512];
	int rc;

	rc = vmfs_dlm_open(argc > 1 ? argv[1] : "dlm-probe", &h);
	if (rc < 0) {
		fprintf(stderr, "dlm-probe: cannot connect to vmfs-dlmd: %s\n",
			vmfs_dlm_strerror(rc));
		return 1;
	}
	vmfs_dlm_set_callbacks(h, &cb, NULL);
	/* Unbuffered: we poll() fd 0, and lines that stdio had already read
	 * ahead (two commands written back to back) would wait there unseen
	 * until the next input. */
	setvbuf(stdin, NULL, _IONBF, 0);
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = 0, .events = POLLIN },
			{ .fd = vmfs_dlm_fd(h), .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents) {
			rc = vmfs_dlm_dispatch(h);
			if (rc < 0) {
				printf("daemon-lost err=%s\n", vmfs_dlm_strerror(rc));
				fflush(stdout);
				break;
			}
		}
		if (p[0].revents) {
			if (!fgets(line, sizeof(line), stdin))
				break;
			command(line);
		}
	}
	vmfs_dlm_close(h);
	return 0;
}
