//! Stage 2, `ocirun:[2:INIT]`: the container's init. Runs the setup steps in the order
//! the kernel and the runtime spec require, reports Ready, waits for start, then execs
//! the user's process. Each step names itself so a failure says where it happened.
use std::ffi::CString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cgroups::CgroupPaths;
use nix::errno::Errno;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{chdir, execve, sethostname, setsid};
use oci_spec::runtime::{Process, Spec};

use crate::error::{ChildError, OciError, Result};
use crate::hooks;
use crate::process::channel::{Channel, Message};
use crate::rootfs::{self, RootfsContext};
use crate::seccomp;
use crate::security::{self, CapPlan};
use crate::sys;

/// How init learns that it may exec.
#[derive(Debug)]
pub enum StartSignal {
    /// `create`: a later `ocirun start` writes a byte into this FIFO (opened read-write,
    /// so the open never blocks and a start with no init left gets ENXIO).
    Fifo(OwnedFd),
    /// `run`: the parent sends Start on the channel.
    Channel,
}

#[derive(Debug)]
pub struct InitContext<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub cgroup: Option<&'a CgroupPaths>,
    pub in_userns: bool,
    pub new_uts: bool,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub start: StartSignal,
    /// `linux.seccomp`, compiled by `create`.
    pub seccomp: Option<&'a seccomp::Filter>,
    /// Set when process.terminal is: where the pty master goes.
    pub console: Option<crate::process::tty::ConsoleTarget>,
}

/// init's process name until it execs (`start` watches for the change).
pub const INIT_NAME: &str = "ocirun:[2:INIT]";
const INIT_NAME_C: &std::ffi::CStr = c"ocirun:[2:INIT]";

/// Never returns: execs the container process or exits with an error sent to ocirun.
pub fn run(chan: Channel, ctx: InitContext<'_>) -> ! {
    let _ = nix::sys::prctl::set_name(INIT_NAME_C);
    let err = match setup_and_exec(&chan, ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if chan.send(&Message::Error(err.clone())).is_err() {
        // Nobody listens any more (`create` has returned): stderr is all that is left.
        eprintln!("ocirun: container init: {err}");
    }
    crate::sys::exit_now(127)
}

fn step<T>(stage: &str, r: Result<T>) -> std::result::Result<T, ChildError> {
    r.map_err(|e| ChildError {
        stage: stage.to_string(),
        message: e.to_string(),
    })
}

enum Never {}

fn setup_and_exec(chan: &Channel, ctx: InitContext<'_>) -> std::result::Result<Never, ChildError> {
    step(
        "start",
        chan.expect(&Message::PidKnown, "waiting for the parent"),
    )?;
    let spec = ctx.spec;
    let process = step(
        "config",
        spec.process()
            .as_ref()
            .ok_or_else(|| OciError::InvalidConfig("process is missing".into())),
    )?;
    step(
        "setsid",
        setsid().map(drop).map_err(|e| OciError::sys("setsid", e)),
    )?;
    let caps = step(
        "capabilities",
        CapPlan::from_spec(process.capabilities().as_ref()),
    )?;

    let rctx = RootfsContext {
        spec,
        bundle: ctx.bundle,
        rootfs: ctx.rootfs,
        in_userns: ctx.in_userns,
        cgroup: ctx.cgroup,
        no_pivot: ctx.no_pivot,
    };
    step("rootfs", rootfs::prepare(&rctx))?;
    step(
        "hooks",
        hooks::init_before_pivot(chan, spec, ctx.id, ctx.bundle),
    )?;
    step("rootfs", rootfs::switch_root(&rctx))?;
    if let Some(target) = ctx.console {
        // After the rootfs (the pty comes from the container's devpts), before
        // finish remounts /dev read-only.
        step(
            "console",
            crate::process::tty::setup_console(target, process.console_size().as_ref(), chan),
        )?;
    }
    if ctx.new_uts {
        step("hostname", set_names(spec))?;
    }
    step("sysctl", set_sysctls(spec))?;
    step("rootfs", rootfs::finish(spec))?;
    if let Some(adj) = process.oom_score_adj() {
        step(
            "oom_score_adj",
            std::fs::write("/proc/self/oom_score_adj", adj.to_string())
                .map_err(|e| OciError::io("write", "/proc/self/oom_score_adj", e)),
        )?;
    }
    step("rlimits", security::set_rlimits(process))?;

    // chdir before dropping privileges (runc: root may reach what the user cannot),
    // and again after if the first try was refused.
    let cwd = process.cwd();
    let need_chdir = match chdir(cwd) {
        Ok(()) => false,
        Err(Errno::EACCES | Errno::EPERM) => true,
        Err(e) => {
            return step(
                "cwd",
                Err(OciError::sys(format!("chdir {}", cwd.display()), e)),
            );
        }
    };
    let env = build_env(process);

    // Before any seccomp filter, which may deny rt_sigaction/rt_sigprocmask.
    step(
        "signals",
        sys::reset_signals_for_exec().map_err(|e| OciError::sys("reset signals", e)),
    )?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    let (seccomp_early, seccomp_late) = match ctx.seccomp {
        Some(f) if seccomp::loads_early(no_new_privs) => (Some(f), None),
        f => (None, f),
    };
    if let Some(filter) = seccomp_early {
        step("seccomp", filter.load())?;
    }
    step("capabilities", caps.drop_bounding())?;
    step("user", security::switch_user(process, true))?;
    if need_chdir {
        step(
            "cwd",
            chdir(cwd).map_err(|e| OciError::sys(format!("chdir {}", cwd.display()), e)),
        )?;
    }
    step("capabilities", caps.apply())?;
    if let Some(mask) = process.user().umask() {
        umask(Mode::from_bits_truncate(mask & 0o777));
    }
    let args = process.args().as_deref().unwrap_or_default();
    let exe = step("exec", find_executable(&args[0], &env))?;
    if no_new_privs {
        step(
            "no_new_privs",
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| OciError::sys("PR_SET_NO_NEW_PRIVS", e)),
        )?;
    }
    step(
        "fds",
        sys::cloexec_from(3 + ctx.preserve_fds).map_err(|e| OciError::sys("close_range", e)),
    )?;

    step("ready", chan.send(&Message::Ready))?;
    match ctx.start {
        StartSignal::Channel => step("start", chan.expect(&Message::Start, "waiting for start"))?,
        StartSignal::Fifo(fd) => {
            let mut f = std::fs::File::from(fd);
            let mut b = [0u8; 1];
            step(
                "start",
                f.read_exact(&mut b)
                    .map_err(|e| OciError::io("read", "exec fifo", e)),
            )?;
        }
    }

    step("hooks", hooks::init_before_exec(spec, ctx.id, ctx.bundle))?;

    let c_args = step("exec", to_cstrings(args))?;
    let c_env = step("exec", to_cstrings(&env))?;
    let c_exe = step("exec", to_cstring(exe.as_os_str().as_bytes()))?;
    // Last, so that only execve runs under the filter.
    if let Some(filter) = seccomp_late {
        step("seccomp", filter.load())?;
    }
    let e = match execve(&c_exe, &c_args, &c_env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(ChildError {
        stage: "exec".into(),
        message: format!("exec {:?}: {e}", args[0]),
    })
}

fn set_names(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(h).map_err(|e| OciError::sys(format!("sethostname {h}"), e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        std::fs::write("/proc/sys/kernel/domainname", d)
            .map_err(|e| OciError::io("set domainname", "/proc/sys/kernel/domainname", e))?;
    }
    Ok(())
}

fn set_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| OciError::io("write sysctl", &path, e))?;
    }
    Ok(())
}

/// The process environment; HOME comes from the container's /etc/passwd when the spec
/// does not set it, as runc does.
fn build_env(process: &Process) -> Vec<String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// `args[0]` as execve needs it: as is when it has a slash, else searched in the
/// container's PATH. Done before Ready so `create` fails for a missing binary.
fn find_executable(name: &str, env: &[String]) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(OciError::Other(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

fn to_cstring(b: &[u8]) -> Result<CString> {
    CString::new(b).map_err(|_| OciError::InvalidConfig("argument or env has a NUL byte".into()))
}

fn to_cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter().map(|s| to_cstring(s.as_bytes())).collect()
}
