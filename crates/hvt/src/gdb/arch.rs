//! The register set the stub shows gdb: x86-64's general registers, rip,
//! eflags, segment selectors, x87 and SSE (gdbstub_arch's `X86_64CoreRegs`),
//! plus the fs and gs segment bases, which gdbstub_arch's `X86_64_SSE` leaves
//! out.
//!
//! The target description is written here in full, because gdb lays out the
//! `g` packet by it: core and SSE as gdb's own `64bit-core.xml` and
//! `64bit-sse.xml` have them, then `org.gnu.gdb.i386.segments` (`fs_base`,
//! `gs_base`), so `p/x $fs_base` works as on Linux. Not here: AVX, the
//! `orig_rax` of Linux processes, and any real x87/SSE state (the tender
//! reports zeros: Atoll's guest code is soft-float).

use gdbstub::arch::Arch;
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
use gdbstub_arch::x86::reg::X86_64CoreRegs;

/// x86-64 with segment bases (see the module docs).
pub enum Amd64 {}

/// Bytes of the core and SSE registers in the `g` packet (gdbstub_arch's
/// layout; the segment bases follow).
const CORE_BYTES: usize = 0x218;

/// Everything the `g` packet carries.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Registers {
    pub core: X86_64CoreRegs,
    pub fs_base: u64,
    pub gs_base: u64,
}

impl gdbstub::arch::Registers for Registers {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for byte in self.fs_base.to_le_bytes().into_iter().chain(self.gs_base.to_le_bytes()) {
            write_byte(Some(byte));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.core.gdb_deserialize(bytes)?;
        // An older gdb may send the core registers alone.
        if let Some(bases) = bytes.get(CORE_BYTES..CORE_BYTES + 16) {
            let (fs, gs) = bases.split_at(8);
            self.fs_base = u64::from_le_bytes(fs.try_into().map_err(|_| ())?);
            self.gs_base = u64::from_le_bytes(gs.try_into().map_err(|_| ())?);
        }
        Ok(())
    }
}

impl Arch for Amd64 {
    type Usize = u64;
    type Registers = Registers;
    type RegId = X86_64CoreRegId;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// gdb's `64bit-core.xml`, `64bit-sse.xml` and `64bit-segments.xml` in one,
/// without the flag and vector type definitions gdb does not need to lay
/// out the packet.
const TARGET_XML: &str = concat!(
    r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">"#,
    r#"<target version="1.0"><architecture>i386:x86-64</architecture>"#,
    r#"<feature name="org.gnu.gdb.i386.core">"#,
    r#"<reg name="rax" bitsize="64" type="int64"/><reg name="rbx" bitsize="64" type="int64"/>"#,
    r#"<reg name="rcx" bitsize="64" type="int64"/><reg name="rdx" bitsize="64" type="int64"/>"#,
    r#"<reg name="rsi" bitsize="64" type="int64"/><reg name="rdi" bitsize="64" type="int64"/>"#,
    r#"<reg name="rbp" bitsize="64" type="data_ptr"/><reg name="rsp" bitsize="64" type="data_ptr"/>"#,
    r#"<reg name="r8" bitsize="64" type="int64"/><reg name="r9" bitsize="64" type="int64"/>"#,
    r#"<reg name="r10" bitsize="64" type="int64"/><reg name="r11" bitsize="64" type="int64"/>"#,
    r#"<reg name="r12" bitsize="64" type="int64"/><reg name="r13" bitsize="64" type="int64"/>"#,
    r#"<reg name="r14" bitsize="64" type="int64"/><reg name="r15" bitsize="64" type="int64"/>"#,
    r#"<reg name="rip" bitsize="64" type="code_ptr"/><reg name="eflags" bitsize="32" type="int32"/>"#,
    r#"<reg name="cs" bitsize="32" type="int32"/><reg name="ss" bitsize="32" type="int32"/>"#,
    r#"<reg name="ds" bitsize="32" type="int32"/><reg name="es" bitsize="32" type="int32"/>"#,
    r#"<reg name="fs" bitsize="32" type="int32"/><reg name="gs" bitsize="32" type="int32"/>"#,
    r#"<reg name="st0" bitsize="80" type="i387_ext"/><reg name="st1" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st2" bitsize="80" type="i387_ext"/><reg name="st3" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st4" bitsize="80" type="i387_ext"/><reg name="st5" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st6" bitsize="80" type="i387_ext"/><reg name="st7" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="fctrl" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fstat" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="ftag" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fiseg" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fioff" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="foseg" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fooff" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fop" bitsize="32" type="int" group="float"/>"#,
    r#"</feature><feature name="org.gnu.gdb.i386.sse">"#,
    r#"<reg name="xmm0" bitsize="128" type="uint128"/><reg name="xmm1" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm2" bitsize="128" type="uint128"/><reg name="xmm3" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm4" bitsize="128" type="uint128"/><reg name="xmm5" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm6" bitsize="128" type="uint128"/><reg name="xmm7" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm8" bitsize="128" type="uint128"/><reg name="xmm9" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm10" bitsize="128" type="uint128"/><reg name="xmm11" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm12" bitsize="128" type="uint128"/><reg name="xmm13" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm14" bitsize="128" type="uint128"/><reg name="xmm15" bitsize="128" type="uint128"/>"#,
    r#"<reg name="mxcsr" bitsize="32" type="int" group="vector"/>"#,
    r#"</feature><feature name="org.gnu.gdb.i386.segments">"#,
    r#"<reg name="fs_base" bitsize="64" type="int"/><reg name="gs_base" bitsize="64" type="int"/>"#,
    r#"</feature></target>"#,
);

#[cfg(test)]
mod tests {
    use super::*;
    use gdbstub::arch::Registers as _;

    #[test]
    fn the_segment_bases_follow_the_core_registers() {
        let mut regs = Registers::default();
        regs.core.rip = 0x10_0000;
        regs.fs_base = 0x1122_3344_5566_7788;
        regs.gs_base = 7;
        let mut bytes = Vec::new();
        regs.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        assert_eq!(bytes.len(), CORE_BYTES + 16);
        assert_eq!(&bytes[0x80..0x88], &0x10_0000u64.to_le_bytes());
        assert_eq!(
            &bytes[CORE_BYTES..CORE_BYTES + 8],
            &0x1122_3344_5566_7788u64.to_le_bytes()
        );
        let mut back = Registers::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, regs);
        assert!(back.gdb_deserialize(&bytes[..100]).is_err(), "too short");
    }

    #[test]
    fn the_description_lists_each_register_once() {
        for name in ["\"rip\"", "\"eflags\"", "\"fs_base\"", "\"gs_base\"", "\"mxcsr\""] {
            assert_eq!(TARGET_XML.matches(name).count(), 1, "{name}");
        }
        assert_eq!(TARGET_XML.matches("<reg ").count(), 24 + 16 + 17 + 2);
    }
}
