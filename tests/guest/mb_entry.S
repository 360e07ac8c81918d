/* kvmbox test guest, multiboot v1 entry (32-bit protected mode, paging
 * off, EAX = 0x2BADB002, EBX = multiboot info). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003                 /* page-align modules, memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    movl    $mb_sp_top, %esp
    pushl   %ebx
    pushl   %eax
    call    mb_main
1:  cli
    hlt
    jmp     1b

    .section .bss
    .balign 16
    .skip 8192
mb_sp_top:

    .section .note.GNU-stack, "", @progbits
