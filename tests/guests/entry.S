/* entry.S — 32-bit protected-mode entry of the test guest.  vmfs-vmm
 * starts every vCPU here in flat protected mode with %esp at its own stack
 * and %esi = vCPU index.  The multiboot header makes the ELF bootable by
 * multiboot loaders too (which enter with %esi undefined: treat as cpu 0
 * and set up a stack). */
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
	xorl %esi, %esi
1:	pushl %esi
	call guest_main
2:	hlt
	jmp 2b

	.section .note.GNU-stack, "", @progbits
