/* fake-dlmd.h — a scripted stand-in for vmfs-dlmd in unit tests of libvmfsdlm.
 *
 * fake_dlmd_start() forks a child that serves dlm/ipc_proto.h over libqb
 * IPC under a unique service name (exported as VMFS_DLM_IPC_NAME for the
 * parent) and hands every request to the test's msg() function, which
 * answers with fake_dlmd_respond() and fake_dlmd_event().  The child
 * serves one client and exits when it disconnects (alarm() bounds it).
 */
#ifndef VMFS_TESTS_FAKE_DLMD_H
#define VMFS_TESTS_FAKE_DLMD_H

#include <stdint.h>
#include <sys/types.h>

#include <qb/qbipcs.h>

#include "dlm/ipc_proto.h"

typedef int32_t (*fake_dlmd_msg_fn)(qb_ipcs_connection_t *c, void *data, size_t size);

/* 0 with *pid set; otherwise the test's exit code (77 no IPC, 99 setup). */
int fake_dlmd_start(const char *prefix, fake_dlmd_msg_fn msg, pid_t *pid);
/* Wait for the child to exit (after the client closed its handle). */
void fake_dlmd_wait(pid_t pid);

/* Response to the current request: {hdr.id = id, error}, nodeid 7,
 * client 3, name "fakehost", then text (may be NULL) for QUERY. */
void fake_dlmd_respond(qb_ipcs_connection_t *c, int id, int error, const char *text);
/* One well-formed event; lvb is filled with `lvb_byte`. */
void fake_dlmd_event(qb_ipcs_connection_t *c, int id, uint32_t req_id, int err,
		     uint64_t lkid, int mode, int reason, uint32_t nodeid);
void fake_dlmd_event_lvb(qb_ipcs_connection_t *c, int id, uint32_t req_id, int err,
			 uint64_t lkid, uint64_t epoch, int mode, const uint8_t *lvb);
/* Hang up on the client, as a crashing daemon would. */
void fake_dlmd_disconnect(qb_ipcs_connection_t *c);

/* The tests' bookkeeping: print "ok"/"FAIL" and the message; count failures. */
void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int check_failures(void);

#endif
