//! `create` (and the first half of `run`): everything up to a container whose init
//! waits for start. On any error, what was made (state dir, cgroup, processes) is undone.
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cgroups::{Cgroup, Layout};
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, mkfifo};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxIdMapping, LinuxResources, Spec};
use tracing::instrument;

use crate::container::state::{ContainerDir, SavedState};
use crate::error::{OciError, Result};
use crate::hooks;
use crate::process::bootstrap;
use crate::process::channel::{Channel, Message};
use crate::process::init::{InitContext, StartSignal};
use crate::process::namespaces::NamespacePlan;
use crate::process::tty::{self, ConsoleTarget};
use crate::security::CapPlan;
use crate::spec;
use crate::sys;

#[derive(Debug)]
pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    /// `run` starts the process itself over the channel; `create` leaves an exec FIFO.
    pub use_fifo: bool,
    /// Receives the pty master when process.terminal is set.
    pub console_socket: Option<&'a Path>,
    /// Whether ocirun returns once the container exists (`create`, `run --detach`).
    pub detach: bool,
}

/// A container whose init is ready and waiting.
#[derive(Debug)]
pub struct Created {
    pub dir: ContainerDir,
    pub state: SavedState,
    pub chan: Channel,
    /// The pty master, when ocirun itself is to relay the container's terminal.
    pub console: Option<OwnedFd>,
}

/// Undoes a half-made container unless disarmed.
struct Undo {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pids: Vec<Pid>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            let _ = kill(*pid, Signal::SIGKILL);
            let _ = waitpid(*pid, None);
        }
        if let Some(cg) = &self.cgroup {
            for pid in cg.procs().unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleanup: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[instrument(skip_all, fields(container_id = opts.id))]
pub fn create(opts: &CreateOptions<'_>) -> Result<Created> {
    let id = common::ContainerId::new(opts.id)?;
    let mut bundle = spec::load_bundle(opts.bundle)?;
    let preserve_fds = opts.preserve_fds + socket_activation(&mut bundle.spec);
    let plan = NamespacePlan::from_spec(&bundle.spec)?;
    // Parse now so that a bad capability name fails before anything exists.
    CapPlan::from_spec(
        bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref()),
    )?;
    // Compiled here so that a bad profile fails before anything exists; init inherits
    // the compiled filter across fork and loads it.
    let seccomp = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::Filter::compile_cached(s, &opts.root.join(".seccomp-cache")))
        .transpose()?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    tty::check_terminal(opts.detach, terminal, opts.console_socket)?;
    let layout = Layout::detect()?;
    let cgroups_path = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cgroup = Cgroup::new(&layout, &cgroups_path, id.as_str())?;

    std::fs::create_dir_all(opts.root)
        .map_err(|e| OciError::io("create state root", opts.root, e))?;
    let dir = ContainerDir::new(opts.root, &id);
    match std::fs::create_dir(&dir.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::AlreadyExists(id.to_string()));
        }
        Err(e) => return Err(OciError::io("create state dir", &dir.dir, e)),
    }
    let mut undo = Undo {
        dir: dir.dir.clone(),
        cgroup: None,
        pids: Vec::new(),
        armed: true,
    };

    let start = if opts.use_fifo {
        let fifo = dir.fifo();
        mkfifo(&fifo, Mode::from_bits_truncate(0o622))
            .map_err(|e| OciError::sys(format!("mkfifo {}", fifo.display()), e))?;
        let fd: OwnedFd = open(&fifo, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| OciError::sys(format!("open {}", fifo.display()), e))?;
        StartSignal::Fifo(fd)
    } else {
        StartSignal::Channel
    };

    cgroup.create()?;
    undo.cgroup = Some(cgroup.clone());
    cgroup.apply(&resources_with_defaults(&bundle.spec))?;

    let console = tty::target(terminal, opts.console_socket)?;
    let relayed = matches!(console, Some(ConsoleTarget::Parent));
    let (parent_chan, child_chan) = Channel::pair()?;
    let ctx = InitContext {
        id: id.as_str(),
        console,
        spec: &bundle.spec,
        bundle: &bundle.dir,
        rootfs: &bundle.rootfs,
        cgroup: Some(cgroup.paths()),
        in_userns: plan.in_userns,
        new_uts: plan.new_uts,
        no_pivot: opts.no_pivot,
        preserve_fds,
        start,
        seccomp: seccomp.as_ref(),
    };
    let own_pid_ns = plan.own_pid_ns;
    let bootstrap_pid = match sys::fork().map_err(|e| OciError::sys("fork", e))? {
        ForkResult::Child => {
            drop(parent_chan);
            bootstrap::run(child_chan, plan, ctx)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_chan);
    drop(ctx);
    undo.pids.push(bootstrap_pid);
    cgroup.add_process(bootstrap_pid.as_raw())?;
    parent_chan.send(&Message::Go)?;

    let init_pid = loop {
        match parent_chan.recv()? {
            Some(Message::MapIds) => {
                write_id_maps(bootstrap_pid, &bundle.spec)?;
                parent_chan.send(&Message::IdsMapped)?;
            }
            Some(Message::InitPid { pid }) => break Pid::from_raw(pid),
            Some(Message::Error(e)) => return Err(OciError::Child(e)),
            Some(other) => {
                return Err(OciError::Channel(format!(
                    "unexpected {other:?} from bootstrap"
                )));
            }
            None => {
                return Err(OciError::Channel(
                    "bootstrap process exited during setup".into(),
                ));
            }
        }
    };
    undo.pids.push(init_pid);
    parent_chan.send(&Message::PidKnown)?;
    let _ = waitpid(bootstrap_pid, None);
    undo.pids.retain(|p| *p != bootstrap_pid);
    // Init asks for the runtime's create hooks after its mounts (only when the spec
    // has some), then hands over the pty master when ocirun relays it, then is Ready.
    let mut console = None;
    loop {
        match parent_chan.recv_with_fd()? {
            Some((Message::Ready, _)) => break,
            Some((Message::RunHooks, _)) => {
                hooks::runtime_create_hooks(
                    &bundle.spec,
                    id.as_str(),
                    init_pid.as_raw(),
                    &bundle.dir,
                )?;
                parent_chan.send(&Message::HooksDone)?;
            }
            Some((Message::Console, Some(fd))) if relayed => console = Some(fd),
            Some((Message::Error(e), _)) => return Err(OciError::Child(e)),
            Some((other, _)) => {
                return Err(OciError::Channel(format!("unexpected {other:?} from init")));
            }
            None => {
                return Err(OciError::Channel(
                    "container process exited while setting up the container".into(),
                ));
            }
        }
    }
    if relayed && console.is_none() {
        return Err(OciError::Channel(
            "init became ready without sending the console".into(),
        ));
    }

    let (_, start_time) = crate::container::state::proc_stat(init_pid.as_raw())
        .ok_or_else(|| OciError::Channel("container init exited during setup".into()))?;
    let state = SavedState {
        id: id.to_string(),
        init_pid: init_pid.as_raw(),
        init_start_time: start_time,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: common::rfc3339_nanos(SystemTime::now()),
        annotations: bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        cgroup: Some(cgroup.paths().clone()),
        own_pid_ns,
        spec: bundle.spec,
    };
    dir.save(&state)?;
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, init_pid.as_raw())?;
    }
    undo.armed = false;
    Ok(Created {
        dir,
        state,
        chan: parent_chan,
        console,
    })
}

/// systemd socket activation passes through as runc does it: when ocirun itself was
/// started with `LISTEN_FDS=N`, fds 3..3+N go to the container's process too, which is
/// told so with `LISTEN_FDS=N` and `LISTEN_PID=1` in its environment. Returns N.
fn socket_activation(spec: &mut Spec) -> u32 {
    // As sd_listen_fds(3): the fds are ours only if LISTEN_PID names this process.
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let Some(n) = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0 && for_us)
    else {
        return 0;
    };
    if let Some(process) = spec.process_mut() {
        let mut env: Vec<String> = process
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="))
            .collect();
        env.push(format!("LISTEN_FDS={n}"));
        env.push("LISTEN_PID=1".to_string());
        process.set_env(Some(env));
    }
    n
}

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| OciError::io("getcwd", ".", e))?
            .join(path)
    };
    common::atomic_write(&path, pid.to_string().as_bytes(), 0o644)
        .map_err(|e| OciError::io("write pid file", path, e))
}

fn write_id_maps(pid: Pid, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", linux.and_then(|l| l.uid_mappings().as_ref())),
        ("gid_map", linux.and_then(|l| l.gid_mappings().as_ref())),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, fmt(maps)).map_err(|e| OciError::io("write", path, e))?;
    }
    Ok(())
}

/// The spec's resources plus the device rules every container needs (runc's
/// AllowedDevices), and an allow rule for each device the spec creates.
pub fn resources_with_defaults(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    rules.extend([
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]);
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        rules.push(LinuxDeviceCgroup::from(d));
    }
    res.set_devices(Some(rules));
    res
}
