//! `exec`: run another process in a container, in all of its init's namespaces and in
//! its cgroups. Every failure is reported as runc does: `exec failed: ...`, exit 255.
use std::os::fd::OwnedFd;
use std::path::Path;

use cgroups::Cgroup;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};
use tracing::instrument;

use crate::cli::ExecArgs;
use crate::container::create::write_pid_file;
use crate::container::load;
use crate::container::state::{Status, process_alive};
use crate::container::wait::wait_forwarding_signals;
use crate::error::{ChildError, OciError, Result};
use crate::process::channel::{Channel, Message};
use crate::process::tenant::{self, TenantContext};
use crate::process::tty::{self, ConsoleTarget, HostConsole, Relay};
use crate::sys;

/// Returns the exit code ocirun should exit with: the process's own (128+N when
/// signal N killed it), or 0 with --detach.
#[instrument(skip_all, fields(container_id = %a.id))]
pub fn exec(root: &Path, a: &ExecArgs) -> Result<i32> {
    exec_inner(root, a).map_err(|e| OciError::ExecFailed(Box::new(e)))
}

fn exec_inner(root: &Path, a: &ExecArgs) -> Result<i32> {
    let c = load(root, &a.id).map_err(|e| match e {
        OciError::NotFound(_) => OciError::Other("container does not exist".into()),
        e => e,
    })?;
    let state = match (&c.state, c.status) {
        (_, Status::Stopped) => {
            return Err(OciError::Other("cannot exec in a stopped container".into()));
        }
        (_, Status::Paused) if !a.ignore_paused => {
            return Err(OciError::Other(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ));
        }
        (Some(s), _) => s,
        (None, status) => {
            return Err(OciError::WrongState {
                op: "exec in",
                id: a.id.clone(),
                status: status.to_string(),
            });
        }
    };
    let process = build_process(&state.spec, a)?;
    let seccomp = state
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::Filter::compile_cached(s, &root.join(".seccomp-cache")))
        .transpose()?;
    let terminal = process.terminal().unwrap_or(false);
    tty::check_terminal(a.detach, terminal, a.console_socket.as_deref())?;
    let host_console = if terminal && !a.detach {
        Some(HostConsole::open()?)
    } else {
        None
    };
    let console = tty::target(terminal, a.console_socket.as_deref())?;
    let relayed = matches!(console, Some(ConsoleTarget::Parent));

    let init = state.init_pid;
    let namespaces = open_namespaces(&state.spec, init)?;
    // The fds pin the namespaces; make sure they are the container's and not those of
    // a process that reused the pid.
    if !process_alive(init, state.init_start_time) {
        return Err(OciError::Other("cannot exec in a stopped container".into()));
    }
    let in_userns = namespaces
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User);
    let setgroups_allowed = std::fs::read_to_string(format!("/proc/{init}/setgroups"))
        .map(|s| s.trim() != "deny")
        .unwrap_or(true);

    if !a.detach {
        // Stage 1 exits once the process is forked; as subreaper ocirun becomes the
        // process's parent and can wait for it.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| OciError::sys("PR_SET_CHILD_SUBREAPER", e))?;
    }
    let (parent_chan, child_chan) = Channel::pair()?;
    let ctx = TenantContext {
        process: &process,
        namespaces,
        in_userns,
        setgroups_allowed,
        console,
        preserve_fds: a.preserve_fds,
        seccomp: seccomp.as_ref(),
    };
    let joiner = match sys::fork().map_err(|e| OciError::sys("fork", e))? {
        ForkResult::Child => {
            drop(parent_chan);
            tenant::run(child_chan, ctx)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_chan);
    drop(ctx);
    let mut guard = KillOnDrop(vec![joiner]);

    if let Some(paths) = &state.cgroup {
        Cgroup::from_paths(paths.clone()).add_process(joiner.as_raw())?;
    }
    parent_chan.send(&Message::Go)?;
    let pid = match parent_chan.recv()? {
        Some(Message::InitPid { pid }) => Pid::from_raw(pid),
        Some(Message::Error(e)) => return Err(start_error(e)),
        other => {
            return Err(OciError::Channel(format!(
                "unexpected {other:?} while joining the container"
            )));
        }
    };
    guard.0.push(pid);
    parent_chan.send(&Message::PidKnown)?;
    let _ = waitpid(joiner, None);
    guard.0.retain(|p| *p != joiner);
    // Sized and in raw mode before the process goes on, so it sees the caller's size.
    let relay = match (relayed, host_console) {
        (true, Some(host)) => {
            let master = parent_chan
                .expect_fd(&Message::Console, "setting up the console")
                .map_err(|e| match e {
                    OciError::Child(c) => start_error(c),
                    e => e,
                })?;
            let relay = Relay::new(master, host)?;
            parent_chan.send(&Message::Go)?;
            Some(relay)
        }
        _ => None,
    };
    // End-of-file means the exec succeeded (the channel is close-on-exec).
    match parent_chan.recv()? {
        None => {}
        Some(Message::Error(e)) => return Err(start_error(e)),
        Some(other) => return Err(OciError::Channel(format!("unexpected {other:?}"))),
    }
    guard.0.clear();
    if let Some(f) = &a.pid_file {
        write_pid_file(f, pid.as_raw())?;
    }
    if a.detach {
        return Ok(0);
    }
    wait_forwarding_signals(pid, relay)
}

/// Kills and reaps what was forked when exec fails halfway.
struct KillOnDrop(Vec<Pid>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(*pid, Signal::SIGKILL);
            let _ = waitpid(*pid, None);
        }
    }
}

/// runc's wording for a process that could not be started.
fn start_error(e: ChildError) -> OciError {
    let msg = if e.stage == "exec" {
        e.message
    } else {
        format!("{}: {}", e.stage, e.message)
    };
    OciError::Other(format!("unable to start container process: {msg}"))
}

/// /proc/<init>/ns/<type> for every namespace in the container's config, user first
/// (it grants the rights to join the others) and mount last (joining it changes how
/// later paths resolve).
fn open_namespaces(spec: &Spec, init: i32) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let types: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    let rank = |t: &LinuxNamespaceType| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    };
    let mut sorted = types.clone();
    sorted.sort_by_key(rank);
    let mut out = Vec::new();
    for t in sorted {
        let name = match t {
            LinuxNamespaceType::Mount => "mnt",
            LinuxNamespaceType::Cgroup => "cgroup",
            LinuxNamespaceType::Uts => "uts",
            LinuxNamespaceType::Ipc => "ipc",
            LinuxNamespaceType::User => "user",
            LinuxNamespaceType::Pid => "pid",
            LinuxNamespaceType::Network => "net",
            LinuxNamespaceType::Time => "time",
        };
        let path = format!("/proc/{init}/ns/{name}");
        let fd = open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH => {
                OciError::Other("cannot exec in a stopped container".into())
            }
            e => OciError::sys(format!("open {path}"), e),
        })?;
        out.push((t, fd));
    }
    Ok(out)
}

/// The process to run: process.json as given, or the container's own process with
/// the command-line overrides, exactly as runc merges them.
fn build_process(spec: &Spec, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path).map_err(|e| OciError::io("read", path, e))?;
        let p: Process = serde_json::from_slice(&text).map_err(|e| OciError::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        validate(&p)?;
        return Ok(p);
    }
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| OciError::InvalidConfig("the container has no process".into()))?;
    p.set_args(Some(a.args.clone()));
    if let Some(cwd) = a.cwd.as_deref().filter(|c| !c.is_empty()) {
        p.set_cwd(cwd.into());
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let full = if name.starts_with("CAP_") {
                name.clone()
            } else {
                format!("CAP_{name}")
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(full))
                .map_err(|_| OciError::InvalidConfig(format!("unknown capability {name:?}")))?;
            // runc 1.1.2 and later: bounding, effective and permitted only
            // (CVE-2022-29162: never the inheritable or ambient sets).
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    p.set_terminal(Some(a.tty));
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut user = p.user().clone();
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (u.as_str(), None),
        };
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|e| OciError::InvalidConfig(format!("parsing {s:?} as int: {e}")))
        };
        if let Some(g) = gid {
            user.set_gid(num(g)?);
        }
        user.set_uid(num(uid)?);
    }
    if !a.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&a.additional_gids);
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    validate(&p)?;
    Ok(p)
}

/// runc's validateProcessSpec.
fn validate(p: &Process) -> Result<()> {
    if p.cwd().as_os_str().is_empty() {
        return Err(OciError::InvalidConfig(
            "Cwd property must not be empty".into(),
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(OciError::InvalidConfig(
            "Cwd must be an absolute path".into(),
        ));
    }
    if p.args().as_deref().unwrap_or_default().is_empty() {
        return Err(OciError::InvalidConfig("args must not be empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn exec_args(argv: &[&str]) -> ExecArgs {
        let mut full = vec!["ocirun", "exec"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full).unwrap().command {
            crate::cli::Command::Exec(a) => a,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn spec() -> Spec {
        serde_json::from_str(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
                "process":{"args":["sleep","30"],"cwd":"/","user":{"uid":0,"gid":0,"additionalGids":[1]},
                "env":["PATH=/bin"],"capabilities":{"bounding":["CAP_KILL"]}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn flags_override_the_containers_process() {
        let a = exec_args(&[
            "-e",
            "A=1",
            "-u",
            "1000:5",
            "-g",
            "7",
            "--cwd",
            "/tmp",
            "--cap",
            "CAP_NET_ADMIN",
            "--no-new-privs",
            "c1",
            "id",
            "-u",
        ]);
        let p = build_process(&spec(), &a).unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["id", "-u"]);
        assert_eq!(p.env().as_deref().unwrap(), ["PATH=/bin", "A=1"]);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 5));
        assert_eq!(p.user().additional_gids().as_deref().unwrap(), [1, 7]);
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.terminal(), Some(false));
        let caps = p.capabilities().as_ref().unwrap();
        assert!(
            caps.bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::NetAdmin)
        );
        assert!(
            caps.bounding()
                .as_ref()
                .unwrap()
                .contains(&Capability::Kill)
        );
        assert!(caps.inheritable().is_none());
    }

    #[test]
    fn user_without_gid_keeps_the_containers_gid() {
        let a = exec_args(&["-u", "1000", "c1", "true"]);
        let p = build_process(&spec(), &a).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 0));
    }

    #[test]
    fn no_args_is_refused() {
        let a = exec_args(&["c1"]);
        assert_eq!(
            build_process(&spec(), &a).unwrap_err().to_string(),
            "invalid config: args must not be empty"
        );
    }
}
