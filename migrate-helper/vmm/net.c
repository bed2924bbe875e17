/* net.c — the VM's NIC identity on the host: its MAC, a tap device on the
 * host's VM bridge (--tap, --bridge), and the RARP announcement after an
 * incoming migration resumed the guest.
 *
 * The test guest has no network driver, so nothing else crosses the tap;
 * it is there so that the VM has a port on the host's bridge as a QEMU VM
 * with -netdev tap has, and the announcement enters the host the way
 * QEMU's announce-self does: as frames sent by the VM's NIC, which the
 * host's bridge forwards to the physical switch (in the test cluster the
 * switch namespace's vmbr, through the host's vm0).  --announce-if IF
 * sends the same frames straight out of IF with a packet socket instead,
 * for a host without a bridge for its VMs.
 */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "vmfs/precopy.h"

/* The announcement's schedule: 5 frames, gaps 50, 150, 250, 350 ms. */
#define ANNOUNCE_FRAMES 5
#define ANNOUNCE_FIRST_MS 50
#define ANNOUNCE_STEP_MS 100

/* Bring the tap up and make it a port of cfg.bridge; ioctls on any
 * socket of this network namespace. */
static int tap_plug(struct vmm *v)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", v->tap_name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		rc = -errno;
		goto out;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		rc = -errno;
		goto out;
	}
	if (v->cfg.bridge) {
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", v->cfg.bridge);
		ifr.ifr_ifindex = (int)if_nametoindex(v->tap_name);
		if (!ifr.ifr_ifindex || ioctl(s, SIOCBRADDIF, &ifr) < 0)
			rc = ifr.ifr_ifindex ? -errno : -ENODEV;
	}
out:
	close(s);
	return rc;
}

int net_init(struct vmm *v)
{
	struct ifreq ifr;
	int rc;

	v->tap_fd = -1;
	if (!v->cfg.tap) {
		if (!v->cfg.bridge)
			return 0;
		log_err("--bridge %s: give the tap to add to it with --tap", v->cfg.bridge);
		return -EINVAL;
	}
	if (strlen(v->cfg.tap) >= IFNAMSIZ) {
		log_err("--tap %s: an interface name has at most %d characters", v->cfg.tap,
			IFNAMSIZ - 1);
		return -EINVAL;
	}
	v->tap_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (v->tap_fd < 0) {
		rc = -errno;
		log_err("--tap %s: /dev/net/tun: %s (needs the tun module and CAP_NET_ADMIN)",
			v->cfg.tap, strerror(-rc));
		return rc;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	/* "%d" in the name: the kernel picks the first free number */
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", v->cfg.tap);
	if (ioctl(v->tap_fd, TUNSETIFF, &ifr) < 0) {
		rc = -errno;
		log_err("--tap %s: cannot create or attach the tap device: %s%s", v->cfg.tap,
			strerror(-rc), rc == -EBUSY ? " (in use by another process: give "
			"a name with %d, such as vmtap%d)" : "");
		goto fail;
	}
	snprintf(v->tap_name, sizeof(v->tap_name), "%s", ifr.ifr_name);
	rc = tap_plug(v);
	if (rc) {
		log_err("tap %s: cannot bring it up%s%s: %s", v->tap_name,
			v->cfg.bridge ? " and add it to bridge " : "",
			v->cfg.bridge ? v->cfg.bridge : "", strerror(-rc));
		goto fail;
	}
	log_info("vm %s: NIC %02x:%02x:%02x:%02x:%02x:%02x on tap %s%s%s", v->cfg.name,
		 v->cfg.mac[0], v->cfg.mac[1], v->cfg.mac[2], v->cfg.mac[3], v->cfg.mac[4],
		 v->cfg.mac[5], v->tap_name, v->cfg.bridge ? ", bridge " : "",
		 v->cfg.bridge ? v->cfg.bridge : "");
	return 0;
fail:
	close(v->tap_fd);
	v->tap_fd = -1;
	return rc;
}

void net_fini(struct vmm *v)
{
	if (v->tap_fd >= 0)
		close(v->tap_fd);	/* a tap we created goes with it */
	v->tap_fd = -1;
}

static void *announce_thread(void *arg)
{
	struct vmm *v = arg;
	int rc;

	if (v->tap_fd >= 0) {
		rc = vmfs_rarp_announce_fd(v->tap_fd, v->cfg.mac, ANNOUNCE_FRAMES,
					   ANNOUNCE_FIRST_MS, ANNOUNCE_STEP_MS);
		if (rc)
			log_warn("vm %s: RARP through tap %s: %s", v->cfg.name, v->tap_name,
				 strerror(-rc));
		else
			log_info("vm %s: announced MAC through tap %s", v->cfg.name, v->tap_name);
	}
	if (v->cfg.announce_if) {
		rc = vmfs_rarp_announce(v->cfg.announce_if, v->cfg.mac, ANNOUNCE_FRAMES,
					ANNOUNCE_FIRST_MS, ANNOUNCE_STEP_MS);
		if (rc)
			log_warn("vm %s: RARP on %s: %s", v->cfg.name, v->cfg.announce_if,
				 strerror(-rc));
		else
			log_info("vm %s: announced MAC on %s", v->cfg.name, v->cfg.announce_if);
	}
	return NULL;
}

void net_announce(struct vmm *v)
{
	pthread_t t;

	if (v->tap_fd < 0 && !v->cfg.announce_if)
		return;
	if (!pthread_create(&t, NULL, announce_thread, v))
		pthread_detach(t);
	else
		log_warn("vm %s: no thread for the RARP announcement", v->cfg.name);
}
