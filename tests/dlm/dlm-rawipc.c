/* dlm-rawipc — send hand-made IPC requests to vmfs-dlmd, to check that the
 * daemon refuses malformed ones with a clear error and stays up.
 *
 *   dlm-rawipc warm SIZE MS FLAGS
 *   dlm-rawipc sizes            prints "warm=N header=N" (the struct sizes)
 *
 * connects like libvmfsdlm (HELLO first), then sends one WARM request of
 * SIZE bytes (the struct is sizeof(struct vmfs_ipc_warm); a larger SIZE is
 * zero padded, a smaller one cut) with the given ms and flags, and prints
 * "error=N" with the daemon's answer (0 = accepted).  Exit 0 when an answer
 * came, 1 when not.  $VMFS_DLM_IPC_NAME as for the library.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qb/qbipcc.h>

#include "dlm/ipc_proto.h"

static int call(qb_ipcc_connection_t *c, void *req, size_t len, int32_t id)
{
	static char buf[VMFS_IPC_MAX_MSG];
	struct qb_ipc_request_header *hdr = req;
	struct vmfs_ipc_response *r = (struct vmfs_ipc_response *)buf;
	struct iovec iov = { .iov_base = req, .iov_len = len };
	ssize_t n;

	hdr->id = id;
	hdr->size = (int32_t)len;
	n = qb_ipcc_sendv_recv(c, &iov, 1, buf, sizeof(buf), 5000);
	if (n < (ssize_t)sizeof(*r)) {
		fprintf(stderr, "dlm-rawipc: no answer (%zd)\n", n);
		exit(1);
	}
	return r->hdr.error;
}

int main(int argc, char **argv)
{
	const char *name = getenv("VMFS_DLM_IPC_NAME");
	struct vmfs_ipc_hello hello;
	qb_ipcc_connection_t *c;
	unsigned char req[4096];
	struct vmfs_ipc_warm w;
	size_t size;
	int rc;

	if (argc == 2 && strcmp(argv[1], "sizes") == 0) {
		printf("warm=%zu header=%zu\n", sizeof(struct vmfs_ipc_warm),
		       sizeof(struct qb_ipc_request_header));
		return 0;
	}
	if (argc != 5 || strcmp(argv[1], "warm") != 0) {
		fprintf(stderr, "usage: dlm-rawipc warm SIZE MS FLAGS | sizes\n");
		return 2;
	}
	size = strtoul(argv[2], NULL, 0);
	if (size < sizeof(struct qb_ipc_request_header) || size > sizeof(req)) {
		fprintf(stderr, "dlm-rawipc: SIZE must be %zu..%zu\n",
			sizeof(struct qb_ipc_request_header), sizeof(req));
		return 2;
	}
	c = qb_ipcc_connect(name && *name ? name : VMFS_IPC_DEFAULT_NAME, VMFS_IPC_MAX_MSG);
	if (!c) {
		fprintf(stderr, "dlm-rawipc: cannot connect: %s\n", strerror(errno));
		return 1;
	}
	memset(&hello, 0, sizeof(hello));
	hello.version = VMFS_IPC_VERSION;
	snprintf(hello.program, sizeof(hello.program), "dlm-rawipc");
	rc = call(c, &hello, sizeof(hello), VMFS_IPC_HELLO);
	if (rc != 0) {
		fprintf(stderr, "dlm-rawipc: HELLO refused: %d\n", rc);
		return 1;
	}
	memset(&w, 0, sizeof(w));
	w.ms = (uint32_t)strtoul(argv[3], NULL, 0);
	w.flags = (uint32_t)strtoul(argv[4], NULL, 0);
	memset(req, 0, sizeof(req));
	memcpy(req, &w, size < sizeof(w) ? size : sizeof(w));
	rc = call(c, req, size, VMFS_IPC_WARM);
	printf("error=%d\n", rc);
	qb_ipcc_disconnect(c);
	return 0;
}
