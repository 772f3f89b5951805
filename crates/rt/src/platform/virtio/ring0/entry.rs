//! The PVH entry and the interrupt stubs, in assembly: the only code that
//! runs before there is a stack and a 64-bit CPU state for Rust.
//!
//! `atoll_pvh_start` is what the `XEN_ELFNOTE_PHYS32_ENTRY` note names
//! (`atoll_abi::pvh`): the VMM enters in 32-bit protected mode, paging off,
//! `ebx` = the start info's physical address. It maps the first
//! [`EARLY_HUGE_PAGES`] × 2 MiB one to one (static early tables in
//! `.atoll.ring0`, which the VMM zero-filled), turns on PAE, long mode and
//! no-execute, loads a three-entry GDT and jumps to 64-bit code, which
//! calls `boot::boot(start_info)` on the boot stack.
//!
//! The stubs: one per CPU exception (an error code pushed where the CPU
//! pushes none, then the vector), into `services::exception`; one per
//! interrupt vector (the timer, sixteen devices), which only mark the
//! interrupt pending: the timer's signals end-of-interrupt at once (x2APIC
//! `EOI` MSR), a device's owes it to the next wait (`services`); the
//! spurious vector. Ring 3's service calls arrive as the #UD of the one
//! `ud2` at `atoll_service_call`, recognised by its address, into
//! `services::service`. (Not `int 0x80` nor `syscall`: PVM, the nested
//! virtualizer on our test machines, answers the first with #UD and runs
//! the second's target without entering ring 0, while it delivers
//! exceptions from ring 3 faithfully. A #UD costs what a software
//! interrupt would on real hardware.)

use super::services::{exception, service, EOI_OWED, PENDING};
use super::{EarlyTables, Stack, BOOT_STACK, EARLY_TABLES};

/// 2 MiB pages the early tables map: the kernel, the VMM's start info and
/// command line all lie in the first 64 MiB.
pub(super) const EARLY_HUGE_PAGES: usize = 32;
/// Bytes between two exception stubs (each fits in 16).
pub(super) const EXCEPTION_STUB_SIZE: u64 = 16;
/// Bytes between two interrupt stubs.
pub(super) const INTERRUPT_STUB_SIZE: u64 = 64;
/// Interrupt stubs: the timer's, then one per device vector.
pub(super) const INTERRUPT_STUBS: usize = 17;

unsafe extern "C" {
    /// The first of 32 exception stubs, [`EXCEPTION_STUB_SIZE`] apart.
    pub(super) fn atoll_exception_stubs();
    /// The first of [`INTERRUPT_STUBS`] interrupt stubs,
    /// [`INTERRUPT_STUB_SIZE`] apart: the timer (pending bit 63), then
    /// device vectors 0 to 15 (pending bits 0 to 15).
    pub(super) fn atoll_interrupt_stubs();
    /// The spurious-interrupt vector's stub: returns at once.
    pub(super) fn atoll_spurious_stub();

}

core::arch::global_asm!(
    // The PVH entry note, first in the note segment. An 8-byte descriptor
    // as Linux writes it (the VMMs read its low 4 bytes).
    ".pushsection .note.Xen, \"a\", @note",
    ".p2align 2",
    ".long 4",
    ".long 8",
    ".long 18",
    ".asciz \"Xen\"",
    ".p2align 2",
    ".quad atoll_pvh_start",
    ".popsection",
    // The early GDT: null, 64-bit code, data.
    ".pushsection .rodata.atoll_pvh, \"a\"",
    ".p2align 3",
    "atoll_early_gdt:",
    ".quad 0",
    ".quad 0x00AF9B000000FFFF",
    ".quad 0x00CF93000000FFFF",
    "atoll_early_gdt_pointer:",
    ".word 23",
    ".long atoll_early_gdt",
    ".popsection",
    ".pushsection .text.atoll_pvh, \"ax\"",
    ".code32",
    ".globl atoll_pvh_start",
    ".type atoll_pvh_start, @function",
    "atoll_pvh_start:",
    "    cli",
    "    cld",
    "    mov esi, ebx",
    // PML4[0] -> PDPT, PDPT[0] -> PD (present, writable).
    "    mov eax, offset {early} + 4096 + 3",
    "    mov dword ptr [{early}], eax",
    "    mov eax, offset {early} + 8192 + 3",
    "    mov dword ptr [{early} + 4096], eax",
    // PD[i] = i * 2 MiB, present, writable, huge.
    "    xor ecx, ecx",
    "2:",
    "    mov eax, ecx",
    "    shl eax, 21",
    "    or eax, 0x83",
    "    mov dword ptr [{early} + 8192 + ecx * 8], eax",
    "    inc ecx",
    "    cmp ecx, {huge_pages}",
    "    jne 2b",
    // CR4.PAE; CR3; EFER.LME | EFER.NXE; CR0.PG | CR0.WP | CR0.PE.
    "    mov eax, cr4",
    "    or eax, 0x20",
    "    mov cr4, eax",
    "    mov eax, offset {early}",
    "    mov cr3, eax",
    "    mov ecx, 0xC0000080",
    "    rdmsr",
    "    or eax, 0x900",
    "    wrmsr",
    "    mov eax, cr0",
    "    or eax, 0x80010001",
    "    mov cr0, eax",
    "    lgdt [atoll_early_gdt_pointer]",
    // ljmp 0x8:3f (opcode, 32-bit offset, selector), spelt out because
    // the assembler's far-jump syntax is AT&T's.
    "    .byte 0xEA",
    "    .long 3f",
    "    .word 0x8",
    ".code64",
    "3:",
    "    mov eax, 0x10",
    "    mov ds, eax",
    "    mov es, eax",
    "    mov ss, eax",
    "    xor eax, eax",
    "    mov fs, eax",
    "    mov gs, eax",
    "    lea rsp, [rip + {stack} + {stack_size}]",
    "    mov edi, esi",
    "    xor ebp, ebp",
    "    call {boot}",
    "    ud2",
    ".size atoll_pvh_start, . - atoll_pvh_start",
    ".popsection",
    // Exception stubs: [error code (0 where the CPU pushes none)], vector.
    ".pushsection .text.atoll_ring0, \"ax\"",
    ".p2align 4",
    ".globl atoll_exception_stubs",
    "atoll_exception_stubs:",
    ".set vector, 0",
    ".rept 32",
    ".p2align 4",
    ".if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30",
    ".else",
    "    push 0",
    ".endif",
    "    push vector",
    "    jmp atoll_exception_common",
    ".set vector, vector + 1",
    ".endr",
    // On the exception stack: vector, error code, then the CPU's frame
    // (rip, cs, rflags, rsp, ss). A #UD at `atoll_service_call` is a
    // service call: rax = service, rdi and rsi = arguments, result in rax;
    // it returns past the `ud2`. The stack is 8 mod 16 here (the CPU
    // aligned it, then 56 bytes went on).
    "atoll_exception_common:",
    "    cmp qword ptr [rsp], 6",
    "    jne 4f",
    "    push rax",
    "    lea rax, [rip + atoll_service_call]",
    "    cmp qword ptr [rsp + 24], rax",
    "    pop rax",
    "    jne 4f",
    "    add rsp, 8",
    "    mov rdx, rsi",
    "    mov rsi, rdi",
    "    mov rdi, rax",
    "    call {service}",
    "    add rsp, 8",
    "    add qword ptr [rsp], 2",
    "    iretq",
    "4:",
    "    mov rdi, rsp",
    "    mov rsi, rbp",
    "    and rsp, -16",
    "    call {exception}",
    "    ud2",
    // Interrupt stubs: mark pending, end of interrupt, return.
    ".p2align 6",
    ".globl atoll_interrupt_stubs",
    "atoll_interrupt_stubs:",
    ".set stub, 0",
    ".rept {interrupt_stubs}",
    ".p2align 6",
    "    push rax",
    "    push rcx",
    "    push rdx",
    ".if stub == 0",
    // The timer: end of interrupt at once.
    "    mov eax, 63",
    "    lock bts qword ptr [rip + {pending}], rax",
    "    mov ecx, 0x80b",
    "    xor eax, eax",
    "    xor edx, edx",
    "    wrmsr",
    ".else",
    // A device: the end of interrupt is owed until the next wait, when
    // ring 3 has acknowledged the device and its line is down.
    "    mov eax, stub - 1",
    "    lock bts qword ptr [rip + {pending}], rax",
    "    lock inc qword ptr [rip + {eoi_owed}]",
    ".endif",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    iretq",
    ".set stub, stub + 1",
    ".endr",
    ".p2align 4",
    ".globl atoll_spurious_stub",
    "atoll_spurious_stub:",
    "    iretq",
    // The service call: ring 3 calls here; the `ud2` raises #UD, which
    // `atoll_exception_common` recognises by its address.
    ".p2align 4",
    ".globl atoll_service_call",
    "atoll_service_call:",
    "    ud2",
    "    ret",
    ".popsection",
    early = sym EARLY_TABLES,
    huge_pages = const EARLY_HUGE_PAGES,
    stack = sym BOOT_STACK,
    stack_size = const core::mem::size_of::<Stack>(),
    boot = sym super::boot::boot,
    exception = sym exception,
    service = sym service,
    pending = sym PENDING,
    eoi_owed = sym EOI_OWED,
    interrupt_stubs = const INTERRUPT_STUBS,
);

const _: () = assert!(core::mem::size_of::<EarlyTables>() == 3 * 4096);
