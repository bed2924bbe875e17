/* rarp.c — announce a VM's new location after migration.
 *
 * Switches learn which port a MAC address sits behind from the source
 * addresses of frames.  A guest that just moved may stay silent, so the
 * destination sends on its behalf RARP "reverse request" frames whose
 * source MAC is the VM's MAC, broadcast, a few times over about a second
 * (the schedule QEMU's announce-self uses: gaps of 50, 150, 250, ... ms).
 */
#include "config.h"

#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/precopy.h"

#define ETH_P_RARP_ 0x8035

void vmfs_rarp_frame(uint8_t f[60], const uint8_t mac[6])
{
	memset(f, 0, 60);		/* minimum Ethernet frame, zero padded */
	memset(f, 0xff, 6);		/* broadcast */
	memcpy(f + 6, mac, 6);
	f[12] = ETH_P_RARP_ >> 8;
	f[13] = ETH_P_RARP_ & 0xff;
	f[14] = 0x00; f[15] = 0x01;	/* hardware type Ethernet */
	f[16] = 0x08; f[17] = 0x00;	/* protocol IPv4 */
	f[18] = 6;			/* hardware address length */
	f[19] = 4;			/* protocol address length */
	f[20] = 0x00; f[21] = 0x03;	/* opcode 3: reverse request */
	memcpy(f + 22, mac, 6);		/* sender MAC; sender IP 0 */
	memcpy(f + 32, mac, 6);		/* target MAC; target IP 0 */
}

/* The schedule: `count` frames, gaps growing from first_ms by step_ms.
 * `to` NULL: write() on fd (a tap: the frame comes from the guest's NIC). */
static int announce(int fd, const struct sockaddr_ll *to, const uint8_t mac[6],
		    unsigned count, unsigned first_ms, unsigned step_ms)
{
	uint8_t frame[60];
	unsigned gap = first_ms;
	ssize_t n;

	vmfs_rarp_frame(frame, mac);
	for (unsigned i = 0; i < count; i++) {
		n = to ? sendto(fd, frame, sizeof(frame), 0, (const struct sockaddr *)to,
				sizeof(*to)) :
			 write(fd, frame, sizeof(frame));
		if (n != (ssize_t)sizeof(frame))
			return n < 0 ? -errno : -EIO;
		if (i + 1 < count) {
			struct timespec ts = { .tv_sec = gap / 1000,
					       .tv_nsec = (long)(gap % 1000) * 1000000 };

			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
			gap += step_ms;
		}
	}
	return 0;
}

int vmfs_rarp_announce(const char *ifname, const uint8_t mac[6], unsigned count,
		       unsigned first_ms, unsigned step_ms)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_halen = 6 };
	int fd, rc;

	if (!ifname || !*ifname || !count)
		return -EINVAL;
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll.sll_ifindex)
		return -ENODEV;
	sll.sll_protocol = htons(ETH_P_RARP_);
	memset(sll.sll_addr, 0xff, 6);
	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_RARP_));
	if (fd < 0)
		return -errno;
	rc = announce(fd, &sll, mac, count, first_ms, step_ms);
	close(fd);
	return rc;
}

int vmfs_rarp_announce_fd(int fd, const uint8_t mac[6], unsigned count, unsigned first_ms,
			  unsigned step_ms)
{
	if (fd < 0 || !count)
		return -EINVAL;
	return announce(fd, NULL, mac, count, first_ms, step_ms);
}
