/* main32.c — the freestanding 32-bit guest: real port I/O around the
 * shared workload.  entry.S calls guest_main(cpu) on each vCPU's stack. */
#include "guest-core.h"

void guest_main(uint32_t cpu);

static void out8(void *o, uint16_t port, uint8_t v)
{
	(void)o;
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static uint8_t in8(void *o, uint16_t port)
{
	uint8_t v;

	(void)o;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void out32(void *o, uint16_t port, uint32_t v)
{
	(void)o;
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static uint32_t in32(void *o, uint16_t port)
{
	uint32_t v;

	(void)o;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static const struct vmfs_guest_env env = {
	.base = 0, .out8 = out8, .in8 = in8, .out32 = out32, .in32 = in32,
};

void guest_main(uint32_t cpu)
{
	if (cpu == 0) {
		vmfs_guest_init(&env);
		for (;;)
			vmfs_guest_step(&env);
	}
	for (;;)
		vmfs_guest_ap_step(&env, cpu);
}
