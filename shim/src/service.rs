//! The `containerd.task.v2.Task` service. State lives in one mutex; runtime
//! commands run without holding it (the reaper's exit callback needs it, and
//! the runtime's own exit is collected by the reaper).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::events::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use proto::shim::*;
use proto::task::{ProcessInfo, Status};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, Message, MessageField};
use ttrpc::TtrpcContext;

use crate::error::{Result, ShimError};
use crate::events::Publisher;
use crate::reaper::{Exit, Reaper};
use crate::runtime::{self, Runtime};
use crate::stdio::{self, ProcIo, StdioPaths};

const INIT: &str = "";

/// How long a shim whose task is deleted waits for Shutdown before exiting.
const IDLE_EXIT_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Proc {
    pid: u32,
    status: Status,
    exit: Option<Exit>,
    paths: StdioPaths,
    io: ProcIo,
    /// The exec's process.json (runtime-spec Process), until Start.
    spec: Vec<u8>,
    /// Start is under way: an exit now is recorded but its event waits, so
    /// that containerd sees TaskStart before TaskExit.
    starting: bool,
    exit_published: bool,
}

#[derive(Debug, Default)]
struct State {
    runtime: Option<Runtime>,
    procs: HashMap<String, Proc>,
    /// The container's cgroup, to tell OOM kills apart (None: unknown layout).
    cgroup: Option<cgroups::Cgroup>,
    oom_kills: u64,
    /// The reaper's token for the live OOM watch on the cgroup.
    oom_watch: Option<u64>,
}

/// The cgroup the runtime put the container in: where its init is (right
/// whatever the runtime did with a relative or systemd cgroupsPath), else
/// what config.json names.
fn container_cgroup(bundle: &Path, id: &str, pid: u32) -> Option<cgroups::Cgroup> {
    let layout = cgroups::Layout::detect().ok()?;
    if let Some(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| cgroup_from_proc(&layout, &text))
    {
        return Some(cg);
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
    let path = config
        .pointer("/linux/cgroupsPath")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    cgroups::Cgroup::new(&layout, path, id).ok()
}

/// Maps `/proc/PID/cgroup` lines ("4:memory:/a/b", "0::/a/b") onto the
/// host's mounts. None if a hierarchy cannot be placed or nothing could.
fn cgroup_from_proc(layout: &cgroups::Layout, text: &str) -> Option<cgroups::Cgroup> {
    let mut dirs = std::collections::BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.is_empty() {
            if let Some(mount) = layout.unified_mount() {
                dirs.insert(String::new(), mount.join(path.trim_start_matches('/')));
            }
            continue;
        }
        let names: Vec<&str> = controllers.split(',').collect();
        let Some(h) = layout
            .v1_hierarchies()
            .iter()
            .find(|h| h.controllers.len() == names.len() && names.iter().all(|c| h.has(c)))
        else {
            continue;
        };
        // The mount shows the hierarchy from its mountinfo root down.
        let rel = Path::new(path).strip_prefix(&h.root).ok()?;
        dirs.insert(h.key(), h.mount_point.join(rel));
    }
    if dirs.is_empty() {
        return None;
    }
    Some(cgroups::Cgroup::from_paths(cgroups::CgroupPaths {
        v2: layout.is_v2(),
        dirs,
    }))
}

#[derive(Debug)]
pub struct Shared {
    pub id: String,
    pub namespace: String,
    pub bundle: PathBuf,
    reaper: Arc<Reaper>,
    publisher: Arc<Publisher>,
    state: Mutex<State>,
    cond: Condvar,
    shutdown: Mutex<Sender<()>>,
    /// The socket this shim serves on, unlinked as shutdown begins.
    socket: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Service(Arc<Shared>);

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Name of the file in the bundle holding a process's exit.
pub fn exit_file(bundle: &Path, exec_id: &str) -> PathBuf {
    if exec_id.is_empty() {
        bundle.join("init.exit")
    } else {
        bundle.join(format!("exec-{exec_id}.exit"))
    }
}

/// Reads an exit file back: (pid, status, time).
pub fn read_exit_file(path: &Path) -> Option<(u32, u32, Timestamp)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let ts = Timestamp {
        seconds: v
            .get("exited_at_unix_nanos")?
            .as_u64()?
            .div_euclid(1_000_000_000) as i64,
        nanos: (v.get("exited_at_unix_nanos")?.as_u64()? % 1_000_000_000) as i32,
        ..Default::default()
    };
    Some((
        v.get("pid")?.as_u64()? as u32,
        v.get("exit_status")?.as_u64()? as u32,
        ts,
    ))
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(id: &str, exec_id: &str) -> ShimError {
    if exec_id.is_empty() {
        ShimError::NotFound(format!("container {id} not created"))
    } else {
        ShimError::NotFound(format!("process {exec_id} not found"))
    }
}

fn get<'a>(st: &'a mut State, id: &str, exec_id: &str) -> Result<&'a mut Proc> {
    st.procs
        .get_mut(exec_id)
        .ok_or_else(|| not_found(id, exec_id))
}

fn read_pid(path: &Path) -> Result<u32> {
    let s = std::fs::read_to_string(path).map_err(|e| ShimError::io("reading", path, e))?;
    s.trim()
        .parse()
        .map_err(|_| ShimError::FailedPrecondition(format!("bad pid file {}", path.display())))
}

impl Service {
    pub fn new(
        id: String,
        namespace: String,
        bundle: PathBuf,
        reaper: Arc<Reaper>,
        publisher: Arc<Publisher>,
        shutdown: Sender<()>,
        socket: PathBuf,
    ) -> Service {
        let shared = Arc::new(Shared {
            id,
            namespace,
            bundle,
            reaper: reaper.clone(),
            publisher,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            shutdown: Mutex::new(shutdown),
            socket,
        });
        let weak = Arc::downgrade(&shared);
        reaper.set_listener(move |pid| {
            if let Some(s) = weak.upgrade() {
                s.on_exit(pid);
            }
        });
        Service(shared)
    }

    fn runtime(&self) -> Result<Runtime> {
        lock(&self.0.state)
            .runtime
            .clone()
            .ok_or_else(|| not_found(&self.0.id, INIT))
    }
}

impl Shared {
    /// Unlinks the socket before anything else, so that a `shim start` for the same
    /// task (a restart) no longer finds this shim, which is on its way out, and
    /// starts a new one; then lets the main thread finish.
    fn begin_shutdown(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = self
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(());
    }

    fn on_exit(&self, pid: i32) {
        let mut st = lock(&self.state);
        let found = st
            .procs
            .iter()
            .find(|(_, p)| p.pid as i32 == pid && p.exit.is_none())
            .map(|(k, _)| k.clone());
        if let Some(exec_id) = found {
            self.claim_exit(&mut st, &exec_id);
        }
    }

    /// Moves a reaped exit into the process table (if the reaper has one),
    /// persists it and tells containerd.
    fn claim_exit(&self, st: &mut State, exec_id: &str) {
        let Some(p) = st.procs.get_mut(exec_id) else {
            return;
        };
        if p.pid == 0 || p.exit.is_some() {
            return;
        }
        let Some(exit) = self.reaper.take(p.pid as i32) else {
            return;
        };
        p.exit = Some(exit);
        p.status = Status::STOPPED;
        let pid = p.pid;
        let at = exit.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = serde_json::json!({
            "pid": pid,
            "exit_status": exit.status,
            "exited_at": common::rfc3339_nanos(exit.at),
            "exited_at_unix_nanos": at.as_nanos() as u64,
        });
        let path = exit_file(&self.bundle, exec_id);
        if let Err(e) = common::atomic_write(&path, record.to_string().as_bytes(), 0o644) {
            tracing::warn!("writing {}: {e}", path.display());
        }
        tracing::info!(exec_id, pid, status = exit.status, "process exited");
        let starting = p.starting;
        // An OOM kill is reported before the exit it caused, even when the
        // live watch has not seen it yet.
        self.check_oom(st);
        let Some(p) = st.procs.get_mut(exec_id) else {
            return;
        };
        if !starting {
            p.exit_published = true;
            self.publish_exit(exec_id, pid, exit);
        }
        self.cond.notify_all();
    }

    /// Publishes TaskOOM if the cgroup counts OOM kills not reported yet.
    /// Returns whether it did; None when the cgroup is unknown or gone.
    fn check_oom(&self, st: &mut State) -> Option<bool> {
        let cg = st.cgroup.as_ref().filter(|c| c.exists())?;
        let kills = cg.oom_kill_count().ok()?;
        if kills <= st.oom_kills {
            return Some(false);
        }
        st.oom_kills = kills;
        tracing::info!(kills, "OOM kill in the container's cgroup");
        self.publisher.publish(
            "/tasks/oom",
            &TaskOOM {
                container_id: self.id.clone(),
                ..Default::default()
            },
        );
        Some(true)
    }

    /// Watches the cgroup for OOM kills while the task runs, in the reaper
    /// thread. Called without the state lock (the watch callback takes it).
    fn watch_oom(self: &Arc<Self>, cg: &cgroups::Cgroup) {
        let weak = Arc::downgrade(self);
        let on_event: crate::oom::OnEvent = Box::new(move || {
            let s = weak.upgrade()?;
            let mut st = lock(&s.state);
            s.check_oom(&mut st)
        });
        let watch = match crate::oom::OomWatch::new(cg, on_event) {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("no live OOM events: {e}");
                return;
            }
        };
        match self.reaper.watch(Box::new(watch)) {
            Ok(token) => lock(&self.state).oom_watch = Some(token),
            Err(e) => tracing::warn!("no live OOM events: {e}"),
        }
    }

    /// Publishes an exit that waited for its TaskStart.
    fn publish_pending_exit(&self, st: &mut State, exec_id: &str) {
        if let Some(p) = st.procs.get_mut(exec_id)
            && let Some(exit) = p.exit
            && !p.exit_published
        {
            p.exit_published = true;
            self.publish_exit(exec_id, p.pid, exit);
        }
    }

    fn publish_exit(&self, exec_id: &str, pid: u32, exit: Exit) {
        self.publisher.publish(
            "/tasks/exit",
            &TaskExit {
                container_id: self.id.clone(),
                id: if exec_id.is_empty() {
                    self.id.clone()
                } else {
                    exec_id.to_string()
                },
                pid,
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        );
    }
}

fn parse_options(any: &Any) -> Result<Option<proto::runc_options::Options>> {
    if any.type_url.is_empty() {
        return Ok(None);
    }
    if any
        .type_url
        .trim_start_matches('/')
        .ends_with("containerd.runc.v1.Options")
    {
        let o = proto::runc_options::Options::parse_from_bytes(&any.value).map_err(|e| {
            ShimError::Decode {
                what: "containerd.runc.v1.Options",
                source: e,
            }
        })?;
        return Ok(Some(o));
    }
    tracing::warn!("ignoring create options of type {}", any.type_url);
    Ok(None)
}

impl Service {
    fn do_create(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        let s = &self.0;
        let _span = tracing::info_span!("create", id = %req.id).entered();
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented("restore from checkpoint"));
        }
        {
            let st = lock(&s.state);
            if st.procs.contains_key(INIT) {
                return Err(ShimError::AlreadyExists(format!(
                    "container {} exists",
                    req.id
                )));
            }
        }
        let bundle = if req.bundle.is_empty() {
            s.bundle.clone()
        } else {
            PathBuf::from(&req.bundle)
        };
        let opts = match req.options.as_ref() {
            Some(any) => parse_options(any)?,
            None => None,
        };
        let (binary, root) = match &opts {
            Some(o) => (
                (!o.binary_name.is_empty()).then(|| PathBuf::from(&o.binary_name)),
                (!o.root.is_empty()).then(|| PathBuf::from(&o.root)),
            ),
            None => (None, None),
        };
        let mut rt = Runtime::new(
            binary.unwrap_or_else(runtime::default_binary),
            root,
            &s.namespace,
            &bundle,
        );
        if let Some(o) = &opts {
            rt.systemd_cgroup = o.systemd_cgroup;
            rt.no_pivot_root = o.no_pivot_root;
            rt.no_new_keyring = o.no_new_keyring;
        }
        // `shim delete` runs without Create's options; it reads them back from here.
        let saved = serde_json::json!({
            "binary": rt.binary,
            "root": rt.root,
            "systemd_cgroup": rt.systemd_cgroup,
        });
        let saved_path = bundle.join("shim-runtime.json");
        common::atomic_write(&saved_path, saved.to_string().as_bytes(), 0o600)
            .map_err(|e| ShimError::io("writing", &saved_path, e))?;

        let rootfs = bundle.join("rootfs");
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(&rootfs).map_err(|e| ShimError::io("creating", &rootfs, e))?;
            crate::mount::mount_all(&req.rootfs, &rootfs)?;
        }
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let result = (|| {
            let mut prepared = stdio::prepare(&paths, &s.id, &s.namespace)?;
            let pid_file = bundle.join("init.pid");
            let bundle_s = bundle.display().to_string();
            let pid_s = pid_file.display().to_string();
            let console = prepared
                .console_socket
                .as_ref()
                .map(|p| p.display().to_string());
            let args = rt.create_args(&bundle_s, &pid_s, console.as_deref(), &req.id);
            let child = std::mem::replace(&mut prepared.child, runtime::ChildStdio::null());
            rt.run_detached(&s.reaper, &args, child)?;
            let io = prepared.finish()?;
            let pid = read_pid(&pid_file)?;
            Ok((pid, io))
        })();
        let (pid, io) = match result {
            Ok(v) => v,
            Err(e) => {
                if !req.rootfs.is_empty() {
                    crate::mount::unmount_all(&rootfs);
                }
                return Err(e);
            }
        };
        let cgroup = container_cgroup(&bundle, &req.id, pid);
        {
            let mut st = lock(&s.state);
            st.runtime = Some(rt);
            st.cgroup = cgroup.clone();
            st.oom_kills = st
                .cgroup
                .as_ref()
                .and_then(|c| c.oom_kill_count().ok())
                .unwrap_or(0);
            st.procs.insert(
                INIT.to_string(),
                Proc {
                    pid,
                    status: Status::CREATED,
                    exit: None,
                    paths,
                    io,
                    spec: Vec::new(),
                    starting: false,
                    exit_published: false,
                },
            );
            // TaskCreate first: an init that dies at once must not report its exit before it.
            s.publisher.publish(
                "/tasks/create",
                &TaskCreate {
                    container_id: req.id.clone(),
                    bundle: bundle.display().to_string(),
                    rootfs: req.rootfs.clone(),
                    io: MessageField::some(TaskIO {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        ..Default::default()
                    }),
                    pid,
                    ..Default::default()
                },
            );
            s.claim_exit(&mut st, INIT);
        }
        if let Some(cg) = &cgroup {
            s.watch_oom(cg);
        }
        tracing::info!(pid, "created");
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_start(&self, req: StartRequest) -> Result<StartResponse> {
        let s = &self.0;
        let _span = tracing::info_span!("start", id = %req.id, exec_id = %req.exec_id).entered();
        let rt = self.runtime()?;
        if req.exec_id.is_empty() {
            {
                let mut st = lock(&s.state);
                let p = get(&mut st, &req.id, INIT)?;
                if p.status != Status::CREATED || p.starting {
                    return Err(ShimError::FailedPrecondition(format!(
                        "container {} is not in created state",
                        req.id
                    )));
                }
                p.starting = true;
            }
            let ran = rt.run(&s.reaper, &["start", &req.id], None);
            let pid = {
                let mut st = lock(&s.state);
                let p = get(&mut st, &req.id, INIT)?;
                p.starting = false;
                let pid = p.pid;
                if ran.is_ok() {
                    if p.exit.is_none() {
                        p.status = Status::RUNNING;
                    }
                    s.publisher.publish(
                        "/tasks/start",
                        &TaskStart {
                            container_id: req.id.clone(),
                            pid,
                            ..Default::default()
                        },
                    );
                }
                s.publish_pending_exit(&mut st, INIT);
                pid
            };
            ran?;
            return Ok(StartResponse {
                pid,
                ..Default::default()
            });
        }
        let (spec, paths) = {
            let mut st = lock(&s.state);
            let p = get(&mut st, &req.id, &req.exec_id)?;
            if p.status != Status::CREATED || p.pid != 0 {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec {} already started",
                    req.exec_id
                )));
            }
            (p.spec.clone(), p.paths.clone())
        };
        let spec_file = s.bundle.join(format!("exec-{}.json", req.exec_id));
        let pid_file = s.bundle.join(format!("exec-{}.pid", req.exec_id));
        std::fs::write(&spec_file, &spec).map_err(|e| ShimError::io("writing", &spec_file, e))?;
        let mut prepared = stdio::prepare(&paths, &s.id, &s.namespace)?;
        let spec_s = spec_file.display().to_string();
        let pid_s = pid_file.display().to_string();
        let console = prepared
            .console_socket
            .as_ref()
            .map(|p| p.display().to_string());
        let mut args = vec![
            "exec",
            "--process",
            &spec_s,
            "--detach",
            "--pid-file",
            &pid_s,
        ];
        if let Some(c) = &console {
            args.extend(["--console-socket", c.as_str()]);
        }
        args.push(&req.id);
        let child = std::mem::replace(&mut prepared.child, runtime::ChildStdio::null());
        let ran = rt.run_detached(&s.reaper, &args, child);
        let _ = std::fs::remove_file(&spec_file);
        ran?;
        let io = prepared.finish()?;
        let pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        {
            let mut st = lock(&s.state);
            let p = get(&mut st, &req.id, &req.exec_id)?;
            p.pid = pid;
            p.status = Status::RUNNING;
            p.io = io;
            // Published before the exit can be claimed, so it always comes first.
            s.publisher.publish(
                "/tasks/exec-started",
                &TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            s.claim_exit(&mut st, &req.exec_id);
        }
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn do_delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        let s = &self.0;
        let _span = tracing::info_span!("delete", id = %req.id, exec_id = %req.exec_id).entered();
        let (status, pid) = {
            let mut st = lock(&s.state);
            let p = get(&mut st, &req.id, &req.exec_id)?;
            (p.status, p.pid)
        };
        if matches!(status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete a running process ({}/{})",
                req.id, req.exec_id
            )));
        }
        if req.exec_id.is_empty() {
            let rt = self.runtime()?;
            let watch = lock(&s.state).oom_watch.take();
            if let Some(token) = watch {
                s.reaper.unwatch(token);
            }
            // A created-but-never-started init is killed by a forced delete.
            if let Err(e) = rt.run(&s.reaper, &["delete", "--force", &req.id], None) {
                tracing::warn!("{e}");
            }
            if status == Status::CREATED {
                let deadline = Instant::now() + Duration::from_secs(2);
                let mut st = lock(&s.state);
                while st.procs.get(INIT).is_some_and(|p| p.exit.is_none())
                    && Instant::now() < deadline
                {
                    st = s
                        .cond
                        .wait_timeout(st, Duration::from_millis(50))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
            crate::mount::unmount_all(&s.bundle.join("rootfs"));
        } else if status == Status::CREATED && pid == 0 {
            // Never started: nothing ran.
        }
        let mut removed = {
            let mut st = lock(&s.state);
            st.procs
                .remove(&req.exec_id)
                .ok_or_else(|| not_found(&req.id, &req.exec_id))?
        };
        // Waiters on a process that is now gone get NotFound instead of hanging.
        s.cond.notify_all();
        removed.io.wait_drained(Duration::from_secs(2));
        let exit = removed.exit.unwrap_or(Exit {
            status: 0,
            at: SystemTime::now(),
        });
        if req.exec_id.is_empty() {
            self.exit_soon_if_idle();
            s.publisher.publish(
                "/tasks/delete",
                &TaskDelete {
                    container_id: req.id.clone(),
                    pid: removed.pid,
                    exit_status: exit.status,
                    exited_at: MessageField::some(timestamp(exit.at)),
                    ..Default::default()
                },
            );
        }
        Ok(DeleteResponse {
            pid: removed.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    /// A shim serves one task: once its init is deleted and nothing is left,
    /// it exits even if no Shutdown comes (containerd sends one; a lifecycle
    /// manager that died between the two calls would not).
    fn exit_soon_if_idle(&self) {
        let weak = Arc::downgrade(&self.0);
        let spawned = std::thread::Builder::new()
            .name("idle-exit".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                std::thread::sleep(IDLE_EXIT_AFTER);
                if let Some(s) = weak.upgrade()
                    && lock(&s.state).procs.is_empty()
                {
                    s.begin_shutdown();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("spawning idle-exit timer: {e}");
        }
    }

    fn do_state(&self, req: StateRequest) -> Result<StateResponse> {
        let s = &self.0;
        let mut st = lock(&s.state);
        let p = get(&mut st, &req.id, &req.exec_id)?;
        let mut r = StateResponse {
            id: req.id.clone(),
            bundle: s.bundle.display().to_string(),
            pid: p.pid,
            status: EnumOrUnknown::new(p.status),
            stdin: p.paths.stdin.clone(),
            stdout: p.paths.stdout.clone(),
            stderr: p.paths.stderr.clone(),
            terminal: p.paths.terminal,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        if let Some(e) = p.exit {
            r.exit_status = e.status;
            r.exited_at = MessageField::some(timestamp(e.at));
        }
        Ok(r)
    }

    fn do_kill(&self, req: KillRequest) -> Result<()> {
        let s = &self.0;
        let _span =
            tracing::info_span!("kill", id = %req.id, exec_id = %req.exec_id, signal = req.signal)
                .entered();
        let (pid, exited) = {
            let mut st = lock(&s.state);
            let p = get(&mut st, &req.id, &req.exec_id)?;
            (p.pid, p.exit.is_some())
        };
        if exited && !req.all {
            return Err(ShimError::NotFound("process already finished".into()));
        }
        if req.exec_id.is_empty() {
            let rt = self.runtime()?;
            let sig = req.signal.to_string();
            let mut args = vec!["kill"];
            if req.all {
                args.push("--all");
            }
            args.extend([req.id.as_str(), sig.as_str()]);
            return match rt.run(&s.reaper, &args, None) {
                Ok(_) => Ok(()),
                // `kill --all` after the init exited (containerd's forced
                // delete does it) reaches no one: the process is finished.
                Err(_) if exited => Err(ShimError::NotFound("process already finished".into())),
                Err(e) => Err(e),
            };
        }
        if pid == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {} not started",
                req.exec_id
            )));
        }
        let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
            .map_err(|_| ShimError::InvalidArgument(format!("bad signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .map_err(|e| ShimError::sys("kill", e))
    }

    fn do_exec(&self, req: ExecProcessRequest) -> Result<()> {
        let s = &self.0;
        let _span = tracing::info_span!("exec", id = %req.id, exec_id = %req.exec_id).entered();
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument("exec id is required".into()));
        }
        {
            let mut st = lock(&s.state);
            let init = get(&mut st, &req.id, INIT)?;
            if init.exit.is_some() {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {} is stopped",
                    req.id
                )));
            }
            if st.procs.contains_key(&req.exec_id) {
                return Err(ShimError::AlreadyExists(format!(
                    "id {}: already exists",
                    req.exec_id
                )));
            }
            st.procs.insert(
                req.exec_id.clone(),
                Proc {
                    pid: 0,
                    status: Status::CREATED,
                    exit: None,
                    paths: StdioPaths {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                    },
                    io: ProcIo::default(),
                    spec: req
                        .spec
                        .as_ref()
                        .map(|a| a.value.clone())
                        .unwrap_or_default(),
                    starting: false,
                    exit_published: false,
                },
            );
        }
        s.publisher.publish(
            "/tasks/exec-added",
            &TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    fn do_pids(&self, req: PidsRequest) -> Result<PidsResponse> {
        let s = &self.0;
        let (known, in_cgroup) = {
            let st = lock(&s.state);
            let known: HashMap<u32, String> = st
                .procs
                .iter()
                .filter(|(_, p)| p.pid != 0 && p.exit.is_none())
                .map(|(k, p)| (p.pid, k.clone()))
                .collect();
            // The cgroup lists every process without running anything.
            let in_cgroup = st
                .cgroup
                .as_ref()
                .and_then(|c| c.procs().ok())
                .filter(|p| !p.is_empty());
            (known, in_cgroup)
        };
        let pids: Vec<u32> = match in_cgroup {
            Some(p) => p.into_iter().map(|p| p as u32).collect(),
            None => self
                .runtime()
                .and_then(|rt| rt.run(&s.reaper, &["ps", "--format", "json", &req.id], None))
                .ok()
                .and_then(|out| serde_json::from_slice(&out).ok())
                .unwrap_or_else(|| known.keys().copied().collect()),
        };
        let mut processes = Vec::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = known.get(&pid).filter(|e| !e.is_empty()) {
                let details = proto::runc_options::ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                if let Ok(value) = details.write_to_bytes() {
                    info.info = MessageField::some(Any {
                        type_url: "containerd.runc.v1.ProcessDetails".into(),
                        value,
                        ..Default::default()
                    });
                }
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn do_pause(&self, id: &str, pause: bool) -> Result<()> {
        let s = &self.0;
        let _span = tracing::info_span!("pause", id, pause).entered();
        let rt = self.runtime()?;
        rt.run(
            &s.reaper,
            &[if pause { "pause" } else { "resume" }, id],
            None,
        )?;
        {
            let mut st = lock(&s.state);
            let p = get(&mut st, id, INIT)?;
            if p.exit.is_none() {
                p.status = if pause {
                    Status::PAUSED
                } else {
                    Status::RUNNING
                };
            }
        }
        if pause {
            s.publisher.publish(
                "/tasks/paused",
                &TaskPaused {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            );
        } else {
            s.publisher.publish(
                "/tasks/resumed",
                &TaskResumed {
                    container_id: id.to_string(),
                    ..Default::default()
                },
            );
        }
        Ok(())
    }

    fn do_wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        let s = &self.0;
        let mut st = lock(&s.state);
        loop {
            let p = get(&mut st, &req.id, &req.exec_id)?;
            if let Some(e) = p.exit {
                return Ok(WaitResponse {
                    exit_status: e.status,
                    exited_at: MessageField::some(timestamp(e.at)),
                    ..Default::default()
                });
            }
            st = s.cond.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

type TResult<T> = ttrpc::Result<T>;

impl proto::shim_ttrpc::Task for Service {
    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TResult<StateResponse> {
        Ok(self.do_state(req)?)
    }

    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> TResult<CreateTaskResponse> {
        self.do_create(req).map_err(|e| {
            tracing::error!("create: {e}");
            e.into()
        })
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> TResult<StartResponse> {
        self.do_start(req).map_err(|e| {
            tracing::error!("start: {e}");
            e.into()
        })
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TResult<DeleteResponse> {
        Ok(self.do_delete(req)?)
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TResult<PidsResponse> {
        Ok(self.do_pids(req)?)
    }

    fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> TResult<Empty> {
        self.do_pause(&req.id, true)?;
        Ok(Empty::new())
    }

    fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> TResult<Empty> {
        self.do_pause(&req.id, false)?;
        Ok(Empty::new())
    }

    fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> TResult<Empty> {
        Err(ShimError::Unimplemented("checkpoint").into())
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TResult<Empty> {
        self.do_kill(req)?;
        Ok(Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TResult<Empty> {
        self.do_exec(req)?;
        Ok(Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TResult<Empty> {
        let mut st = lock(&self.0.state);
        get(&mut st, &req.id, &req.exec_id)?
            .io
            .resize(req.width, req.height)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TResult<Empty> {
        let mut st = lock(&self.0.state);
        let p = get(&mut st, &req.id, &req.exec_id)?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> TResult<Empty> {
        let _span = tracing::info_span!("update", id = %req.id).entered();
        let rt = self.runtime()?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        rt.run(
            &self.0.reaper,
            &["update", "--resources", "-", &req.id],
            Some(&resources),
        )?;
        Ok(Empty::new())
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TResult<WaitResponse> {
        Ok(self.do_wait(req)?)
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TResult<StatsResponse> {
        let cgroup = {
            let mut st = lock(&self.0.state);
            get(&mut st, &req.id, INIT)?;
            st.cgroup.clone()
        };
        let cgroup = cgroup.ok_or_else(|| {
            ShimError::FailedPrecondition(format!("container {}: cgroup unknown", req.id))
        })?;
        Ok(StatsResponse {
            stats: MessageField::some(crate::metrics::collect(&cgroup)?),
            ..Default::default()
        })
    }

    fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> TResult<ConnectResponse> {
        let task_pid = lock(&self.0.state)
            .procs
            .get(INIT)
            .map(|p| p.pid)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> TResult<Empty> {
        if !req.now && !lock(&self.0.state).procs.is_empty() {
            return Ok(Empty::new());
        }
        self.0.begin_shutdown();
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_lines_map_onto_the_mounts() {
        let layout = cgroups::Layout::from_mountinfo(
            "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
             31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             32 25 0:28 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let cg = cgroup_from_proc(
            &layout,
            "5:memory:/ns/ctr\n4:cpuacct,cpu:/ns/ctr\n0::/ns/ctr\n",
        )
        .unwrap();
        assert!(!cg.is_v2());
        assert_eq!(
            cg.dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/ns/ctr"))
        );
        assert_eq!(
            cg.dir("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/ns/ctr"))
        );
        assert_eq!(
            cg.unified_dir(),
            Some(Path::new("/sys/fs/cgroup/unified/ns/ctr"))
        );
    }
}
