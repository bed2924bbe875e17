/* thread.c — the "thread" accelerator, for hosts without /dev/kvm.
 *
 * The guest workload (tests/guests/guest-core.c) is built a second time as
 * guest-native.so.  Each vCPU is a host thread that calls its step function
 * against the same guest RAM, devices and clock as under KVM; port I/O
 * becomes a call into devices.c, and the guest marks what it wrote (there
 * is no hardware dirty log).  A vCPU parks only between steps, and the
 * workload keeps all its state in guest RAM, so there are no registers to
 * migrate: migrating RAM and device state migrates the guest.  It exercises
 * everything of a migration except the KVM vCPU code itself.
 */
#include "config.h"
#include "vmm.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct thread_priv {
	void *dl;
	vmfs_guest_init_fn init;
	vmfs_guest_step_fn step;
	vmfs_guest_ap_step_fn ap_step;
	struct vmfs_guest_env env;
};

static void t_out8(void *o, uint16_t port, uint8_t val)
{
	dev_out(o, port, 1, val);
}

static uint8_t t_in8(void *o, uint16_t port)
{
	return (uint8_t)dev_in(o, port, 1);
}

static void t_out32(void *o, uint16_t port, uint32_t val)
{
	dev_out(o, port, 4, val);
}

static uint32_t t_in32(void *o, uint16_t port)
{
	return dev_in(o, port, 4);
}

static void t_dirty(void *o, uint32_t gpa, uint32_t len)
{
	ram_mark_dirty(o, gpa, len);
}

static int thread_init(struct vmm *v)
{
	struct thread_priv *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	v->accel_priv = t;
	if (!v->cfg.native_guest) {
		log_err("the thread accelerator needs --native-guest FILE.so");
		return -EINVAL;
	}
	t->dl = dlopen(v->cfg.native_guest, RTLD_NOW | RTLD_LOCAL);
	if (!t->dl) {
		log_err("%s: %s", v->cfg.native_guest, dlerror());
		return -ENOEXEC;
	}
	*(void **)&t->init = dlsym(t->dl, GUEST_NATIVE_INIT);
	*(void **)&t->step = dlsym(t->dl, GUEST_NATIVE_STEP);
	*(void **)&t->ap_step = dlsym(t->dl, GUEST_NATIVE_AP_STEP);
	if (!t->init || !t->step || !t->ap_step)
		return -ENOEXEC;
	t->env.base = (uintptr_t)v->ram;
	t->env.opaque = v;
	t->env.out8 = t_out8;
	t->env.in8 = t_in8;
	t->env.out32 = t_out32;
	t->env.in32 = t_in32;
	t->env.dirty = t_dirty;
	return 0;
}

static void *thread_vcpu(void *arg)
{
	struct vcpu *c = arg;
	struct vmm *v = c->vm;
	struct thread_priv *t = v->accel_priv;
	bool booted = false;

	for (;;) {
		if (!atomic_load(&v->run_enabled) || atomic_load(&v->quit)) {
			if (!vcpu_park(c))
				break;
			continue;
		}
		if (c->idx == 0) {
			/* init is a no-op when the state came with the RAM. */
			if (!booted)
				t->init(&t->env);
			booted = true;
			t->step(&t->env);
		} else {
			t->ap_step(&t->env, c->idx);
		}
		vcpu_throttle(c);
	}
	return NULL;
}

static void thread_kick(struct vcpu *c)
{
	(void)c;	/* steps are short; the thread sees run_enabled */
}

static int thread_save_cpu(struct vcpu *c, void *buf)
{
	(void)c;
	(void)buf;
	return 0;
}

static int thread_load_cpu(struct vcpu *c, const void *buf)
{
	(void)c;
	(void)buf;
	return 0;
}

static void thread_destroy(struct vmm *v)
{
	struct thread_priv *t = v->accel_priv;

	/* The module stays loaded: vCPU threads may still be parked in it. */
	free(t);
	v->accel_priv = NULL;
}

const struct accel_ops accel_thread = {
	.name = "thread",
	.init = thread_init,
	.vcpu_thread = thread_vcpu,
	.kick = thread_kick,
	.cpu_state_size = 0,
	.save_cpu = thread_save_cpu,
	.load_cpu = thread_load_cpu,
	.destroy = thread_destroy,
};
