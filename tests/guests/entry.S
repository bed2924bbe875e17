/* entry.S — 32-bit protected-mode entry of the test guest.  vmfs-vmm
 * starts every vCPU here in flat protected mode with %esp at its own stack
 * and %esi = vCPU index.  The multiboot header makes the ELF bootable by
 * multiboot loaders too (QEMU -kernel, for the migration benchmark's QEMU
 * baseline), which enter with %esi undefined: treat as cpu 0, set up a
 * stack and our own GDT (the loader's may be anywhere, and the timer
 * interrupt main32.c uses there reloads %cs from it on every iret), and
 * tell main32.c through guest_multiboot / guest_mbi. */
	.section .multiboot, "a"
	.align 4
	.long 0x1BADB002		/* magic */
	.long 0				/* flags */
	.long -0x1BADB002		/* checksum */

	.section .text.entry, "ax"
	.globl _start
_start:
	cmpl $0x2BADB002, %eax		/* entered by a multiboot loader */
	jne 1f
	movl $0x80000, %esp
	movl %ebx, guest_mbi		/* the multiboot information */
	movl $1, guest_multiboot
	lgdt gdt_desc
	ljmp $0x08, $3f
3:	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	xorl %esi, %esi
1:	pushl %esi
	call guest_main
2:	hlt
	jmp 2b

/* IRQ 0 (the PIT, remapped to vector 0x20 by main32.c): only wakes the
 * hlt in main32.c's idle, so it just acknowledges the PIC. */
	.globl guest_irq0
guest_irq0:
	pushl %eax
	movb $0x20, %al
	outb %al, $0x20
	popl %eax
	iret

	.section .rodata
	.align 8
gdt:	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: flat data */
gdt_desc:
	.word 23
	.long gdt

	.section .note.GNU-stack, "", @progbits
