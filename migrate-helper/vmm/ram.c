/* ram.c — guest RAM, the VMM's own dirty log, image loading, boot info. */
#include "config.h"
#include "vmm.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "precopy/sha256.h"

#define GEN_GPA 0x200000u
#define WORK_GPA 0x400000u
#define IMAGE_MAX (GEN_GPA - GUEST_LOAD_GPA)

int ram_init(struct vmm *v)
{
	uint64_t pages = v->cfg.ram_size / GUEST_PAGE;

	if (v->cfg.ram_size < 8u << 20 || v->cfg.ram_size > 3ull << 30 ||
	    v->cfg.ram_size % GUEST_PAGE)
		return -EINVAL;
	v->ram_size = v->cfg.ram_size;
	/* NORESERVE: untouched guest pages cost nothing, on either host. */
	v->ram = mmap(NULL, v->ram_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (v->ram == MAP_FAILED) {
		v->ram = NULL;
		return -errno;
	}
	(void)madvise(v->ram, v->ram_size, MADV_HUGEPAGE);
	v->swdirty = calloc((pages + 63) / 64, sizeof(uint64_t));
	if (!v->swdirty)
		return -ENOMEM;
	return 0;
}

/* Writes the VMM makes into guest RAM (disk reads, thread-accelerator
 * guest) are invisible to KVM's dirty log, so they are logged here, after
 * the write (see invariant 5 in precopy/engine.c). */
void ram_mark_dirty(struct vmm *v, uint64_t gpa, uint64_t len)
{
	uint64_t first, last;

	if (!len || gpa >= v->ram_size || !atomic_load_explicit(&v->logging, memory_order_relaxed))
		return;
	if (len > v->ram_size - gpa)
		len = v->ram_size - gpa;
	first = gpa / GUEST_PAGE;
	last = (gpa + len - 1) / GUEST_PAGE;
	for (uint64_t p = first; p <= last; p++)
		atomic_fetch_or(&v->swdirty[p / 64], 1ull << (p % 64));
}

int ram_log_sync(struct vmm *v, uint64_t *bitmap)
{
	uint64_t words = (v->ram_size / GUEST_PAGE + 63) / 64;
	int rc = 0;

	if (v->accel->log_sync)
		rc = v->accel->log_sync(v, bitmap);
	for (uint64_t w = 0; w < words; w++)
		bitmap[w] |= atomic_exchange(&v->swdirty[w], 0);
	return rc;
}

static int load_elf(struct vmm *v, const uint8_t *img, size_t len)
{
	const Elf32_Ehdr *eh = (const void *)img;

	if (len < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS32 ||
	    eh->e_machine != EM_386 || eh->e_phentsize != sizeof(Elf32_Phdr) ||
	    eh->e_phoff > len || (size_t)eh->e_phnum * sizeof(Elf32_Phdr) > len - eh->e_phoff)
		return -ENOEXEC;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf32_Phdr ph;

		memcpy(&ph, img + eh->e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > len ||
		    ph.p_filesz > len - ph.p_offset || ph.p_paddr < GUEST_LOAD_GPA ||
		    ph.p_memsz > IMAGE_MAX || ph.p_paddr - GUEST_LOAD_GPA > IMAGE_MAX - ph.p_memsz)
			return -ENOEXEC;
		memcpy(v->ram + ph.p_paddr, img + ph.p_offset, ph.p_filesz);
		memset(v->ram + ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
	}
	v->entry = eh->e_entry;
	return 0;
}

/* A multiboot ELF is loaded by its program headers; anything else is a
 * flat binary loaded and entered at 1 MiB. */
int image_load(struct vmm *v)
{
	uint8_t *img = NULL;
	struct stat sb;
	int fd, rc;

	fd = open(v->cfg.image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb)) {
		rc = -errno;
		goto out;
	}
	if (sb.st_size <= 0 || sb.st_size > IMAGE_MAX) {
		rc = -EFBIG;
		goto out;
	}
	img = malloc((size_t)sb.st_size);
	if (!img) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_full(fd, img, (size_t)sb.st_size);
	if (rc)
		goto out;
	if (sb.st_size >= 4 && !memcmp(img, ELFMAG, SELFMAG)) {
		rc = load_elf(v, img, (size_t)sb.st_size);
	} else {
		memcpy(v->ram + GUEST_LOAD_GPA, img, (size_t)sb.st_size);
		v->entry = GUEST_LOAD_GPA;
	}
out:
	free(img);
	close(fd);
	return rc;
}

void bootinfo_setup(struct vmm *v)
{
	struct vmfs_bootinfo *bi = (void *)(v->ram + GUEST_BOOTINFO_GPA);
	uint64_t max_pages = (v->ram_size - WORK_GPA) / GUEST_PAGE;
	uint64_t pages = v->cfg.work_mib ? (uint64_t)v->cfg.work_mib * 256 : max_pages;

	if (pages > max_pages)
		pages = max_pages;
	if (pages > (WORK_GPA - GEN_GPA) / 4)
		pages = (WORK_GPA - GEN_GPA) / 4;
	memset(bi, 0, sizeof(*bi));
	bi->magic = VMFS_BOOTINFO_MAGIC;
	bi->version = 1;
	bi->ram_size = (uint32_t)v->ram_size;
	bi->ncpus = v->ncpus;
	bi->gen_gpa = GEN_GPA;
	bi->work_gpa = WORK_GPA;
	bi->work_pages = (uint32_t)pages;
	bi->dirty_rate_kib = v->cfg.dirty_rate_kib;
	bi->record_interval_ms = v->cfg.record_interval_ms;
	bi->run_id = (uint32_t)getpid() ^ (uint32_t)now_wall_ms();
	bi->flags = v->cfg.prefill ? VMFS_BOOT_PREFILL : 0;
}

void ram_digest(struct vmm *v, char hex[65])
{
	uint8_t d[SHA256_LEN];

	sha256(v->ram, v->ram_size, d);
	for (int i = 0; i < SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}
