//! Tasks through shim v2 binaries, as containerd's runtime v2 does: each task has a
//! bundle under `<state>/io.containerd.runtime.v2.task/<ns>/<id>`, a shim started with
//! `<shim> ... start` in it, and a ttrpc connection to the address the shim printed.
//! The shim writes that address into the bundle, so a restarted daemon finds its
//! shims again by scanning the bundles.
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_grpc::prost_types;
use proto::protobuf::{Message, MessageField};
use proto::shim_ttrpc::TaskClient;
use tonic::Status;

use crate::config::Config;

pub const RUNC_V2: &str = "io.containerd.runc.v2";
pub const OCIRUN_V2: &str = "io.containerd.ocirun.v2";
const TASK_DIR: &str = "io.containerd.runtime.v2.task";
/// A file of ours in the bundle naming the shim binary, so `shim delete` after a
/// restart runs the same shim that started the task.
const SHIM_FILE: &str = "lite-shim";
/// Calls that do work in the shim (create runs the OCI runtime) get this long.
const CALL_TIMEOUT_NS: i64 = 60_000_000_000;

/// How a task's shim is reached, or what is left of a task whose shim died.
pub enum Conn {
    Live(TaskClient),
    Dead {
        pid: u32,
        exit_status: u32,
        exited_at: Option<prost_types::Timestamp>,
    },
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Live(_) => f.write_str("Live"),
            Conn::Dead { exit_status, .. } => write!(f, "Dead({exit_status})"),
        }
    }
}

pub struct Task {
    pub ns: String,
    pub id: String,
    pub bundle: PathBuf,
    pub shim: PathBuf,
    pub conn: Conn,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("ns", &self.ns)
            .field("id", &self.id)
            .field("bundle", &self.bundle)
            .field("live", &matches!(self.conn, Conn::Live(_)))
            .finish()
    }
}

/// Everything Tasks.Create needs from the container record and the request.
#[derive(Debug, Clone)]
pub struct CreateParams {
    pub ns: String,
    pub id: String,
    pub runtime: String,
    pub spec: Vec<u8>,
    pub rootfs: Vec<proto::mount::Mount>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    pub options: Option<prost_types::Any>,
}

#[derive(Debug)]
pub struct TaskManager {
    state: PathBuf,
    address: PathBuf,
    publish_binary: PathBuf,
    runtimes: BTreeMap<String, PathBuf>,
    tasks: Mutex<HashMap<(String, String), Arc<Task>>>,
}

pub fn ctx(timeout_ns: i64) -> proto::ttrpc::context::Context {
    proto::ttrpc::context::with_timeout(timeout_ns)
}

pub fn call_ctx() -> proto::ttrpc::context::Context {
    ctx(CALL_TIMEOUT_NS)
}

/// A ttrpc failure as the gRPC status containerd would return: the shim's own status
/// code when it sent one.
pub fn ttrpc_status(what: &str, e: proto::ttrpc::Error) -> Status {
    match e {
        proto::ttrpc::Error::RpcStatus(s) => Status::new(
            tonic::Code::from_i32(s.code.value()),
            format!("{what}: {}", s.message),
        ),
        other => Status::unavailable(format!("{what}: shim connection: {other}")),
    }
}

pub fn to_any(a: &prost_types::Any) -> proto::protobuf::well_known_types::any::Any {
    proto::protobuf::well_known_types::any::Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
        ..Default::default()
    }
}

pub fn from_any(a: &proto::protobuf::well_known_types::any::Any) -> prost_types::Any {
    prost_types::Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
    }
}

pub fn from_ts(
    t: &MessageField<proto::protobuf::well_known_types::timestamp::Timestamp>,
) -> Option<prost_types::Timestamp> {
    t.as_ref().map(|t| prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// `name` on PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Our shim: next to this binary first (a build tree or an install keeps them
/// together), then on PATH.
fn our_shim() -> PathBuf {
    let names = ["containerd-shim-ocirun-v2", "shim"];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    names
        .iter()
        .find_map(|n| on_path(n))
        .unwrap_or_else(|| PathBuf::from(names[0]))
}

fn lock(
    m: &Mutex<HashMap<(String, String), Arc<Task>>>,
) -> MutexGuard<'_, HashMap<(String, String), Arc<Task>>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TaskManager {
    pub fn new(config: &Config, state: &Path) -> TaskManager {
        let mut runtimes = BTreeMap::new();
        let ours = our_shim();
        runtimes.insert(RUNC_V2.to_string(), ours.clone());
        runtimes.insert(OCIRUN_V2.to_string(), ours);
        for (name, entry) in &config.runtimes {
            if let Some(shim) = &entry.shim {
                let path = if shim.components().count() == 1 {
                    on_path(&shim.to_string_lossy()).unwrap_or_else(|| shim.clone())
                } else {
                    shim.clone()
                };
                runtimes.insert(name.clone(), path);
            }
        }
        let publish_binary =
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("containerd-lite"));
        TaskManager {
            state: state.to_path_buf(),
            address: config.address(),
            publish_binary,
            runtimes,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// The shim for a runtime name: configured or built in, else containerd's rule
    /// (`io.containerd.X.vN` is `containerd-shim-X-vN` on PATH).
    pub fn shim_for(&self, runtime: &str) -> Result<PathBuf, Status> {
        let runtime = if runtime.is_empty() { RUNC_V2 } else { runtime };
        if let Some(p) = self.runtimes.get(runtime) {
            return Ok(p.clone());
        }
        let parts: Vec<&str> = runtime.split('.').collect();
        if parts.len() >= 3 {
            let name = format!(
                "containerd-shim-{}-{}",
                parts[parts.len() - 2],
                parts[parts.len() - 1]
            );
            if let Some(p) = on_path(&name) {
                return Ok(p);
            }
        }
        Err(Status::not_found(format!(
            "runtime {runtime:?}: no shim configured or on PATH"
        )))
    }

    fn bundle(&self, ns: &str, id: &str) -> PathBuf {
        self.state.join(TASK_DIR).join(ns).join(id)
    }

    pub fn get(&self, ns: &str, id: &str) -> Result<Arc<Task>, Status> {
        lock(&self.tasks)
            .get(&(ns.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| Status::not_found(format!("task {id}: not found")))
    }

    pub fn list(&self, ns: &str) -> Vec<Arc<Task>> {
        let mut v: Vec<Arc<Task>> = lock(&self.tasks)
            .values()
            .filter(|t| t.ns == ns)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn shim_command(
        &self,
        shim: &Path,
        ns: &str,
        id: &str,
        bundle: &Path,
        action: &str,
    ) -> Command {
        let mut c = Command::new(shim);
        c.arg("-namespace")
            .arg(ns)
            .arg("-id")
            .arg(id)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .arg(action)
            // What containerd 1.6 sets for its shims (runc's shim reads them).
            .env("GRPC_ADDRESS", &self.address)
            .env("TTRPC_ADDRESS", format!("{}.ttrpc", self.address.display()))
            .env("NAMESPACE", ns)
            .current_dir(bundle)
            .stdin(Stdio::null());
        c
    }

    /// Blocking: starts the shim and creates the task in it. Returns the init pid.
    pub fn create(&self, p: CreateParams) -> Result<u32, Status> {
        let _span = tracing::info_span!("task.create", ns = %p.ns, id = %p.id).entered();
        let key = (p.ns.clone(), p.id.clone());
        if lock(&self.tasks).contains_key(&key) {
            return Err(Status::already_exists(format!(
                "task {}: already exists",
                p.id
            )));
        }
        let shim = self.shim_for(&p.runtime)?;
        let bundle = self.bundle(&p.ns, &p.id);
        if bundle.exists() {
            // Left by a task whose record went (a failed create): start clean.
            remove_bundle(&bundle);
        }
        let io = |e: std::io::Error| Status::internal(format!("bundle {}: {e}", bundle.display()));
        std::fs::create_dir_all(bundle.join("rootfs")).map_err(io)?;
        let setup = || -> Result<Task, Status> {
            common::atomic_write(&bundle.join("config.json"), &p.spec, 0o644).map_err(io)?;
            common::atomic_write(
                &bundle.join(SHIM_FILE),
                shim.as_os_str().as_encoded_bytes(),
                0o644,
            )
            .map_err(io)?;
            relay_shim_log(&bundle, &p.ns, &p.id).map_err(io)?;
            let out = self
                .shim_command(&shim, &p.ns, &p.id, &bundle, "start")
                .output()
                .map_err(|e| Status::internal(format!("running {}: {e}", shim.display())))?;
            if !out.status.success() {
                return Err(Status::internal(format!(
                    "{} start: {}",
                    shim.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
            tracing::debug!(%address, shim = %shim.display(), "shim started");
            let client = proto::ttrpc::Client::connect(&address)
                .map_err(|e| Status::unavailable(format!("connecting to shim {address}: {e}")))?;
            let client = TaskClient::new(client);
            let req = proto::shim::CreateTaskRequest {
                id: p.id.clone(),
                bundle: bundle.display().to_string(),
                rootfs: p.rootfs.clone(),
                terminal: p.terminal,
                stdin: p.stdin.clone(),
                stdout: p.stdout.clone(),
                stderr: p.stderr.clone(),
                options: p.options.as_ref().map(to_any).into(),
                ..Default::default()
            };
            let task = Task {
                ns: p.ns.clone(),
                id: p.id.clone(),
                bundle: bundle.clone(),
                shim: shim.clone(),
                conn: Conn::Live(client.clone()),
            };
            match client.create(call_ctx(), &req) {
                Ok(_) => Ok(task),
                Err(e) => {
                    let _ = client.shutdown(
                        ctx(5_000_000_000),
                        &proto::shim::ShutdownRequest {
                            id: p.id.clone(),
                            now: true,
                            ..Default::default()
                        },
                    );
                    Err(ttrpc_status("shim create", e))
                }
            }
        };
        match setup() {
            Ok(task) => {
                let pid = self.pid_of(&task);
                lock(&self.tasks).insert(key, Arc::new(task));
                Ok(pid)
            }
            Err(e) => {
                let _ = self
                    .shim_command(&shim, &p.ns, &p.id, &bundle, "delete")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                remove_bundle(&bundle);
                Err(e)
            }
        }
    }

    fn pid_of(&self, task: &Task) -> u32 {
        match &task.conn {
            Conn::Live(c) => c
                .state(
                    call_ctx(),
                    &proto::shim::StateRequest {
                        id: task.id.clone(),
                        ..Default::default()
                    },
                )
                .map(|s| s.pid)
                .unwrap_or(0),
            Conn::Dead { pid, .. } => *pid,
        }
    }

    /// Blocking: deletes the task in its shim, stops the shim and removes the bundle.
    pub fn delete(
        &self,
        ns: &str,
        id: &str,
    ) -> Result<(u32, u32, Option<prost_types::Timestamp>), Status> {
        let _span = tracing::info_span!("task.delete", %ns, %id).entered();
        let task = self.get(ns, id)?;
        let result = match &task.conn {
            Conn::Live(c) => {
                let r = c
                    .delete(
                        call_ctx(),
                        &proto::shim::DeleteRequest {
                            id: id.to_string(),
                            ..Default::default()
                        },
                    )
                    .map_err(|e| ttrpc_status("shim delete", e))?;
                // The shim exits on Shutdown, which can cut the reply off: not an error.
                let _ = c.shutdown(
                    ctx(5_000_000_000),
                    &proto::shim::ShutdownRequest {
                        id: id.to_string(),
                        ..Default::default()
                    },
                );
                (r.pid, r.exit_status, from_ts(&r.exited_at))
            }
            Conn::Dead {
                pid,
                exit_status,
                exited_at,
            } => (*pid, *exit_status, *exited_at),
        };
        remove_bundle(&task.bundle);
        lock(&self.tasks).remove(&(ns.to_string(), id.to_string()));
        Ok(result)
    }

    /// Blocking, at start-up: reconnects to the shims of the bundles under the state
    /// dir; a bundle whose shim is gone is cleaned with `shim delete`, keeping the exit
    /// it reports so Get/Wait/Delete still give it.
    pub fn recover(&self) {
        let root = self.state.join(TASK_DIR);
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        for ns_entry in namespaces.flatten() {
            let ns = ns_entry.file_name().to_string_lossy().into_owned();
            let Ok(ids) = std::fs::read_dir(ns_entry.path()) else {
                continue;
            };
            for id_entry in ids.flatten() {
                let id = id_entry.file_name().to_string_lossy().into_owned();
                let bundle = id_entry.path();
                let _span = tracing::info_span!("task.recover", %ns, %id).entered();
                let shim = std::fs::read(bundle.join(SHIM_FILE))
                    .ok()
                    .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()))
                    .unwrap_or_else(our_shim);
                let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
                    tracing::info!("bundle without a shim address: removing");
                    remove_bundle(&bundle);
                    continue;
                };
                let live = reconnect(address.trim(), &id, &bundle);
                let conn = match live {
                    Some(c) => {
                        tracing::info!(address = %address.trim(), "reconnected to shim");
                        if let Err(e) = relay_shim_log(&bundle, &ns, &id) {
                            tracing::warn!(error = %e, "shim log not relayed");
                        }
                        Conn::Live(c)
                    }
                    None => {
                        let out = self
                            .shim_command(&shim, &ns, &id, &bundle, "delete")
                            .stderr(Stdio::piped())
                            .output();
                        let resp = out
                            .ok()
                            .and_then(|o| {
                                proto::shim::DeleteResponse::parse_from_bytes(&o.stdout).ok()
                            })
                            .unwrap_or_default();
                        tracing::info!(
                            exit_status = resp.exit_status,
                            "shim gone: cleaned up, exit recorded"
                        );
                        Conn::Dead {
                            pid: resp.pid,
                            exit_status: resp.exit_status,
                            exited_at: from_ts(&resp.exited_at),
                        }
                    }
                };
                let task = Task {
                    ns: ns.clone(),
                    id: id.clone(),
                    bundle,
                    shim,
                    conn,
                };
                lock(&self.tasks).insert((ns.clone(), id), Arc::new(task));
            }
        }
    }
}

/// How long a shim whose process still runs may take to answer at start-up
/// before it counts as gone: `shim delete` would kill its container, so a shim
/// that is only slow (a loaded host) must not be taken for a dead one.
const LIVE_SHIM_PATIENCE: Duration = Duration::from_secs(30);

/// Connects to the shim of a bundle found at start-up, retrying while its process
/// (`shim.pid` in the bundle) is alive.
fn reconnect(address: &str, id: &str, bundle: &Path) -> Option<TaskClient> {
    let deadline = Instant::now() + LIVE_SHIM_PATIENCE;
    loop {
        let client = proto::ttrpc::Client::connect(address)
            .ok()
            .map(TaskClient::new)
            .filter(|c| {
                c.connect(
                    ctx(5_000_000_000),
                    &proto::shim::ConnectRequest {
                        id: id.to_string(),
                        ..Default::default()
                    },
                )
                .is_ok()
            });
        if client.is_some() {
            return client;
        }
        if !shim_process_alive(bundle) || Instant::now() >= deadline {
            return None;
        }
        tracing::info!("the shim runs but does not answer yet: retrying");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the process in the bundle's `shim.pid` exists and is not a zombie.
fn shim_process_alive(bundle: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    // The state is the field after the parenthesised command name.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Removes a bundle, never through a rootfs that is still mounted (that would delete
/// the container's files in its snapshot).
fn remove_bundle(bundle: &Path) {
    // Ends a relay thread still waiting for a writer (a shim that never started).
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(bundle.join("log"));
    let rootfs = bundle.join("rootfs");
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    if let Ok(entries) = std::fs::read_dir(bundle) {
        for e in entries.flatten() {
            let p = e.path();
            if p == rootfs {
                let _ = std::fs::remove_dir(&p);
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(bundle) {
        tracing::warn!(bundle = %bundle.display(), error = %e, "bundle left behind");
    }
}

/// containerd gives each shim a `log` FIFO in its bundle and copies what the shim
/// writes there into its own log; runc's shim refuses to run without it. The reader
/// opens in a thread (the open waits for the shim) and ends when the shim closes it.
fn relay_shim_log(bundle: &Path, ns: &str, id: &str) -> std::io::Result<()> {
    let path = bundle.join("log");
    if !path.exists() {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o700))
            .map_err(std::io::Error::from)?;
    }
    let (ns, id) = (ns.to_string(), id.to_string());
    std::thread::Builder::new()
        .name("shim-log".into())
        .spawn(move || {
            let Ok(f) = std::fs::File::open(&path) else {
                return;
            };
            for line in std::io::BufRead::lines(std::io::BufReader::new(f)).map_while(Result::ok) {
                tracing::debug!(target: "shim", %ns, %id, "{line}");
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names_resolve_through_config_then_defaults_then_path() {
        let config: Config =
            toml::from_str("[runtimes.\"io.containerd.runc.v2\"]\nshim = \"/opt/other-shim\"\n")
                .unwrap();
        let m = TaskManager::new(&config, Path::new("/nonexistent"));
        assert_eq!(
            m.shim_for(RUNC_V2).unwrap(),
            PathBuf::from("/opt/other-shim")
        );
        assert_eq!(m.shim_for("").unwrap(), PathBuf::from("/opt/other-shim"));
        assert_eq!(m.shim_for(OCIRUN_V2).unwrap(), our_shim());
        assert_eq!(
            m.shim_for("io.containerd.nosuch.v9").unwrap_err().code(),
            tonic::Code::NotFound
        );
    }
}
