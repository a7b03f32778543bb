//! `linux.seccomp`: turning the spec's profile into a libseccomp filter and loading it.
//!
//! The API, for `create`/init and for `exec` alike:
//! - [`Filter::compile`] checks the profile and builds the filter without touching the
//!   calling process. Call it before anything is created, so that a bad profile is a
//!   config error that leaves nothing behind.
//! - [`Filter::load`] installs the filter on the calling process. Nearly every syscall
//!   made after it is filtered, so it is the last step before execve; but without
//!   no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN load a filter,
//!   so then it must come before the capabilities are dropped. [`loads_early`] says
//!   which case applies.
//! - [`load`] does both, for callers that have nothing to create in between.
//!
//! Semantics follow runc's: syscall names this libseccomp does not know are skipped
//! (profiles list syscalls that newer kernels added), a rule whose action is the default
//! action is skipped (libseccomp refuses it), conditions of one rule are ANDed unless
//! one argument index appears twice (then each condition is a rule of its own, ORed),
//! and errnoRet is the errno for SCMP_ACT_ERRNO and the message for SCMP_ACT_TRACE.
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use std::path::Path;

use crate::error::{OciError, Result};

/// Syscalls take at most six arguments.
const MAX_ARGS: usize = 6;

/// A compiled seccomp filter, ready to load: the BPF program libseccomp generated and
/// the seccomp(2) flags the profile asks for.
#[derive(Debug, Clone)]
pub struct Filter {
    program: Vec<u8>,
    flags: u32,
}

const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
/// One classic BPF instruction (struct sock_filter) is 8 bytes.
const BPF_INSN_LEN: usize = 8;

fn invalid(msg: impl std::fmt::Display) -> OciError {
    OciError::InvalidConfig(format!("linux.seccomp: {msg}"))
}

fn lib_err(what: impl std::fmt::Display, e: libseccomp::error::SeccompError) -> OciError {
    OciError::Other(format!("seccomp: {what}: {e}"))
}

impl Filter {
    /// Checks `seccomp` and builds its filter. Errors are config errors, except when
    /// libseccomp itself fails.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter> {
        let ctx = build_context(seccomp)?;
        // Exported rather than loaded through libseccomp, so the program can be cached and
        // loaded with one syscall.
        let memfd =
            nix::sys::memfd::memfd_create(c"seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(|e| OciError::sys("memfd_create", e))?;
        ctx.export_bpf(&memfd)
            .map_err(|e| lib_err("generate the BPF program", e))?;
        let mut file = std::fs::File::from(memfd);
        let mut program = Vec::new();
        std::io::Seek::rewind(&mut file)
            .and_then(|_| std::io::Read::read_to_end(&mut file, &mut program))
            .map_err(|e| OciError::io("read", "exported seccomp program", e))?;
        Filter::from_program(program, filter_flags(seccomp)).ok_or_else(|| {
            OciError::Other("seccomp: libseccomp exported a malformed program".into())
        })
    }

    /// As [`Filter::compile`], but keeps the generated program in `cache_dir`, keyed by
    /// a SHA-256 of the profile and the libseccomp and ocirun versions: libseccomp needs
    /// ~8 ms of CPU for Docker's default profile, loading a cached program ~20 us. The
    /// cache is an optimisation only; any problem with it falls back to compiling.
    pub fn compile_cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter> {
        let Some(key) = cache_key(seccomp) else {
            return Filter::compile(seccomp);
        };
        let path = cache_dir.join(key);
        if let Ok(program) = std::fs::read(&path)
            && let Some(f) = Filter::from_program(program, filter_flags(seccomp))
        {
            return Ok(f);
        }
        let filter = Filter::compile(seccomp)?;
        let stored = std::fs::create_dir_all(cache_dir)
            .and_then(|()| common::atomic_write(&path, &filter.program, 0o600));
        if let Err(e) = stored {
            tracing::debug!(
                "seccomp: cannot cache the program in {}: {e}",
                cache_dir.display()
            );
        }
        Ok(filter)
    }

    fn from_program(program: Vec<u8>, flags: u32) -> Option<Filter> {
        let insns = program.len() / BPF_INSN_LEN;
        let valid = !program.is_empty()
            && program.len().is_multiple_of(BPF_INSN_LEN)
            && insns <= usize::from(u16::MAX);
        valid.then_some(Filter { program, flags })
    }
}

fn filter_flags(seccomp: &LinuxSeccomp) -> u32 {
    seccomp
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        })
        .fold(0, |a, b| a | b)
}

fn cache_key(seccomp: &LinuxSeccomp) -> Option<String> {
    use sha2::Digest;
    let profile = serde_json::to_vec(seccomp).ok()?;
    let mut h = sha2::Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(
        features::libseccomp_version()
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(b"\0");
    h.update(&profile);
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn build_context(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    {
        let default = action(
            seccomp.default_action(),
            seccomp.default_errno_ret(),
            "defaultAction",
        )?;
        let mut ctx =
            ScmpFilterContext::new(default).map_err(|e| lib_err("create the filter", e))?;
        // init sets no_new_privs itself when the spec asks for it; libseccomp would
        // otherwise set it for every container.
        ctx.set_ctl_nnp(false)
            .map_err(|e| lib_err("clear the no_new_privs attribute", e))?;
        for arch in seccomp.architectures().iter().flatten() {
            let Some(a) = scmp_arch(*arch) else {
                continue;
            };
            ctx.add_arch(a)
                .map_err(|e| invalid(format!("architecture {arch}: {e}")))?;
        }
        for flag in seccomp.flags().iter().flatten() {
            let r = match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
                // init and exec are single-threaded when they load, so this changes
                // nothing; it is accepted because profiles ask for it.
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    return Err(OciError::Unsupported(format!(
                        "linux.seccomp: flag {flag} is not supported (it only applies to SCMP_ACT_NOTIFY)"
                    )));
                }
            };
            r.map_err(|e| lib_err(format!("flag {flag}"), e))?;
        }
        let (mut added, mut unknown) = (0usize, 0usize);
        for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
            let what = format!("syscalls[{i}]");
            let act = action(rule.action(), rule.errno_ret(), &what)?;
            let args = rule.args().as_deref().unwrap_or_default();
            let conds = args
                .iter()
                .enumerate()
                .map(|(j, a)| condition(a, &format!("{what}.args[{j}]")))
                .collect::<Result<Vec<_>>>()?;
            if act == default {
                continue;
            }
            let mut seen = [false; MAX_ARGS];
            let repeated = args
                .iter()
                .any(|a| std::mem::replace(&mut seen[a.index()], true));
            for name in rule.names() {
                let Ok(nr) = ScmpSyscall::from_name(name) else {
                    tracing::debug!("seccomp: unknown syscall {name:?}, skipped");
                    unknown += 1;
                    continue;
                };
                let r = if repeated {
                    conds
                        .iter()
                        .try_for_each(|c| ctx.add_rule_conditional(act, nr, &[*c]).map(drop))
                } else {
                    ctx.add_rule_conditional(act, nr, &conds).map(drop)
                };
                r.map_err(|e| invalid(format!("{what}: rule for {name}: {e}")))?;
                added += 1;
            }
        }
        tracing::debug!(
            "seccomp: filter with {added} syscall rules ({unknown} unknown names skipped)"
        );
        Ok(ctx)
    }
}

impl Filter {
    /// Installs the filter on the calling process (and its future children).
    pub fn load(&self) -> Result<()> {
        crate::sys::seccomp_set_filter(&self.program, self.flags)
            .map_err(|e| OciError::sys("seccomp: load the filter", e))
    }
}

/// Compiles and loads `seccomp` in one go.
pub fn load(seccomp: &LinuxSeccomp) -> Result<()> {
    Filter::compile(seccomp)?.load()
}

/// Whether the filter must be loaded before the capabilities are dropped: without
/// no_new_privs, loading needs CAP_SYS_ADMIN (as runc does). Otherwise it is loaded
/// as late as possible, just before execve, so that the fewest runtime syscalls run
/// under it.
pub fn loads_early(no_new_privileges: bool) -> bool {
    !no_new_privileges
}

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>, what: &str) -> Result<ScmpAction> {
    use LinuxSeccompAction as A;
    let ret = || -> Result<u16> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v)
                .map_err(|_| invalid(format!("{what}: errnoRet {v} does not fit in 16 bits"))),
        }
    };
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(i32::from(ret()?)),
        A::ScmpActTrace => ScmpAction::Trace(ret()?),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
        A::ScmpActNotify => {
            return Err(OciError::Unsupported(format!(
                "linux.seccomp: {what}: SCMP_ACT_NOTIFY is not supported by ocirun (no seccomp agent support)"
            )));
        }
    })
}

fn condition(a: &LinuxSeccompArg, what: &str) -> Result<ScmpArgCompare> {
    use LinuxSeccompOperator as O;
    let index = a.index();
    if index >= MAX_ARGS {
        return Err(invalid(format!(
            "{what}: index {index} is out of range (a syscall has {MAX_ARGS} arguments)"
        )));
    }
    let op = match a.op() {
        O::ScmpCmpNe => ScmpCompareOp::NotEqual,
        O::ScmpCmpLt => ScmpCompareOp::Less,
        O::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        O::ScmpCmpEq => ScmpCompareOp::Equal,
        O::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        O::ScmpCmpGt => ScmpCompareOp::Greater,
        // The spec's value is the mask and valueTwo the value the masked argument
        // must equal.
        O::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index as u32,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            ));
        }
    };
    if a.value_two().is_some_and(|v| v != 0) {
        return Err(invalid(format!(
            "{what}: valueTwo is only used with SCMP_CMP_MASKED_EQ, not {}",
            a.op()
        )));
    }
    Ok(ScmpArgCompare::new(index as u32, op, a.value()))
}

/// None for the native architecture, which every filter has already.
fn scmp_arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => return None,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    })
}

/// For `ocirun features`: what [`Filter::compile`] accepts.
pub mod features {
    /// SCMP_ACT_NOTIFY is left out: it needs a seccomp agent, which ocirun lacks.
    pub const ACTIONS: [&str; 8] = [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
    ];
    pub const OPERATORS: [&str; 7] = [
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_LE",
        "SCMP_CMP_LT",
        "SCMP_CMP_MASKED_EQ",
        "SCMP_CMP_NE",
    ];
    /// The architectures libseccomp 2.5 (Debian 12's) knows.
    pub const ARCHS: [&str; 19] = [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
    ];

    /// The libseccomp the binary runs with, as runc reports it.
    pub fn libseccomp_version() -> Option<String> {
        libseccomp::ScmpVersion::current()
            .ok()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    fn compile_err(json: serde_json::Value) -> String {
        Filter::compile(&profile(json)).unwrap_err().to_string()
    }

    #[test]
    fn docker_default_profile_compiles() {
        let text = include_str!("../../integration/fixtures/docker-default-seccomp.json");
        let p: LinuxSeccomp = serde_json::from_str(text).unwrap();
        Filter::compile(&p).unwrap();
    }

    #[test]
    fn unknown_syscall_names_are_skipped() {
        Filter::compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
    }

    #[test]
    fn rules_matching_the_default_action_are_skipped() {
        Filter::compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })))
        .unwrap();
    }

    #[test]
    fn notify_is_refused() {
        let e = compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(e.contains("SCMP_ACT_NOTIFY is not supported"), "{e}");
    }

    #[test]
    fn argument_index_out_of_range_is_refused() {
        let e = compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(e.contains("index 6"), "{e}");
    }

    #[test]
    fn value_two_outside_masked_eq_is_refused() {
        let e = compile_err(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(e.contains("valueTwo"), "{e}");
    }

    #[test]
    fn repeated_argument_index_becomes_separate_rules() {
        Filter::compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap();
    }

    #[test]
    fn unknown_action_fails_to_parse() {
        let r: std::result::Result<LinuxSeccomp, _> = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_NOPE"
        }));
        assert!(r.is_err());
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn docker_profile() -> LinuxSeccomp {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../integration/fixtures/docker-default-seccomp.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn cached_program_is_reused_and_a_bad_entry_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let profile = docker_profile();
        let first = Filter::compile_cached(&profile, dir.path()).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "one cache entry");
        let entry = entries[0].as_ref().unwrap().path();
        assert_eq!(std::fs::read(&entry).unwrap(), first.program);
        let second = Filter::compile_cached(&profile, dir.path()).unwrap();
        assert_eq!(first.program, second.program);
        // A torn or foreign file is not trusted: it is replaced by a fresh compile.
        std::fs::write(&entry, b"short").unwrap();
        let third = Filter::compile_cached(&profile, dir.path()).unwrap();
        assert_eq!(third.program, first.program);
        assert_eq!(std::fs::read(&entry).unwrap(), first.program);
    }

    #[test]
    fn different_profiles_get_different_entries() {
        let dir = tempfile::tempdir().unwrap();
        let a = docker_profile();
        let mut b = docker_profile();
        b.set_default_errno_ret(Some(38));
        Filter::compile_cached(&a, dir.path()).unwrap();
        Filter::compile_cached(&b, dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
