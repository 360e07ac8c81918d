/* kvmbox test guest, 64-bit entry: kvmbox's plain-ELF64 boot path enters
 * _start in long mode (identity-mapped 4 GiB, CS=0x10, interrupts off,
 * RSI = boot_params). No stack is set up for us.
 *
 * Also here: the interrupt stubs and the real-mode AP trampoline, which
 * main.c copies to TRAMP_BASE (its SIPI vector is TRAMP_BASE >> 12). */

#define TRAMP_BASE 0x3000
#define STACK_SIZE 16384
#define MAX_APS    32

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA   0x18

    .section .text.start, "ax"
    .code64
    .globl _start
_start:
    cli
    cld
    movq    %rsi, %r12                  /* boot_params */
    /* Zero .bss (the loader should have, but a reset reloads the image
     * and we do not want to depend on it). Stacks live in .stack. */
    leaq    __bss_start(%rip), %rdi
    leaq    __bss_end(%rip), %rcx
    subq    %rdi, %rcx
    shrq    $3, %rcx
    xorl    %eax, %eax
    rep stosq
    leaq    bsp_sp_top(%rip), %rsp
    /* Our own GDT (same selectors as the boot one), reload segments. */
    lgdt    gdt_desc(%rip)
    movl    $SEL_DATA, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    xorl    %eax, %eax
    movl    %eax, %fs
    movl    %eax, %gs
    pushq   $SEL_CODE64
    leaq    1f(%rip), %rax
    pushq   %rax
    lretq
1:
    movq    %r12, %rdi
    xorl    %ebp, %ebp
    call    kmain
2:  cli
    hlt
    jmp     2b

/* AP 64-bit entry, jumped to from the trampoline. Takes a stack slot by
 * atomically incrementing ap_slot_next, then calls ap_main(slot). */
    .globl ap_entry64
ap_entry64:
    movl    $SEL_DATA, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    lgdt    gdt_desc(%rip)
    movl    $1, %eax
    lock xaddl %eax, ap_slot_next(%rip)
    cmpl    $MAX_APS, %eax
    jae     3f
    movl    %eax, %edi
    incl    %eax
    imull   $STACK_SIZE, %eax, %eax
    leaq    ap_sp_area(%rip), %rsp
    addq    %rax, %rsp
    xorl    %ebp, %ebp
    call    ap_main
3:  cli
    hlt
    jmp     3b

/* ---- interrupt stubs ---- */
    .macro ISR_NOERR vec
    .globl isr_\vec
isr_\vec:
    pushq   $0
    pushq   $\vec
    jmp     isr_common
    .endm

    .macro ISR_ERR vec
    .globl isr_\vec
isr_\vec:
    pushq   $\vec
    jmp     isr_common
    .endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31
ISR_NOERR 48
ISR_NOERR 52
ISR_NOERR 56
ISR_NOERR 64
ISR_NOERR 80
ISR_NOERR 255

    .section .rodata
    .balign 8
    .globl isr_table
isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad isr_\v
    .endr
    .globl isr_48_addr, isr_52_addr, isr_56_addr, isr_64_addr, isr_80_addr, isr_255_addr
isr_48_addr:  .quad isr_48
isr_52_addr:  .quad isr_52
isr_56_addr:  .quad isr_56
isr_64_addr:  .quad isr_64
isr_80_addr:  .quad isr_80
isr_255_addr: .quad isr_255

    .text
isr_common:
    /* stack: vector, error code, rip, cs, rflags, rsp, ss */
    pushq   %rax
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %rbp
    movq    %rsp, %rbp
    leaq    80(%rsp), %rdi              /* -> vector, error, rip, ... */
    andq    $-16, %rsp
    cld
    call    isr_dispatch
    movq    %rbp, %rsp
    popq    %rbp
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rax
    addq    $16, %rsp                   /* vector, error code */
    iretq

/* ---- GDT (also used by the APs once in long mode) ---- */
    .section .rodata
    .balign 16
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            /* 0x08: 32-bit code */
    .quad 0x00af9a000000ffff            /* 0x10: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x18: data */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt

/* ---- AP trampoline: copied to TRAMP_BASE, entered in real mode at
 * TRAMP_BASE (CS = TRAMP_BASE >> 4, IP = 0) by the SIPI. Position
 * dependent: every absolute address is TRAMP_BASE + offset. ---- */
    .section .rodata
    .balign 16
    .globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
    .code16
    cli
    cld
    movw    %cs, %ax
    movw    %ax, %ds
    lgdtl   (tramp_gdt_desc - ap_tramp_start)
    movl    %cr0, %eax
    orl     $1, %eax
    movl    %eax, %cr0
    ljmpl   $SEL_CODE32, $(TRAMP_BASE + tramp_pm32 - ap_tramp_start)

    .code32
tramp_pm32:
    movl    $SEL_DATA, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %cr4, %eax
    orl     $(1 << 5), %eax             /* PAE */
    movl    %eax, %cr4
    movl    $0x9000, %eax               /* kvmbox's boot page tables */
    movl    %eax, %cr3
    movl    $0xC0000080, %ecx           /* EFER.LME */
    rdmsr
    orl     $(1 << 8), %eax
    wrmsr
    movl    %cr0, %eax
    orl     $0x80000001, %eax           /* PG | PE */
    movl    %eax, %cr0
    ljmpl   $SEL_CODE64, $(TRAMP_BASE + tramp_lm64 - ap_tramp_start)

    .code64
tramp_lm64:
    movabsq $ap_entry64, %rax
    jmpq    *%rax

    .balign 16
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            /* 0x08: 32-bit code */
    .quad 0x00af9a000000ffff            /* 0x10: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x18: data */
tramp_gdt_end:
tramp_gdt_desc:
    .word tramp_gdt_end - tramp_gdt - 1
    .long TRAMP_BASE + tramp_gdt - ap_tramp_start
ap_tramp_end:

    .section .bss
    .balign 4
    .globl ap_slot_next
ap_slot_next:
    .long 0

    .section .stack, "aw", @nobits
    .balign 16
bsp_sp_area:
    .skip STACK_SIZE
bsp_sp_top:
    .globl ap_sp_area
ap_sp_area:
    .skip STACK_SIZE * MAX_APS

    .section .note.GNU-stack, "", @progbits
