/* modes.c — lock modes, their compatibility, and error texts.
 *
 * Compiled into both the core (libdlmcore) and the public client library
 * (libvmfsdlm), so it holds nothing but these pure functions.
 */
#include "config.h"
#include "vmfs/dlm.h"

#include <string.h>
#include <strings.h>

static const char *const mode_names[] = {
	[VMFS_DLM_NL] = "NL", [VMFS_DLM_CR] = "CR", [VMFS_DLM_CW] = "CW",
	[VMFS_DLM_PR] = "PR", [VMFS_DLM_PW] = "PW", [VMFS_DLM_EX] = "EX",
};

#define N_MODES ((int)(sizeof(mode_names) / sizeof(mode_names[0])))

/* The matrix of dlm.h, one bit per mode it is compatible with. */
#define M(m) (1u << (m))
static const unsigned compat_mask[] = {
	[VMFS_DLM_NL] = M(0) | M(1) | M(2) | M(3) | M(4) | M(5),
	[VMFS_DLM_CR] = M(0) | M(1) | M(2) | M(3) | M(4),
	[VMFS_DLM_CW] = M(0) | M(1) | M(2),
	[VMFS_DLM_PR] = M(0) | M(1) | M(3),
	[VMFS_DLM_PW] = M(0) | M(1),
	[VMFS_DLM_EX] = M(0),
};
#undef M

const char *vmfs_dlm_mode_name(int mode)
{
	if (mode < 0 || mode >= N_MODES)
		return "??";
	return mode_names[mode];
}

int vmfs_dlm_mode_parse(const char *name)
{
	if (!name)
		return -1;
	for (int m = 0; m < N_MODES; m++)
		if (strcasecmp(name, mode_names[m]) == 0)
			return m;
	return -1;
}

int vmfs_dlm_modes_compatible(int a, int b)
{
	if (a < 0 || a >= N_MODES || b < 0 || b >= N_MODES)
		return 0;
	return (compat_mask[a] >> b) & 1u;
}

const char *vmfs_dlm_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case VMFS_DLM_EAGAIN:
		return "lock not grantable now (NOQUEUE)";
	case VMFS_DLM_ETIMEDOUT:
		return "lock request timed out and was cancelled";
	case VMFS_DLM_ECANCELED:
		return "lock request cancelled";
	case VMFS_DLM_ESTALE:
		return "lock epoch no longer current";
	case VMFS_DLM_ENOLOCK:
		return "no such lock, or not owned by the caller";
	case VMFS_DLM_ENOQUORUM:
		return "this host is not in a quorate partition";
	case VMFS_DLM_EDAEMON:
		return "connection to vmfs-dlmd lost";
	case VMFS_DLM_EPROTO:
		return "malformed lock manager message";
	case VMFS_DLM_EINCOMPAT:
		return "transfer target mode conflicts with other holders";
	case VMFS_DLM_ELOST:
		return "lock lost";
	default:
		break;
	}
	/* strerror() on a non-errno value still returns a text ("Unknown
	 * error N"); positive values are accepted too for callers that pass
	 * errno itself. */
	return strerror(err < 0 ? -err : err);
}
