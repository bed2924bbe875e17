/* rarp-check.c — send RARP announcements with vmfs_rarp_announce() on one
 * interface and capture them with AF_PACKET on another (the two ends of a
 * veth pair in a private network namespace; see test-rarp.sh); or, with
 * --tap, create tap NAME, write them into it with vmfs_rarp_announce_fd()
 * and capture them where the host receives them, on NAME.
 * Usage: rarp-check SEND_IF CAPTURE_IF | rarp-check --tap NAME */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"
#include "vmfs/precopy.h"

/* A tap named `name`, up; its fd (IFF_TAP|IFF_NO_PI), or -1. */
static int tap_up(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR), s;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
		perror("tap");
		return -1;
	}
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(s);
	return fd;
}

int main(int argc, char **argv)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(0x8035) };
	uint64_t first = 0, last = 0, deadline;
	int fd, got = 0, bad = 0, rc, tap = -1;
	pid_t pid;

	if (argc != 3)
		return 99;
	if (!strcmp(argv[1], "--tap")) {
		tap = tap_up(argv[2]);
		if (tap < 0)
			return 99;
	}
	fd = socket(AF_PACKET, SOCK_RAW, htons(0x8035));
	if (fd < 0) {
		perror("AF_PACKET");
		return 99;
	}
	sll.sll_ifindex = (int)if_nametoindex(argv[2]);
	if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		perror(argv[2]);
		return 99;
	}
	pid = fork();
	if (pid == 0) {
		rc = tap >= 0 ? vmfs_rarp_announce_fd(tap, mac, 5, 50, 100) :
				vmfs_rarp_announce(argv[1], mac, 5, 50, 100);
		if (rc)
			fprintf(stderr, "announce: %s\n", strerror(-rc));
		_exit(rc ? 1 : 0);
	}
	deadline = now_mono_ms() + 10000;
	while (got < 5 && now_mono_ms() < deadline) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint8_t f[1600];
		ssize_t n;

		if (poll(&p, 1, 500) <= 0)
			continue;
		n = recv(fd, f, sizeof(f), 0);
		if (n < 42)
			continue;
		if (memcmp(f, "\xff\xff\xff\xff\xff\xff", 6) || memcmp(f + 6, mac, 6) ||
		    f[12] != 0x80 || f[13] != 0x35 || f[20] != 0 || f[21] != 3 ||
		    memcmp(f + 22, mac, 6) || memcmp(f + 32, mac, 6)) {
			bad++;
			continue;
		}
		if (!got)
			first = now_mono_ms();
		last = now_mono_ms();
		got++;
	}
	printf("captured %d RARP frames from 52:54:00:ab:cd:ef over %llu ms, %d malformed\n",
	       got, (unsigned long long)(last - first), bad);
	return got == 5 && !bad ? 0 : 1;
}
