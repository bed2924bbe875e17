/* devices.c — the guest's hardware: serial console, idle port, clock,
 * paravirtual block device (protocol in guest-abi.h). */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "vmfs/fs.h"
#include "log.h"

int devices_init(struct vmm *v)
{
	struct stat sb;

	v->serial_fd = -1;
	v->disk_fd = -1;
	if (v->cfg.serial_log) {
		v->serial_fd = open(v->cfg.serial_log,
				    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (v->serial_fd < 0)
			return -errno;
	}
	if (v->cfg.disk) {
		/* O_DIRECT: no host page cache between this host and the
		 * others sharing the disk (DESIGN.md decision 6). */
		v->disk_fd = open(v->cfg.disk, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (v->disk_fd < 0 && errno == EINVAL) {
			log_warn("disk %s: O_DIRECT not supported here, using buffered I/O",
				 v->cfg.disk);
			v->disk_fd = open(v->cfg.disk, O_RDWR | O_CLOEXEC);
		}
		if (v->disk_fd < 0)
			return -errno;
		if (fstat(v->disk_fd, &sb))
			return -errno;
		v->disk_blocks = (uint64_t)sb.st_size / GUEST_BLK_SIZE;
	}
	atomic_store(&v->clock_base_ms, now_mono_ms());
	return 0;
}

void devices_fini(struct vmm *v)
{
	if (v->serial_fd >= 0)
		close(v->serial_fd);
	if (v->disk_fd >= 0)
		close(v->disk_fd);
	v->serial_fd = v->disk_fd = -1;
}

int dev_disk_drain(struct vmm *v)
{
	if (v->disk_fd < 0 || !ioctl(v->disk_fd, VMFS_IOC_DRAIN))
		return 0;
	if (errno == ENOTTY || errno == ENOSYS)
		return 0;	/* not on vmfs: an answered write is on the disk */
	log_err("disk %s: a write the guest saw complete failed: %s", v->cfg.disk,
		strerror(errno));
	return -errno;
}

uint32_t guest_clock_ms(struct vmm *v)
{
	return (uint32_t)(now_mono_ms() - atomic_load(&v->clock_base_ms));
}

void guest_clock_set(struct vmm *v, uint32_t ms)
{
	atomic_store(&v->clock_base_ms, now_mono_ms() - ms);
}

/* dev_lock held. */
static void serial_put(struct vmm *v, uint8_t c)
{
	v->serial_line[v->serial_len++] = (char)c;
	if (c != '\n' && v->serial_len < sizeof(v->serial_line))
		return;
	if (v->serial_fd >= 0) {
		int rc = write_full(v->serial_fd, v->serial_line, v->serial_len);

		if (rc)
			log_warn("serial log: %s", strerror(-rc));
	}
	if (c == '\n')
		v->serial_lines++;
	v->serial_len = 0;
}

/* dev_lock held.  Synchronous: the guest's OUT retires after the I/O. */
static uint32_t blk_command(struct vmm *v, struct blk_request rq)
{
	off_t off = (off_t)rq.block * GUEST_BLK_SIZE;
	int rc;

	if (v->disk_fd < 0)
		return ENODEV;
	if (rq.cmd == GUEST_BLK_FLUSH)
		return fdatasync(v->disk_fd) ? (uint32_t)errno : 0;
	if (rq.block >= v->disk_blocks || rq.buf % GUEST_BLK_SIZE ||
	    (uint64_t)rq.buf + GUEST_BLK_SIZE > v->ram_size)
		return EINVAL;
	if (rq.cmd == GUEST_BLK_WRITE) {
		rc = pwrite_full(v->disk_fd, v->ram + rq.buf, GUEST_BLK_SIZE, off);
	} else if (rq.cmd == GUEST_BLK_READ) {
		rc = pread_full(v->disk_fd, v->ram + rq.buf, GUEST_BLK_SIZE, off);
		ram_mark_dirty(v, rq.buf, GUEST_BLK_SIZE);
	} else {
		return EINVAL;
	}
	return rc ? (uint32_t)-rc : 0;
}

/* dev_lock held: the guest's OUT to the command port. */
static void blk_issue(struct vmm *v, uint32_t cmd)
{
	struct blk_request rq = { .cmd = cmd, .block = v->blk_block, .buf = v->blk_buf };

	if (!v->blk_held) {
		v->blk_status = blk_command(v, rq);
		return;
	}
	if (v->blk_waiting)
		return;		/* the guest did not wait: guest-abi.h */
	v->blk_pending = rq;
	v->blk_waiting = true;
	v->blk_status = GUEST_BLK_PENDING;
}

void dev_disk_hold(struct vmm *v)
{
	pthread_mutex_lock(&v->dev_lock);
	v->blk_held = true;
	pthread_mutex_unlock(&v->dev_lock);
}

void dev_disk_release(struct vmm *v)
{
	pthread_mutex_lock(&v->dev_lock);
	v->blk_held = false;
	if (v->blk_waiting) {
		v->blk_status = blk_command(v, v->blk_pending);
		v->blk_waiting = false;
		log_info("vm %s: ran the disk command held during the handoff (%s block %u): %s",
			 v->cfg.name, v->blk_pending.cmd == GUEST_BLK_WRITE ? "write" :
			 v->blk_pending.cmd == GUEST_BLK_READ ? "read" : "other",
			 v->blk_pending.block, v->blk_status ? strerror((int)v->blk_status) : "ok");
	}
	pthread_mutex_unlock(&v->dev_lock);
}

uint32_t dev_in(struct vmm *v, uint16_t port, unsigned size)
{
	uint32_t val = 0xffffffffu;

	switch (port) {
	case GUEST_PORT_COM1_LSR:
		return 0x60;
	case GUEST_PORT_CLOCK:
		return guest_clock_ms(v);
	case GUEST_PORT_BLK_CMD:
		pthread_mutex_lock(&v->dev_lock);
		val = v->blk_status;
		pthread_mutex_unlock(&v->dev_lock);
		return val;
	case GUEST_PORT_BLK_CAP:
		return v->disk_blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)v->disk_blocks;
	default:
		return size == 1 ? 0xff : val;
	}
}

void dev_out(struct vmm *v, uint16_t port, unsigned size, uint32_t val)
{
	switch (port) {
	case GUEST_PORT_COM1:
		pthread_mutex_lock(&v->dev_lock);
		serial_put(v, (uint8_t)val);
		pthread_mutex_unlock(&v->dev_lock);
		break;
	case GUEST_PORT_IDLE: {
		uint32_t us = val > 20000 ? 20000 : val;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)us * 1000 };

		nanosleep(&ts, NULL);
		break;
	}
	case GUEST_PORT_STATUS:
		pthread_mutex_lock(&v->dev_lock);
		v->guest_status = val;
		pthread_mutex_unlock(&v->dev_lock);
		if (val == GUEST_STATUS_VERIFY_FAIL)
			log_err("vm %s: guest reports a memory verification failure",
				v->cfg.name);
		break;
	case GUEST_PORT_BLK_BLOCK:
		pthread_mutex_lock(&v->dev_lock);
		v->blk_block = val;
		pthread_mutex_unlock(&v->dev_lock);
		break;
	case GUEST_PORT_BLK_BUF:
		pthread_mutex_lock(&v->dev_lock);
		v->blk_buf = val;
		pthread_mutex_unlock(&v->dev_lock);
		break;
	case GUEST_PORT_BLK_CMD:
		pthread_mutex_lock(&v->dev_lock);
		blk_issue(v, val);
		pthread_mutex_unlock(&v->dev_lock);
		break;
	default:
		(void)size;
		break;
	}
}
