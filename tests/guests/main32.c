/* main32.c — the freestanding 32-bit guest: real port I/O around the
 * shared workload.  entry.S calls guest_main(cpu) on each vCPU's stack.
 *
 * Under vmfs-vmm the VMM fills the boot-info block and serves the clock and
 * idle ports.  Booted by a multiboot loader instead (QEMU -kernel, the
 * migration benchmark's QEMU baseline, see tests/migrate/bench-migrate.sh)
 * there are no such ports, so this file stands in for them with PC
 * hardware: the clock is the ACPI PM timer (3.579545 MHz, on QEMU's
 * virtual clock, so it stops while the VM is stopped and continues after a
 * migration), idle is hlt woken by the PIT at 1 kHz.  The boot-info block
 * is then whatever the loader put at GUEST_BOOTINFO_GPA (QEMU:
 * -device loader,file=BLOB,addr=0x1000,force-raw=on); without a valid one
 * the guest stays idle. */
#include "guest-core.h"

void guest_main(uint32_t cpu);
void guest_irq0(void);			/* entry.S */

/* Set by entry.S on a multiboot entry; in guest RAM, so they migrate. */
uint32_t guest_multiboot;
uint32_t guest_mbi;

#define PMTMR_HZ 3579545u
#define PIT_HZ 1193182u
#define TICK_HZ 1000u

static uint16_t pmtmr_port;		/* 0: no PM timer found */
static uint32_t pm_last, pm_acc;	/* last reading, ticks into this second */
static uint32_t pm_secs_ms;		/* whole seconds so far, in ms */

static inline void outb_(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl_(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl_(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static uint32_t pci_read(uint32_t dev, uint32_t fn, uint32_t reg)
{
	outl_(0xcf8, 0x80000000u | dev << 11 | fn << 8 | reg);
	return inl_(0xcfc);
}

/* The PM timer's port: PMBASE + 8 of the PIIX4 (QEMU "pc", 00:01.3) or
 * the ICH9 (QEMU "q35", 00:1f.0), as the BIOS programmed it. */
static uint16_t pmtmr_find(void)
{
	uint32_t base = 0;

	if (pci_read(1, 3, 0) == 0x71138086u)
		base = pci_read(1, 3, 0x40) & 0xffc0u;
	else if (pci_read(0x1f, 0, 0) == 0x29188086u)
		base = pci_read(0x1f, 0, 0x40) & 0xff80u;
	return base ? (uint16_t)(base + 8) : 0;
}

/* Milliseconds since boot from the 24-bit PM timer.  Called at least
 * every millisecond or so (each step, each idle wake), far inside the
 * counter's 4.7 s wrap. */
static uint32_t pm_now_ms(void)
{
	uint32_t cur;

	if (!pmtmr_port)
		return 0;
	cur = inl_(pmtmr_port) & 0xffffffu;
	pm_acc += (cur - pm_last) & 0xffffffu;
	pm_last = cur;
	while (pm_acc >= PMTMR_HZ) {
		pm_acc -= PMTMR_HZ;
		pm_secs_ms += 1000;
	}
	/* pm_acc < PMTMR_HZ, so pm_acc * 1000 fits in 32 bits */
	return pm_secs_ms + pm_acc * 1000u / PMTMR_HZ;
}

/* Interrupt gate for vector 0x20 in a 256-entry IDT; the PIC remapped to
 * 0x20/0x28 with only IRQ 0 unmasked; the PIT at TICK_HZ. */
static uint32_t idt[256 * 2] __attribute__((aligned(8)));

static void timer_setup(void)
{
	uint32_t h = (uint32_t)guest_irq0;
	struct __attribute__((packed)) { uint16_t limit; uint32_t base; } d = {
		sizeof(idt) - 1, (uint32_t)idt,
	};

	idt[0x20 * 2] = 0x08u << 16 | (h & 0xffffu);
	idt[0x20 * 2 + 1] = (h & 0xffff0000u) | 0x8e00u;	/* present, 32-bit int gate */
	__asm__ volatile("lidt %0" : : "m"(d));
	outb_(0x20, 0x11); outb_(0xa0, 0x11);		/* ICW1: init, ICW4 follows */
	outb_(0x21, 0x20); outb_(0xa1, 0x28);		/* ICW2: vector bases */
	outb_(0x21, 0x04); outb_(0xa1, 0x02);		/* ICW3: cascade on IRQ 2 */
	outb_(0x21, 0x01); outb_(0xa1, 0x01);		/* ICW4: 8086 mode */
	outb_(0x21, 0xfe); outb_(0xa1, 0xff);		/* mask all but IRQ 0 */
	outb_(0x43, 0x34);				/* PIT ch 0, lo/hi, rate gen */
	outb_(0x40, (PIT_HZ / TICK_HZ) & 0xff);
	outb_(0x40, (PIT_HZ / TICK_HZ) >> 8);
}

/* The vmfs-vmm idle port: sleep `us` microseconds (whole PIT ticks). */
static void mb_idle(uint32_t us)
{
	uint32_t start = pm_now_ms(), ms = us / 1000u ? us / 1000u : 1;

	do
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	while (pmtmr_port && pm_now_ms() - start < ms);
}

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
	if (guest_multiboot && port == GUEST_PORT_IDLE) {
		mb_idle(v);
		return;
	}
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static uint32_t in32(void *o, uint16_t port)
{
	uint32_t v;

	(void)o;
	if (guest_multiboot && port == GUEST_PORT_CLOCK)
		return pm_now_ms();
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static const struct vmfs_guest_env env = {
	.base = 0, .out8 = out8, .in8 = in8, .out32 = out32, .in32 = in32,
};

static void say(const char *s)
{
	while (*s)
		out8(0, GUEST_PORT_COM1, (uint8_t)*s++);
}

static void kv_(const char *k, uint32_t v)
{
	char b[11];
	int n = 0;

	say(k);
	say("=");
	do {
		b[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		out8(0, GUEST_PORT_COM1, (uint8_t)b[--n]);
}

/* A boot-info block the workload can trust: magic, version, and a work
 * area inside the RAM the loader reported (multiboot mem_upper, KiB above
 * 1 MiB) and above the image.  Anything else is cleared, which leaves the guest idle. */
static void mb_bootinfo_check(void)
{
	volatile struct vmfs_bootinfo *bi = (void *)GUEST_BOOTINFO_GPA;
	const volatile uint32_t *mbi = (const void *)guest_mbi;
	/* Rounded up to the MiB: SeaBIOS keeps the top 128 KiB of RAM out of
	 * mem_upper (its tables), which this guest never reads: it can be a
	 * work area like the rest, as under vmfs-vmm. */
	uint32_t ram_kib = (mbi && (mbi[0] & 1)) ? (1024 + mbi[2] + 1023) & ~1023u : 0;
	uint32_t work_end_kib = bi->work_gpa / 1024 + bi->work_pages * (GUEST_PAGE / 1024);
	uint32_t gen_end_kib = bi->gen_gpa / 1024 + bi->work_pages / 256 + 1;

	if (bi->magic == VMFS_BOOTINFO_MAGIC && bi->version == 1 && ram_kib &&
	    bi->work_pages < (1u << 20) && work_end_kib <= ram_kib && gen_end_kib <= ram_kib &&
	    bi->gen_gpa >= 0x200000u && bi->work_gpa >= 0x200000u && bi->ncpus <= 1)
		return;
	if (bi->magic == VMFS_BOOTINFO_MAGIC) {
		say("vmfs-guest: boot-info block rejected (layout outside RAM)");
		kv_(" ram_kib", ram_kib);
		kv_(" work_end_kib", work_end_kib);
		say("\n");
	}
	for (uint32_t i = 0; i < sizeof(*bi) / 4; i++)
		((volatile uint32_t *)bi)[i] = 0;
}

void guest_main(uint32_t cpu)
{
	if (cpu == 0) {
		if (guest_multiboot) {
			mb_bootinfo_check();
			pmtmr_port = pmtmr_find();
			if (!pmtmr_port)
				say("vmfs-guest: no ACPI PM timer: no clock, no pacing\n");
			pm_last = pmtmr_port ? inl_(pmtmr_port) & 0xffffffu : 0;
			timer_setup();
		}
		vmfs_guest_init(&env);
		for (;;)
			vmfs_guest_step(&env);
	}
	for (;;)
		vmfs_guest_ap_step(&env, cpu);
}
