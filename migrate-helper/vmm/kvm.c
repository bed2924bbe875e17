/* kvm.c — the KVM accelerator: one memory slot, vCPUs started in flat
 * 32-bit protected mode, port I/O exits to devices.c, dirty logging with
 * KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG.
 *
 * No in-kernel irqchip: the guest uses no interrupts, so every vCPU can be
 * started directly at the entry point with its own stack (%esp) and index
 * (%esi) instead of going through INIT/SIPI.
 */
#include "config.h"
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

#define KICK_SIGNAL SIGUSR1
#define TSS_GPA 0xfffbd000u

struct kvm_priv {
	int kvm_fd;
	int vm_fd;
	bool logging;			/* slot flags; migration thread only */
};

/* The kvm_run of the vCPU this thread runs, for the kick handler. */
static __thread struct kvm_run *this_run;

static void kick_handler(int sig)
{
	(void)sig;
	/* KVM_RUN returns -EINTR at once instead of entering the guest. */
	if (this_run)
		this_run->immediate_exit = 1;
}

static int set_slot(struct vmm *v, bool log)
{
	struct kvm_priv *k = v->accel_priv;
	struct kvm_userspace_memory_region r = {
		.slot = 0,
		.flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = 0,
		.memory_size = v->ram_size,
		.userspace_addr = (uintptr_t)v->ram,
	};

	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	k->logging = log;
	return 0;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

static int vcpu_setup(struct vmm *v, struct vcpu *c)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	seg_flat(&sregs.cs, 0x08, 0xb);		/* code, execute/read, accessed */
	seg_flat(&sregs.ds, 0x10, 0x3);		/* data, read/write, accessed */
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	/* PE and ET; clear the reset value's CD/NW so caching is on.
	 * Paging stays off. */
	sregs.cr0 = 0x11;
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = v->entry;
	regs.rsp = GUEST_STACK_TOP - c->idx * GUEST_STACK_SIZE;
	regs.rsi = c->idx;
	if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

static int kvm_init(struct vmm *v)
{
	struct kvm_priv *k = calloc(1, sizeof(*k));
	struct sigaction sa = { .sa_handler = kick_handler };
	int rc, mmap_size;

	if (!k)
		return -ENOMEM;
	v->accel_priv = k;
	k->vm_fd = -1;
	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm_fd < 0)
		return -errno;
	if (ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return -ENOTSUP;
	k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0)
		return -errno;
	/* Intel VMX needs a TSS area below 4 GiB outside RAM; harmless on AMD. */
	(void)ioctl(k->vm_fd, KVM_SET_TSS_ADDR, TSS_GPA);
	rc = set_slot(v, false);
	if (rc)
		return rc;
	mmap_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0)
		return -EIO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(KICK_SIGNAL, &sa, NULL))
		return -errno;
	for (unsigned i = 0; i < v->ncpus; i++) {
		struct vcpu *c = &v->cpus[i];

		c->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, i);
		if (c->fd < 0)
			return -errno;
		c->run_size = (size_t)mmap_size;
		c->run = mmap(NULL, c->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			return -errno;
		}
		rc = vcpu_setup(v, c);
		if (rc)
			return rc;
	}
	return 0;
}

static void handle_io(struct vcpu *c, struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		uint32_t val = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, run->io.size);
			dev_out(c->vm, run->io.port, run->io.size, val);
		} else {
			val = dev_in(c->vm, run->io.port, run->io.size);
			memcpy(data, &val, run->io.size);
		}
	}
}

/* Before the vCPU parks (and its registers may be saved), finish the
 * instruction whose I/O exit was just handled: KVM completes it on the
 * next KVM_RUN, which immediate_exit makes return without running on. */
static void complete_pending(struct vcpu *c, struct kvm_run *run)
{
	run->immediate_exit = 1;
	(void)ioctl(c->fd, KVM_RUN, 0);
	run->immediate_exit = 0;
}

static void *kvm_vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vmm *v = c->vm;
	struct kvm_run *run = c->run;
	sigset_t set;

	this_run = run;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		if (!atomic_load(&v->run_enabled) || atomic_load(&v->quit)) {
			complete_pending(c, run);
			if (!vcpu_park(c))
				break;
			continue;
		}
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				run->immediate_exit = 0;
				continue;
			}
			log_err("vm %s: cpu %u: KVM_RUN: %s", v->cfg.name, c->idx,
				strerror(errno));
			vm_set_state(v, VM_CRASHED);
			vcpu_gone(c);
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(c, run);
			break;
		case KVM_EXIT_HLT: {
			/* No interrupts will come: treat as a short idle. */
			dev_out(v, GUEST_PORT_IDLE, 4, 1000);
			break;
		}
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			break;
		case KVM_EXIT_INTR:
			break;
		default:
			log_err("vm %s: cpu %u: unhandled exit %u (shutdown/fail entry/internal error)",
				v->cfg.name, c->idx, run->exit_reason);
			vm_set_state(v, VM_CRASHED);
			vcpu_gone(c);
			return NULL;
		}
		vcpu_throttle(c);
	}
	return NULL;
}

static void kvm_kick(struct vcpu *c)
{
	if (c->thread_started)
		pthread_kill(c->thread, KICK_SIGNAL);
}

static int kvm_log_start(struct vmm *v)
{
	return set_slot(v, true);
}

static void kvm_log_stop(struct vmm *v)
{
	if (set_slot(v, false))
		log_warn("vm %s: could not turn dirty logging off", v->cfg.name);
}

static int kvm_log_sync(struct vmm *v, uint64_t *bitmap)
{
	struct kvm_priv *k = v->accel_priv;
	uint64_t words = (v->ram_size / GUEST_PAGE + 63) / 64;
	uint64_t *tmp;
	struct kvm_dirty_log log = { .slot = 0 };
	int rc = 0;

	if (!k->logging)
		return 0;
	tmp = calloc(words, sizeof(*tmp));
	if (!tmp)
		return -ENOMEM;
	log.dirty_bitmap = tmp;
	/* Without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT this reads and clears, and
	 * write-protects the pages again so later writes are logged anew. */
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
		rc = -errno;
		goto out;
	}
	for (uint64_t w = 0; w < words; w++)
		bitmap[w] |= tmp[w];
out:
	free(tmp);
	return rc;
}

struct kvm_cpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
};

static int kvm_save_cpu(struct vcpu *c, void *buf)
{
	struct kvm_cpu_state *s = buf;

	if (ioctl(c->fd, KVM_GET_REGS, &s->regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_FPU, &s->fpu) < 0)
		return -errno;
	return 0;
}

static int kvm_load_cpu(struct vcpu *c, const void *buf)
{
	const struct kvm_cpu_state *s = buf;

	/* Segments and control registers first: KVM_SET_REGS checks rflags
	 * against the mode they set. */
	if (ioctl(c->fd, KVM_SET_SREGS, &s->sregs) < 0 ||
	    ioctl(c->fd, KVM_SET_REGS, &s->regs) < 0 ||
	    ioctl(c->fd, KVM_SET_FPU, &s->fpu) < 0)
		return -errno;
	return 0;
}

static void kvm_destroy(struct vmm *v)
{
	struct kvm_priv *k = v->accel_priv;

	for (unsigned i = 0; v->cpus && i < v->ncpus; i++) {
		if (v->cpus[i].run)
			munmap(v->cpus[i].run, v->cpus[i].run_size);
		if (v->cpus[i].fd >= 0)
			close(v->cpus[i].fd);
	}
	if (k) {
		if (k->vm_fd >= 0)
			close(k->vm_fd);
		if (k->kvm_fd >= 0)
			close(k->kvm_fd);
		free(k);
	}
	v->accel_priv = NULL;
}

const struct accel_ops accel_kvm = {
	.name = "kvm",
	.init = kvm_init,
	.vcpu_thread = kvm_vcpu_thread,
	.kick = kvm_kick,
	.log_start = kvm_log_start,
	.log_stop = kvm_log_stop,
	.log_sync = kvm_log_sync,
	.cpu_state_size = sizeof(struct kvm_cpu_state),
	.save_cpu = kvm_save_cpu,
	.load_cpu = kvm_load_cpu,
	.destroy = kvm_destroy,
};
