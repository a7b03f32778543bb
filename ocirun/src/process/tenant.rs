//! `exec`: a new process in an existing container. Two stages, like create's:
//! `ocirun:[1:JOIN]` waits until ocirun has put it in the container's cgroups, joins
//! every namespace of the container's init (user first, mount last) and forks, so that
//! the joined pid namespace applies; the child, `ocirun:[2:EXEC]`, sets up the
//! process (terminal, rlimits, cwd, user, capabilities, no_new_privs) and execs it.
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::setns;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{ForkResult, Gid, Uid, chdir, execve, setresgid, setresuid, setsid};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::error::{ChildError, OciError, Result};
use crate::process::channel::{Channel, Message};
use crate::process::namespaces::clone_flag;
use crate::process::tty::{self, ConsoleTarget};
use crate::security::{self, CapPlan};
use crate::sys;

/// What the exec'd process needs, all of it prepared by ocirun before the fork.
#[derive(Debug)]
pub struct TenantContext<'a> {
    pub process: &'a Process,
    /// The init's namespaces, opened from /proc/<init>/ns, user first and mount last.
    pub namespaces: Vec<(LinuxNamespaceType, OwnedFd)>,
    pub in_userns: bool,
    /// False when the container's user namespace denies setgroups(2).
    pub setgroups_allowed: bool,
    pub console: Option<ConsoleTarget>,
    pub preserve_fds: u32,
    /// The container's `linux.seccomp`, compiled by the caller.
    pub seccomp: Option<&'a crate::seccomp::Filter>,
}

/// Never returns: stage 1 exits once stage 2 is forked; stage 2 execs or exits.
pub fn run(chan: Channel, ctx: TenantContext<'_>) -> ! {
    let _ = nix::sys::prctl::set_name(c"ocirun:[1:JOIN]");
    let result = join(&chan, &ctx.namespaces, ctx.in_userns)
        .and_then(|()| sys::fork().map_err(|e| ("fork", OciError::sys("fork", e))));
    match result {
        Ok(ForkResult::Child) => exec_process(chan, ctx),
        Ok(ForkResult::Parent { child }) => {
            let code = match chan.send(&Message::InitPid {
                pid: child.as_raw(),
            }) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            sys::exit_now(code)
        }
        Err((stage, e)) => {
            let _ = chan.send(&Message::Error(ChildError {
                stage: stage.to_string(),
                message: e.to_string(),
            }));
            sys::exit_now(1)
        }
    }
}

fn join(
    chan: &Channel,
    namespaces: &[(LinuxNamespaceType, OwnedFd)],
    in_userns: bool,
) -> std::result::Result<(), (&'static str, OciError)> {
    chan.expect(&Message::Go, "waiting to join the cgroup")
        .map_err(|e| ("start", e))?;
    for (t, fd) in namespaces {
        setns(fd, clone_flag(*t))
            .map_err(|e| ("join namespaces", OciError::sys(format!("setns {t}"), e)))?;
        if *t == LinuxNamespaceType::User && in_userns {
            // Root of the user namespace, as the container's init was when it set up,
            // so the namespaces it owns can be joined and files created in them.
            let root_g = Gid::from_raw(0);
            let root_u = Uid::from_raw(0);
            setresgid(root_g, root_g, root_g)
                .map_err(|e| ("user namespace", OciError::sys("setgid 0", e)))?;
            setresuid(root_u, root_u, root_u)
                .map_err(|e| ("user namespace", OciError::sys("setuid 0", e)))?;
        }
    }
    Ok(())
}

fn exec_process(chan: Channel, ctx: TenantContext<'_>) -> ! {
    let _ = nix::sys::prctl::set_name(c"ocirun:[2:EXEC]");
    let err = match setup_and_exec(&chan, ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = chan.send(&Message::Error(err));
    sys::exit_now(127)
}

enum Never {}

fn step<T>(stage: &str, r: Result<T>) -> std::result::Result<T, ChildError> {
    r.map_err(|e| ChildError {
        stage: stage.to_string(),
        message: e.to_string(),
    })
}

fn setup_and_exec(
    chan: &Channel,
    ctx: TenantContext<'_>,
) -> std::result::Result<Never, ChildError> {
    step(
        "start",
        chan.expect(&Message::PidKnown, "waiting for the parent"),
    )?;
    drop(ctx.namespaces);
    let process = ctx.process;
    // A session of its own, as every runc process has; a terminal needs it.
    step(
        "setsid",
        setsid().map(drop).map_err(|e| OciError::sys("setsid", e)),
    )?;
    if let Some(target) = ctx.console {
        let relayed = matches!(target, ConsoleTarget::Parent);
        step(
            "console",
            tty::setup_console(target, process.console_size().as_ref(), chan),
        )?;
        if relayed {
            // ocirun sizes the pty from the caller's terminal first.
            step(
                "console",
                chan.expect(&Message::Go, "waiting for the relay"),
            )?;
        }
    }
    let caps = step(
        "capabilities",
        CapPlan::from_spec(process.capabilities().as_ref()),
    )?;
    step("rlimits", security::set_rlimits(process))?;
    let env = step("env", merge_env(process))?;
    let args = process.args().as_deref().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return step(
            "exec",
            Err(OciError::InvalidConfig("args must not be empty".into())),
        );
    };
    let exe = step("exec", look_path(arg0, &env))?;

    // As root first: the user may not reach the directory the spec names (runc does
    // the same), then again as the user if root was refused (root-squashed mounts).
    let cwd = process.cwd();
    let need_chdir = match chdir(cwd) {
        Ok(()) => false,
        Err(Errno::EACCES | Errno::EPERM) => true,
        Err(e) => {
            return step(
                "cwd",
                Err(OciError::Other(format!(
                    "chdir to cwd ({:?}) set in config.json failed: {}",
                    cwd.display(),
                    errno_text(e)
                ))),
            );
        }
    };
    // Before any seccomp filter, which may deny rt_sigaction/rt_sigprocmask.
    step(
        "signals",
        sys::reset_signals_for_exec().map_err(|e| OciError::sys("reset signals", e)),
    )?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    let (seccomp_early, seccomp_late) = match ctx.seccomp {
        Some(f) if crate::seccomp::loads_early(no_new_privs) => (Some(f), None),
        other => (None, other),
    };
    if let Some(filter) = seccomp_early {
        step("seccomp", filter.load())?;
    }
    step("capabilities", caps.drop_bounding())?;
    step(
        "user",
        security::switch_user(process, ctx.setgroups_allowed),
    )?;
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
    let c_args = step("exec", to_cstrings(args))?;
    let c_env = step("exec", to_cstrings(&env))?;
    let c_exe = step("exec", to_cstring(exe.as_os_str().as_bytes()))?;

    // Last before execve, so that the filter need not allow the setup's own syscalls.
    if let Some(filter) = seccomp_late {
        step("seccomp", filter.load())?;
    }

    let e = match execve(&c_exe, &c_args, &c_env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(ChildError {
        stage: "exec".into(),
        message: format!("exec: {arg0:?}: {}", errno_text(e)),
    })
}

/// The process's environment as runc builds it: each variable once, at its first
/// position with its last value (so `--env` overrides the spec's), and HOME from the
/// container's /etc/passwd when unset.
pub fn merge_env(process: &Process) -> Result<Vec<String>> {
    let mut env: Vec<String> = Vec::new();
    for kv in process.env().as_deref().unwrap_or_default() {
        let Some((k, _)) = kv.split_once('=') else {
            return Err(OciError::InvalidConfig(format!(
                "invalid environment variable {kv:?}: missing '='"
            )));
        };
        if k.is_empty() {
            return Err(OciError::InvalidConfig(format!(
                "invalid environment variable {kv:?}: name is empty"
            )));
        }
        match env
            .iter_mut()
            .find(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k))
        {
            Some(slot) => slot.clone_from(kv),
            None => env.push(kv.clone()),
        }
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok()? == uid).then(|| f[5].to_string())
    })
}

/// Go's strerror wording ("no such file or directory"): dockerd matches these words
/// in runc's exec errors to pick exit codes 126 and 127.
pub fn errno_text(e: Errno) -> String {
    let d = e.desc();
    let mut c = d.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => d.to_string(),
    }
}

/// runc's lookup of args[0] (Go's exec.LookPath), with its messages.
fn look_path(name: &str, env: &[String]) -> Result<PathBuf> {
    let executable = |p: &Path| -> std::result::Result<(), Errno> {
        let meta = std::fs::metadata(p)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    };
    if name.contains('/') {
        return match executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(Errno::EACCES) => Err(OciError::Other(format!(
                "exec: {name:?}: permission denied"
            ))),
            Err(e) => Err(OciError::Other(format!(
                "exec: {name:?}: stat {name}: {}",
                errno_text(e)
            ))),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if executable(&candidate).is_ok() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keeps_first_position_and_last_value() {
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},
                "env":["PATH=/bin","TERM=xterm","A=1","PATH=/x","HOME=/h"]}"#,
        )
        .unwrap();
        assert_eq!(
            merge_env(&p).unwrap(),
            ["PATH=/x", "TERM=xterm", "A=1", "HOME=/h"]
        );
    }

    #[test]
    fn env_without_equals_is_refused() {
        let p: Process =
            serde_json::from_str(r#"{"cwd":"/","user":{"uid":0,"gid":0},"env":["A"]}"#).unwrap();
        assert!(merge_env(&p).is_err());
    }

    #[test]
    fn errno_wording_is_gos() {
        assert_eq!(errno_text(Errno::ENOENT), "no such file or directory");
        assert_eq!(errno_text(Errno::EACCES), "permission denied");
    }

    #[test]
    fn lookup_messages_match_runc() {
        let env = ["PATH=/nonexistent-dir".to_string()];
        assert_eq!(
            look_path("nosuchbin", &env).unwrap_err().to_string(),
            "exec: \"nosuchbin\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("/nosuch", &env).unwrap_err().to_string(),
            "exec: \"/nosuch\": stat /nosuch: no such file or directory"
        );
        assert_eq!(
            look_path("/bin/sh", &env).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }
}
