//! Containers and execs: records persisted under the data root, lifecycles driven
//! through containerd's containers, snapshots and tasks services. A container's
//! output never passes through engined: the shim writes it to the json-file log
//! (`jsonfile://` stdio), which logs and attach follow, so containers and their
//! logs carry on while engined or containerd restart (live restore).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bollard_stubs::models::{ContainerConfig, ExecConfig, HostConfig};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, UsageRequest,
};
use containerd_client::services::v1::{
    CloseIoRequest, Container as CtrContainer, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    GetRequest, KillRequest, ListPidsRequest, MetricsRequest, PauseTaskRequest, ResizePtyRequest,
    ResumeTaskRequest, StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::services::v1::{CreateRequest as LeaseCreate, DeleteRequest as LeaseDelete};
use containerd_client::tonic::Code;
use containerd_client::types::Mount;
use containerd_client::types::v1::Status as TaskStatus;
use prost::Message;
use prost_types::Any;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tracing::{debug, info, instrument, warn};

use crate::config::Config;
use crate::ctrd::{Ctrd, PROCESS_TYPE, RUNC_OPTIONS_TYPE, RuncOptions, SPEC_TYPE};
use crate::error::{ApiError, ApiResult, Context};
use crate::images::{ImageInfo, ImageStore};
use crate::restart::{Backoff, Policy};
use crate::{spec, stats, util};

/// The runtime type of every task: our shim, which writes the json-file log.
/// containerd-lite has it built in; real containerd finds it as
/// `containerd-shim-ocirun-v2` on its PATH (`make install`).
pub const RUNTIME_TYPE: &str = "io.containerd.ocirun.v2";

/// The persisted record of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image as the user typed it.
    pub image: String,
    pub image_id: String,
    pub chain_id: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub log_path: PathBuf,
    #[serde(default)]
    pub restart_count: i64,
    /// Set by stop and kill, cleared by start: `unless-stopped` does not restart
    /// such a container, even when engined starts again.
    #[serde(default)]
    pub manually_stopped: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// created, running, paused, exited, dead.
    pub status: String,
    pub pid: i64,
    pub exit_code: i64,
    pub started_at: String,
    pub finished_at: String,
    pub error: String,
}

impl State {
    /// A task exists: running, or paused.
    pub fn running(&self) -> bool {
        self.status == "running" || self.status == "paused"
    }
}

/// What waiters watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Life {
    pub exits: u64,
    pub exit_code: i64,
    pub running: bool,
    pub removed: bool,
}

#[derive(Debug)]
pub struct Container {
    pub id: String,
    rec: Mutex<Record>,
    life: watch::Sender<Life>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// Serializes start, stop and remove of this container.
    op: tokio::sync::Mutex<()>,
    spec: Mutex<Option<Value>>,
    /// A stop, kill or remove of the current run: its exit restarts nothing.
    restart_cancelled: AtomicBool,
    backoff: Mutex<Backoff>,
    /// Followers of the log (attach, logs -f) that have not yet read the end of
    /// the current run: `--rm` waits for them before the log goes.
    readers: watch::Sender<usize>,
}

/// Held by a log follower until it has read the end of the run it follows.
#[derive(Debug)]
pub struct ReaderGuard(Arc<Container>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.readers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Container {
    fn new(rec: Record) -> Arc<Self> {
        let running = rec.state.running();
        let (life, _) = watch::channel(Life {
            exit_code: rec.state.exit_code,
            running,
            ..Default::default()
        });
        Arc::new(Self {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            life,
            stdin: tokio::sync::Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
            spec: Mutex::new(None),
            restart_cancelled: AtomicBool::new(false),
            backoff: Mutex::new(Backoff::default()),
            readers: watch::channel(0).0,
        })
    }

    pub fn record(&self) -> Record {
        lock(&self.rec).clone()
    }

    pub fn name(&self) -> String {
        lock(&self.rec).name.clone()
    }

    pub fn tty(&self) -> bool {
        lock(&self.rec).config.tty.unwrap_or(false)
    }

    pub fn running(&self) -> bool {
        lock(&self.rec).state.running()
    }

    pub fn status(&self) -> String {
        lock(&self.rec).state.status.clone()
    }

    pub fn life(&self) -> Life {
        *self.life.borrow()
    }

    /// Keeps the container from starting, stopping or going meanwhile (cp on a
    /// stopped container mounts its rootfs snapshot).
    pub async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.op.lock().await
    }

    /// Registers a follower of the log; see [`ReaderGuard`].
    pub fn reader(self: &Arc<Self>) -> ReaderGuard {
        self.readers.send_modify(|n| *n += 1);
        ReaderGuard(self.clone())
    }

    pub fn subscribe_life(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }

    /// Writes `data` to the container's stdin, if it has one open.
    pub async fn write_stdin(&self, data: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        let mut g = self.stdin.lock().await;
        match g.as_mut() {
            Some(w) => w.write_all(data).await.is_ok(),
            None => false,
        }
    }

    /// Closes the container's stdin (the process reads EOF).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a record half-written (every
    // update assigns whole fields), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    pub started: bool,
}

#[derive(Debug)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub state: Mutex<ExecState>,
}

impl Exec {
    pub fn state(&self) -> ExecState {
        lock(&self.state).clone()
    }
}

/// The FIFOs of one process, with our ends open.
#[derive(Debug)]
pub struct Fifos {
    pub stdin_path: Option<PathBuf>,
    pub stdout_path: PathBuf,
    pub stderr_path: Option<PathBuf>,
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: Option<pipe::Receiver>,
    /// Write ends held until the shim has opened its own, so that our readers do not
    /// see EOF before the process has even started.
    keepalive: Vec<pipe::Sender>,
}

impl Fifos {
    fn create(dir: &Path, prefix: &str, stdin: bool, stderr: bool) -> ApiResult<Self> {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        let make = |name: &str| -> ApiResult<PathBuf> {
            let p = dir.join(format!("{prefix}{name}"));
            let _ = std::fs::remove_file(&p);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .ctx(|| format!("mkfifo {}", p.display()))?;
            Ok(p)
        };
        let stdout_path = make("stdout")?;
        let stderr_path = if stderr { Some(make("stderr")?) } else { None };
        let stdin_path = if stdin { Some(make("stdin")?) } else { None };
        let open_rx = |p: &Path| {
            pipe::OpenOptions::new()
                .open_receiver(p)
                .ctx(|| format!("open {}", p.display()))
        };
        let open_tx = |p: &Path| {
            pipe::OpenOptions::new()
                .open_sender(p)
                .ctx(|| format!("open {}", p.display()))
        };
        let stdout = open_rx(&stdout_path)?;
        let mut keepalive = vec![open_tx(&stdout_path)?];
        let stderr = match &stderr_path {
            Some(p) => {
                let rx = open_rx(p)?;
                keepalive.push(open_tx(p)?);
                Some(rx)
            }
            None => None,
        };
        // O_RDWR: a FIFO opened for writing alone needs a reader already there.
        let stdin = match &stdin_path {
            Some(p) => Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .ctx(|| format!("open {}", p.display()))?,
            ),
            None => None,
        };
        Ok(Self {
            stdin_path,
            stdout_path,
            stderr_path,
            stdin,
            stdout,
            stderr,
            keepalive,
        })
    }

    fn path_str(p: &Option<PathBuf>) -> String {
        p.as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Daemon {
    pub cfg: Config,
    pub ctrd: Ctrd,
    pub images: ImageStore,
    containers: RwLock<HashMap<String, Arc<Container>>>,
    execs: Mutex<HashMap<String, Arc<Exec>>>,
    pub started: Instant,
    pub events: crate::events::Hub,
}

/// The body of `POST /containers/create`.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<HostConfig>,
}

impl Daemon {
    pub async fn new(cfg: Config, ctrd: Ctrd) -> ApiResult<Arc<Self>> {
        for d in [
            cfg.data_root.join("containers"),
            cfg.data_root.join("tmp"),
            cfg.data_root.join("volumes"),
            cfg.exec_root.clone(),
        ] {
            std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        }
        let images = ImageStore::new(ctrd.clone(), cfg.data_root.join("tmp"));
        images.refresh().await?;
        let d = Arc::new(Self {
            cfg,
            ctrd,
            images,
            containers: RwLock::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            started: Instant::now(),
            events: crate::events::Hub::new(),
        });
        d.restore().await;
        Ok(d)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    fn fifo_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join(id)
    }

    fn save(&self, rec: &Record) -> ApiResult<()> {
        let data = serde_json::to_vec(rec)
            .map_err(|e| ApiError::Internal(format!("encode record: {e}")))?;
        let p = self.container_dir(&rec.id).join("config.v2.json");
        common::atomic_write(&p, &data, 0o600).ctx(|| format!("write {}", p.display()))
    }

    /// Loads the records of a previous run and takes its containers back: with live
    /// restore a task that still runs is watched again (its shim kept writing the
    /// log), one that exited meanwhile gets its true exit code and time from its shim;
    /// then containers whose restart policy says so are started.
    async fn restore(self: &Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(self.cfg.data_root.join("containers")) else {
            return;
        };
        let mut restored = Vec::new();
        for e in entries.flatten() {
            let p = e.path().join("config.v2.json");
            let Ok(data) = std::fs::read(&p) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<Record>(&data) else {
                warn!(path = %p.display(), "unreadable container record");
                continue;
            };
            let c = Container::new(rec);
            self.write_containers().insert(c.id.clone(), c.clone());
            restored.push(c);
        }
        for c in restored {
            let rec = c.record();
            if rec.state.status == "restarting" {
                // Its restart was due when the last engined stopped.
                self.schedule_start(c, Duration::ZERO);
            } else if rec.state.running() {
                self.restore_task(&c).await;
            } else {
                let policy = Policy::of(&rec.host_config);
                if policy.should_restart(
                    rec.state.exit_code,
                    rec.manually_stopped,
                    rec.restart_count,
                ) && !rec.state.started_at.is_empty()
                {
                    self.schedule_start(c, Duration::ZERO);
                }
            }
        }
    }

    /// Reattaches to the task of a container that ran when the last engined stopped.
    #[instrument(skip_all, fields(container_id = %c.id))]
    async fn restore_task(self: &Arc<Self>, c: &Arc<Container>) {
        let got = self
            .ctrd
            .tasks()
            .get(self.ctrd.req(GetRequest {
                container_id: c.id.clone(),
                exec_id: String::new(),
            }))
            .await;
        let process = match got {
            Ok(r) => r.into_inner().process,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => {
                warn!(error = %s.message(), "asking containerd for the task failed");
                None
            }
        };
        let Some(process) = process else {
            // No task: containerd lost it (its state went with a reboot); the exit
            // code is unknown, as dockerd records it.
            info!("the task is gone: recording the container as exited");
            self.record_exit(c, 255, SystemTime::now(), "").await;
            return;
        };
        if !self.cfg.live_restore {
            // Without live restore, containers do not outlive engined.
            let _ = self.signal(c, 9, true).await;
        } else if process.status != TaskStatus::Stopped as i32 {
            let paused = process.status == TaskStatus::Paused as i32;
            {
                let mut r = lock(&c.rec);
                r.state.status = if paused { "paused" } else { "running" }.into();
                r.state.pid = i64::from(process.pid);
                let _ = self.save(&r);
            }
            c.life.send_modify(|l| l.running = true);
            if c.record().config.open_stdin.unwrap_or(false) {
                match open_stdin_fifo(&self.fifo_dir(&c.id).join("stdin")) {
                    Ok(w) => *c.stdin.lock().await = Some(w),
                    Err(e) => warn!(error = %e, "reopening stdin failed"),
                }
            }
            info!(pid = process.pid, "reattached to the running task");
        }
        let d = self.clone();
        let c = c.clone();
        tokio::spawn(async move { d.reap(c).await });
    }

    /// On SIGTERM: with live restore the containers keep running under their shims;
    /// without it they are stopped, as dockerd stops them.
    pub async fn shutdown(self: &Arc<Self>) {
        if self.cfg.live_restore {
            return;
        }
        let running: Vec<_> = self.all().into_iter().filter(|c| c.running()).collect();
        let stops = running.iter().map(|c| async move {
            // Not a user's stop: restart policies still apply at the next start.
            c.restart_cancelled.store(true, Ordering::SeqCst);
            if let Err(e) = self.terminate(c, None).await {
                warn!(container_id = %c.id, error = %e, "stopping at shutdown");
            }
        });
        futures_util::future::join_all(stops).await;
    }

    fn read_containers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_containers(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn all(&self) -> Vec<Arc<Container>> {
        self.read_containers().values().cloned().collect()
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn find(&self, name: &str) -> ApiResult<Arc<Container>> {
        let map = self.read_containers();
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let bare = name.trim_start_matches('/');
        if let Some(c) = map.values().find(|c| c.name() == bare) {
            return Ok(c.clone());
        }
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut it = map.values().filter(|c| c.id.starts_with(name));
            match (it.next(), it.next()) {
                (Some(c), None) => return Ok(c.clone()),
                (Some(_), Some(_)) => {
                    return Err(ApiError::NotFound(format!(
                        "multiple IDs found with provided prefix: {name}"
                    )));
                }
                _ => {}
            }
        }
        Err(ApiError::no_such_container(name))
    }

    /// Whether some container uses image `id` (for rmi).
    pub fn image_user(&self, image_id: &str) -> Option<String> {
        self.read_containers()
            .values()
            .find(|c| lock(&c.rec).image_id == image_id)
            .map(|c| c.id.clone())
    }

    #[instrument(skip_all, fields(container_id))]
    pub async fn create(&self, name: Option<String>, body: CreateBody) -> ApiResult<String> {
        let mut config = body.config;
        let host = body.host_config.unwrap_or_default();
        let image_name = config
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::BadRequest("config.Image must be set".into()))?;
        if let Some(ports) = &host.port_bindings
            && !ports.is_empty()
        {
            return Err(ApiError::BadRequest(
                "port publishing (-p) is not supported yet: engined has no container networking; use --network host or none".into(),
            ));
        }
        match host.network_mode.as_deref().unwrap_or("default") {
            "default" | "none" | "host" | "bridge" | "" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "network mode {other:?} is not supported (only none and host)"
                )));
            }
        }
        let image = self
            .images
            .lookup(&image_name)
            .await
            .ok_or_else(|| ApiError::NotFound(format!("No such image: {image_name}")))?;
        let generated = name.as_deref().is_none_or(str::is_empty);
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.trim_start_matches('/').to_string();
                let valid = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(ApiError::BadRequest(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n
            }
            None => util::random_name(),
        };
        let id = util::new_id();
        tracing::Span::current().record("container_id", id.as_str());
        merge_image_config(&mut config, &image);
        let mut cmdline: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        cmdline.extend(config.cmd.clone().unwrap_or_default());
        if cmdline.is_empty() {
            return Err(ApiError::BadRequest("no command specified".into()));
        }
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(if host.network_mode.as_deref() == Some("host") {
                nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| id[..12].to_string())
            } else {
                id[..12].to_string()
            });
        }
        if let Some(lc) = &host.log_config
            && let Some(t) = lc.typ.as_deref()
            && !t.is_empty()
            && t != "json-file"
        {
            return Err(ApiError::BadRequest(format!(
                "logging driver {t:?} is not supported (only json-file)"
            )));
        }
        self.log_rotation(&host)?;
        Policy::validate(&host)?;
        if self
            .cfg
            .runtime_binary(host.runtime.as_deref().unwrap_or(""))
            .is_none()
        {
            return Err(ApiError::BadRequest(format!(
                "unknown or invalid runtime name: {}",
                host.runtime.as_deref().unwrap_or("")
            )));
        }
        let dir = self.container_dir(&id);
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: common::rfc3339_nanos(SystemTime::now()),
            image: image_name,
            image_id: image.id.clone(),
            chain_id: image.chain_id.clone(),
            path: cmdline[0].clone(),
            args: cmdline[1..].to_vec(),
            config,
            host_config: host,
            state: State {
                status: "created".into(),
                ..Default::default()
            },
            log_path: dir.join(format!("{id}-json.log")),
            restart_count: 0,
            manually_stopped: false,
        };
        // Reserve the name before any slow work; a concurrent create with the same
        // name must fail with 409.
        let (c, rec) = {
            let mut map = self.write_containers();
            let mut rec = rec;
            if generated {
                // A generated name that is taken: another one, then a numbered one,
                // as dockerd does.
                let taken = |n: &str| map.values().any(|c| c.name() == n);
                for attempt in 0.. {
                    if !taken(&rec.name) {
                        break;
                    }
                    rec.name = if attempt < 10 {
                        util::random_name()
                    } else {
                        format!("{}{}", util::random_name(), attempt)
                    };
                }
            }
            let name = rec.name.clone();
            if let Some(other) = map.values().find(|c| c.name() == name) {
                return Err(ApiError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            let c = Container::new(rec.clone());
            map.insert(id.clone(), c.clone());
            (c, rec)
        };
        match self.materialize(&rec).await {
            Ok(spec) => *lock(&c.spec) = Some(spec),
            Err(e) => {
                self.write_containers().remove(&id);
                let _ = std::fs::remove_dir_all(&dir);
                self.drop_ctrd_objects(&id).await;
                crate::volumes::remove_anonymous_of(self, &id);
                return Err(e);
            }
        }
        drop(c);
        info!(name = %rec.name, "created");
        self.events.container(&rec, "create", &[]);
        Ok(id)
    }

    /// Creates the container's directory, its /etc files, its rootfs snapshot and
    /// the containerd container record (with the spec).
    async fn materialize(&self, rec: &Record) -> ApiResult<Value> {
        // Until the container record references the new snapshot, only a lease keeps
        // containerd's garbage collector (which a concurrent removal may trigger)
        // from deleting it.
        let lease = format!("engined-create-{}", rec.id);
        self.ctrd
            .leases()
            .create(self.ctrd.req(LeaseCreate {
                id: lease.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".to_string(),
                    common::rfc3339_nanos(SystemTime::now() + Duration::from_secs(600)),
                )]),
            }))
            .await
            .ctx(|| "create lease".into())?;
        let made = self.materialize_leased(rec, &lease).await;
        let _ = self
            .ctrd
            .leases()
            .delete(self.ctrd.req(LeaseDelete {
                id: lease,
                sync: false,
            }))
            .await;
        made
    }

    async fn materialize_leased(&self, rec: &Record, lease: &str) -> ApiResult<Value> {
        let dir = self.container_dir(&rec.id);
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let host_net = rec.host_config.network_mode.as_deref() == Some("host");
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
            )
        };
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (f, data) in [
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(dir.join(f), data).ctx(|| format!("write {f}"))?;
        }
        self.save(rec)?;
        crate::volumes::prepare(self, rec).await?;
        self.ctrd
            .snapshots()
            .prepare(self.ctrd.leased(
                PrepareSnapshotRequest {
                    snapshotter: self.ctrd.snapshotter.clone(),
                    key: rec.id.clone(),
                    parent: rec.chain_id.clone(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await
            .ctx(|| "prepare the rootfs snapshot".into())?;
        let spec = self.build_spec(rec).await?;
        let runtime = self.runtime_options(rec)?;
        self.ctrd
            .containers()
            .create(self.ctrd.leased(
                CreateContainerRequest {
                    container: Some(CtrContainer {
                        id: rec.id.clone(),
                        image: crate::reference::normalize(&rec.image),
                        runtime: Some(Runtime {
                            name: RUNTIME_TYPE.into(),
                            options: Some(runtime),
                        }),
                        spec: Some(
                            Any {
                                type_url: SPEC_TYPE.into(),
                                value:
                                    serde_json::to_vec(&spec).map_err(|e| {
                                        ApiError::Internal(format!("encode spec: {e}"))
                                    })?,
                            },
                        ),
                        snapshotter: self.ctrd.snapshotter.clone(),
                        snapshot_key: rec.id.clone(),
                        labels: HashMap::from([(
                            "com.docker/engine.bundle.path".to_string(),
                            dir.to_string_lossy().into_owned(),
                        )]),
                        ..Default::default()
                    }),
                },
                lease,
            ))
            .await
            .ctx(|| "create the containerd container".into())?;
        Ok(spec)
    }

    fn runtime_options(&self, rec: &Record) -> ApiResult<Any> {
        let binary = self
            .cfg
            .runtime_binary(rec.host_config.runtime.as_deref().unwrap_or(""))
            .ok_or_else(|| ApiError::BadRequest("unknown runtime".into()))?;
        Ok(Any {
            type_url: RUNC_OPTIONS_TYPE.into(),
            value: RuncOptions {
                binary_name: binary,
                root: String::new(),
            }
            .encode_to_vec(),
        })
    }

    async fn rootfs_mounts(&self, id: &str) -> ApiResult<Vec<Mount>> {
        Ok(self
            .ctrd
            .snapshots()
            .mounts(self.ctrd.req(MountsRequest {
                snapshotter: self.ctrd.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await
            .ctx(|| "get the rootfs mounts".into())?
            .into_inner()
            .mounts)
    }

    async fn build_spec(&self, rec: &Record) -> ApiResult<Value> {
        let user = rec.config.user.clone().unwrap_or_default();
        let (uid, gid, gids) = self.resolve_user(&rec.id, &user).await?;
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let mut spec = spec::build(&spec::SpecInputs {
            id: &rec.id,
            hostname: rec.config.hostname.as_deref().unwrap_or(""),
            config: &rec.config,
            host: &rec.host_config,
            args,
            uid,
            gid,
            additional_gids: gids,
            container_dir: &self.container_dir(&rec.id),
            cgroup_parent: &self.cfg.cgroup_parent,
            volumes_dir: &self.cfg.data_root.join("volumes"),
        })?;
        crate::volumes::add_to_spec(self, rec, &mut spec)?;
        Ok(spec)
    }

    /// `uid[:gid]` numbers pass through; names are looked up in the rootfs'
    /// /etc/passwd and /etc/group (read from the snapshot's layer directories).
    async fn resolve_user(&self, id: &str, user: &str) -> ApiResult<(u32, u32, Vec<u32>)> {
        let (u, g) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        if u.is_empty() && g.is_none() {
            return Ok((0, 0, vec![]));
        }
        let numeric_u = u.parse::<u32>().ok();
        let numeric_g = g.and_then(|g| g.parse::<u32>().ok());
        if (u.is_empty() || numeric_u.is_some()) && (g.is_none() || numeric_g.is_some()) {
            let uid = numeric_u.unwrap_or(0);
            let gid = numeric_g.unwrap_or(0);
            if numeric_u.is_some() && g.is_none() {
                // A numeric user without group gets its passwd group when listed.
                let passwd = self.read_rootfs_file(id, "etc/passwd").await;
                let gid = passwd
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() > 3 && f[2].parse::<u32>().ok() == Some(uid))
                    .and_then(|f| f[3].parse().ok())
                    .unwrap_or(0);
                return Ok((uid, gid, vec![]));
            }
            return Ok((uid, gid, vec![]));
        }
        let passwd = self.read_rootfs_file(id, "etc/passwd").await;
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && (f[0] == u || f[2] == u));
        let (uid, pgid) = match (entry, numeric_u) {
            (Some(f), _) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
            (None, Some(n)) => (n, 0),
            (None, None) => {
                return Err(ApiError::BadRequest(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                )));
            }
        };
        let gid = match g {
            None => pgid,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    let group = self.read_rootfs_file(id, "etc/group").await;
                    group
                        .lines()
                        .map(|l| l.split(':').collect::<Vec<_>>())
                        .find(|f| f.len() > 2 && f[0] == g)
                        .and_then(|f| f[2].parse().ok())
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "unable to find group {g}: no matching entries in group file"
                            ))
                        })?
                }
            },
        };
        Ok((uid, gid, vec![]))
    }

    async fn read_rootfs_file(&self, id: &str, rel: &str) -> String {
        let Ok(mounts) = self.rootfs_mounts(id).await else {
            return String::new();
        };
        let mut dirs = Vec::new();
        for m in &mounts {
            if m.r#type == "bind" {
                dirs.push(PathBuf::from(&m.source));
            }
            for o in &m.options {
                if let Some(u) = o.strip_prefix("upperdir=") {
                    dirs.push(PathBuf::from(u));
                }
            }
            for o in &m.options {
                if let Some(l) = o.strip_prefix("lowerdir=") {
                    dirs.extend(l.split(':').map(PathBuf::from));
                }
            }
        }
        for d in dirs {
            if let Ok(s) = std::fs::read_to_string(d.join(rel)) {
                return s;
            }
        }
        String::new()
    }

    fn log_rotation(&self, host: &HostConfig) -> ApiResult<jsonlog::Rotation> {
        let opts = host
            .log_config
            .as_ref()
            .and_then(|l| l.config.clone())
            .unwrap_or_default();
        jsonlog::Rotation::from_opts(
            opts.get("max-size").map(String::as_str),
            opts.get("max-file").map(String::as_str),
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// Starts the container's task; 304 when it already runs.
    #[instrument(skip_all, fields(container_id = %c.id))]
    pub async fn start(self: &Arc<Self>, c: &Arc<Container>) -> ApiResult<()> {
        let _op = c.op.lock().await;
        self.start_locked(c, false).await
    }

    /// `by_policy`: a restart the policy asked for, which keeps the restart count
    /// and the user's stop flag as they are.
    async fn start_locked(self: &Arc<Self>, c: &Arc<Container>, by_policy: bool) -> ApiResult<()> {
        let rec = c.record();
        if rec.state.running() {
            return Err(ApiError::NotModified);
        }
        if !self.read_containers().contains_key(&c.id) {
            return Err(ApiError::no_such_container(&c.id));
        }
        c.restart_cancelled.store(false, Ordering::SeqCst);
        if !by_policy {
            let mut r = lock(&c.rec);
            r.manually_stopped = false;
        }
        let spec = self.build_spec(&rec).await?;
        // The spec made at create is what containerd has, unless something it is
        // built from changed since (or engined restarted): then containerd's copy
        // is brought up to date.
        let stored = lock(&c.spec).as_ref() == Some(&spec);
        if !stored {
            self.update_spec(&rec.id, &spec).await?;
        }
        *lock(&c.spec) = Some(spec);
        crate::volumes::populate(self, &rec).await?;
        let rootfs = self.rootfs_mounts(&c.id).await?;
        let tty = rec.config.tty.unwrap_or(false);
        let open_stdin = rec.config.open_stdin.unwrap_or(false);
        let stdin = if open_stdin {
            let dir = self.fifo_dir(&c.id);
            std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
            let path = dir.join("stdin");
            let _ = std::fs::remove_file(&path);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .ctx(|| format!("mkfifo {}", path.display()))?;
            let w = open_stdin_fifo(&path).ctx(|| format!("open {}", path.display()))?;
            Some((path, w))
        } else {
            None
        };
        let log_uri = self.log_uri(&rec)?;
        let runtime = self.runtime_options(&rec)?;
        let created = self
            .ctrd
            .tasks()
            .create(
                self.ctrd.req(CreateTaskRequest {
                    container_id: c.id.clone(),
                    rootfs,
                    // Kept open by the shim: our going away (a restart) is no EOF.
                    stdin: stdin
                        .as_ref()
                        .map(|(p, _)| format!("fifo+keep://{}", p.display()))
                        .unwrap_or_default(),
                    stdout: log_uri.clone(),
                    stderr: if tty { String::new() } else { log_uri },
                    terminal: tty,
                    options: Some(runtime),
                    ..Default::default()
                }),
            )
            .await;
        if let Err(s) = created {
            let msg = format!("failed to create task for container: {}", s.message());
            self.start_failed(c, &msg);
            return Err(ApiError::Internal(msg));
        }
        let started = self
            .ctrd
            .tasks()
            .start(self.ctrd.req(StartRequest {
                container_id: c.id.clone(),
                exec_id: String::new(),
            }))
            .await;
        let pid = match started {
            Ok(r) => r.into_inner().pid,
            Err(s) => {
                let _ = self
                    .ctrd
                    .tasks()
                    .delete(self.ctrd.req(DeleteTaskRequest {
                        container_id: c.id.clone(),
                    }))
                    .await;
                let msg = format!("failed to start container: {}", s.message());
                self.start_failed(c, &msg);
                return Err(ApiError::Internal(msg));
            }
        };
        *c.stdin.lock().await = stdin.map(|(_, w)| w);
        {
            let mut r = lock(&c.rec);
            r.state = State {
                status: "running".into(),
                pid: i64::from(pid),
                exit_code: 0,
                started_at: common::rfc3339_nanos(SystemTime::now()),
                finished_at: "0001-01-01T00:00:00Z".into(),
                error: String::new(),
            };
            self.save(&r)?;
        }
        c.life.send_modify(|l| l.running = true);
        let d = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move { d.reap(c2).await });
        debug!(pid, "started");
        self.events.container(&c.record(), "start", &[]);
        Ok(())
    }

    async fn update_spec(&self, id: &str, spec: &Value) -> ApiResult<()> {
        self.ctrd
            .containers()
            .update(self.ctrd.req(UpdateContainerRequest {
                container: Some(CtrContainer {
                    id: id.to_string(),
                    spec:
                        Some(
                            Any {
                                type_url: SPEC_TYPE.into(),
                                value:
                                    serde_json::to_vec(spec).map_err(|e| {
                                        ApiError::Internal(format!("encode spec: {e}"))
                                    })?,
                            },
                        ),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["spec".into()],
                }),
            }))
            .await
            .ctx(|| "update the containerd container".into())?;
        Ok(())
    }

    /// `jsonfile://<log>?max-size=..&max-file=..`: the shim writes the log itself.
    fn log_uri(&self, rec: &Record) -> ApiResult<String> {
        let rotation = self.log_rotation(&rec.host_config)?;
        let mut uri = format!("jsonfile://{}", rec.log_path.display());
        let mut opts = Vec::new();
        if let Some(max) = rotation.max_size {
            opts.push(format!("max-size={max}"));
        }
        if rotation.max_file > 1 {
            opts.push(format!("max-file={}", rotation.max_file));
        }
        if !opts.is_empty() {
            uri.push('?');
            uri.push_str(&opts.join("&"));
        }
        Ok(uri)
    }

    /// Records a start that failed as an exit (code 127, as dockerd), so that
    /// waiters (`docker run` waits before it starts) see it, and removes a `--rm`
    /// container, which `wait?condition=removed` is waiting for.
    fn start_failed(self: &Arc<Self>, c: &Arc<Container>, msg: &str) {
        let auto_remove = {
            let mut r = lock(&c.rec);
            r.state.error = msg.to_string();
            r.state.exit_code = 127;
            r.state.status = if r.state.started_at.is_empty() {
                "created".into()
            } else {
                "exited".into()
            };
            let _ = self.save(&r);
            r.host_config.auto_remove.unwrap_or(false)
        };
        c.life.send_modify(|l| {
            l.exits += 1;
            l.exit_code = 127;
            l.running = false;
        });
        if auto_remove {
            let d = self.clone();
            let c = c.clone();
            // Not inline: start still holds the container's operation lock.
            tokio::spawn(async move {
                if let Err(e) = d.remove(&c, true).await {
                    warn!(container_id = %c.id, error = %e, "auto-remove failed");
                }
            });
        }
    }

    /// Waits for the task to exit, through restarts of containerd (the shim keeps
    /// the exit until it is deleted), then deletes the task and records the exit.
    async fn reap(self: Arc<Self>, c: Arc<Container>) {
        let mut delay = Duration::from_millis(50);
        let (code, at) = loop {
            let waited = self
                .ctrd
                .tasks()
                .wait(self.ctrd.req(WaitRequest {
                    container_id: c.id.clone(),
                    exec_id: String::new(),
                }))
                .await;
            match waited {
                Ok(r) => {
                    let r = r.into_inner();
                    let at = r.exited_at.map_or_else(SystemTime::now, |t| {
                        std::time::UNIX_EPOCH
                            + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
                    });
                    break (i64::from(r.exit_status), at);
                }
                Err(s) if s.code() == Code::NotFound => {
                    warn!(container_id = %c.id, "the task vanished: exit code unknown");
                    break (255, SystemTime::now());
                }
                Err(s) => {
                    // containerd is restarting (or a shim is slow to answer again):
                    // the exit is still there to be had.
                    debug!(container_id = %c.id, error = %s.message(), "waiting for the task again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
        // Delete answers once the shim has written the last output to the log.
        let _ = self
            .ctrd
            .tasks()
            .delete(self.ctrd.req(DeleteTaskRequest {
                container_id: c.id.clone(),
            }))
            .await;
        c.close_stdin().await;
        self.record_exit(&c, code, at, "").await;
    }

    /// Records the end of a run and acts on it: waiters, `--rm`, the restart policy.
    async fn record_exit(
        self: &Arc<Self>,
        c: &Arc<Container>,
        code: i64,
        at: SystemTime,
        error: &str,
    ) {
        let (auto_remove, restart, ran_for) = {
            let mut r = lock(&c.rec);
            r.state.status = "exited".into();
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = common::rfc3339_nanos(at);
            if !error.is_empty() {
                r.state.error = error.to_string();
            }
            let ran_for = jsonlog::parse_rfc3339_nanos(&r.state.started_at)
                .map(|t| {
                    let secs = (jsonlog::nanos_of(at) - t).max(0) / 1_000_000_000;
                    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
                })
                .unwrap_or_default();
            let restart = !c.restart_cancelled.load(Ordering::SeqCst)
                && Policy::of(&r.host_config).should_restart(
                    code,
                    r.manually_stopped,
                    r.restart_count,
                );
            if restart {
                r.state.status = "restarting".into();
                r.restart_count += 1;
            }
            if let Err(e) = self.save(&r) {
                warn!(error = %e, "saving the container record failed");
            }
            (r.host_config.auto_remove.unwrap_or(false), restart, ran_for)
        };
        c.life.send_modify(|l| {
            l.exits += 1;
            l.exit_code = code;
            l.running = false;
        });
        info!(container_id = %c.id, code, restart, "exited");
        self.events
            .container(&c.record(), "die", &[("exitCode", code.to_string())]);
        if restart {
            let delay = lock(&c.backoff).next(ran_for);
            self.schedule_start(c.clone(), delay);
        } else if auto_remove {
            // Attached clients read the last output from the log before it goes.
            let mut readers = c.readers.subscribe();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), readers.wait_for(|n| *n == 0)).await;
            if let Err(e) = self.remove(c, true).await {
                warn!(container_id = %c.id, error = %e, "auto-remove failed");
            }
        }
    }

    /// A start by the restart policy, after `delay`, unless a stop, kill or
    /// remove came first.
    fn schedule_start(self: &Arc<Self>, c: Arc<Container>, delay: Duration) {
        let d = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = c.op.lock().await;
            if c.restart_cancelled.load(Ordering::SeqCst)
                || !d.read_containers().contains_key(&c.id)
            {
                return;
            }
            match d.start_locked(&c, true).await {
                Ok(()) | Err(ApiError::NotModified) => {}
                Err(e) => {
                    warn!(container_id = %c.id, error = %e, "restart failed");
                    let mut r = lock(&c.rec);
                    if r.state.status == "restarting" {
                        r.state.status = "exited".into();
                        let _ = d.save(&r);
                    }
                }
            }
        });
    }

    /// Marks the current run as ended by the user: no restart follows it, and
    /// `unless-stopped` stays down across engined restarts.
    fn stopped_by_user(&self, c: &Container) {
        c.restart_cancelled.store(true, Ordering::SeqCst);
        let mut r = lock(&c.rec);
        r.manually_stopped = true;
        if r.state.status == "restarting" {
            r.state.status = "exited".into();
        }
        let _ = self.save(&r);
    }

    pub async fn kill(&self, c: &Container, signal: &str) -> ApiResult<()> {
        let sig = parse_signal(signal)?;
        if !c.running() {
            if c.status() == "restarting" {
                self.stopped_by_user(c);
                return Ok(());
            }
            return Err(ApiError::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                c.name(),
                c.id
            )));
        }
        self.stopped_by_user(c);
        let paused = c.status() == "paused";
        self.signal(c, sig, sig == 9).await?;
        if paused && sig == 9 {
            // SIGKILL stays pending in a frozen cgroup: thaw it so the kill lands.
            let _ = self.resume_task(c).await;
        }
        Ok(())
    }

    async fn signal(&self, c: &Container, sig: u32, all: bool) -> ApiResult<()> {
        match self
            .ctrd
            .tasks()
            .kill(self.ctrd.req(KillRequest {
                container_id: c.id.clone(),
                exec_id: String::new(),
                signal: sig,
                all,
            }))
            .await
        {
            Ok(_) => {
                self.events
                    .container(&c.record(), "kill", &[("signal", sig.to_string())]);
                Ok(())
            }
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(s).ctx(|| format!("signal {sig}")),
        }
    }

    async fn wait_stopped(&self, c: &Container, timeout: Duration) -> bool {
        let mut rx = c.subscribe_life();
        tokio::time::timeout(timeout, rx.wait_for(|l| !l.running))
            .await
            .is_ok()
    }

    /// SIGTERM (or the stop signal), then SIGKILL after `timeout` seconds.
    #[instrument(skip_all, fields(container_id = %c.id))]
    pub async fn stop(&self, c: &Arc<Container>, timeout: Option<i64>) -> ApiResult<()> {
        let _op = c.op.lock().await;
        if !c.running() {
            if c.status() == "restarting" {
                self.stopped_by_user(c);
                return Ok(());
            }
            return Err(ApiError::NotModified);
        }
        self.stopped_by_user(c);
        self.terminate(c, timeout).await?;
        self.events.container(&c.record(), "stop", &[]);
        Ok(())
    }

    /// The stop signal (SIGTERM unless the image or create said otherwise), then
    /// SIGKILL after `timeout` seconds (the container's stop timeout, else 10; a
    /// negative one waits for ever).
    async fn terminate(&self, c: &Container, timeout: Option<i64>) -> ApiResult<()> {
        let rec = c.record();
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let sig = parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        if rec.state.status == "paused" {
            // A frozen process cannot act on the signal: thaw it first, as dockerd does.
            let _ = self.resume_task(c).await;
        }
        self.signal(c, sig, false).await?;
        if t < 0 {
            self.wait_stopped(c, Duration::from_secs(u64::MAX / 4))
                .await;
            return Ok(());
        }
        if !self.wait_stopped(c, Duration::from_secs(t as u64)).await {
            self.signal(c, 9, true).await?;
            if !self.wait_stopped(c, Duration::from_secs(30)).await {
                return Err(ApiError::Internal(format!(
                    "container {} did not stop after SIGKILL",
                    c.id
                )));
            }
        }
        Ok(())
    }

    pub async fn restart(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
    ) -> ApiResult<()> {
        match self.stop(c, timeout).await {
            Ok(()) | Err(ApiError::NotModified) => {}
            Err(e) => return Err(e),
        }
        match self.start(c).await {
            Ok(()) | Err(ApiError::NotModified) => {}
            Err(e) => return Err(e),
        }
        self.events.container(&c.record(), "restart", &[]);
        Ok(())
    }

    /// Freezes the container's processes (freezer cgroup).
    pub async fn pause(&self, c: &Container) -> ApiResult<()> {
        let _op = c.op.lock().await;
        match c.status().as_str() {
            "running" => {}
            "paused" => {
                return Err(ApiError::Conflict(format!(
                    "Container {} is already paused",
                    c.id
                )));
            }
            _ => {
                return Err(ApiError::Conflict(format!(
                    "Container {} is not running",
                    c.id
                )));
            }
        }
        self.ctrd
            .tasks()
            .pause(self.ctrd.req(PauseTaskRequest {
                container_id: c.id.clone(),
            }))
            .await
            .ctx(|| "pause".into())?;
        self.set_status(c, "paused")?;
        self.events.container(&c.record(), "pause", &[]);
        Ok(())
    }

    pub async fn unpause(&self, c: &Container) -> ApiResult<()> {
        let _op = c.op.lock().await;
        if c.status() != "paused" {
            return Err(ApiError::Conflict(format!(
                "Container {} is not paused",
                c.id
            )));
        }
        self.resume_task(c).await?;
        self.events.container(&c.record(), "unpause", &[]);
        Ok(())
    }

    async fn resume_task(&self, c: &Container) -> ApiResult<()> {
        self.ctrd
            .tasks()
            .resume(self.ctrd.req(ResumeTaskRequest {
                container_id: c.id.clone(),
            }))
            .await
            .ctx(|| "resume".into())?;
        self.set_status(c, "running")
    }

    fn set_status(&self, c: &Container, status: &str) -> ApiResult<()> {
        let mut r = lock(&c.rec);
        // An exit recorded meanwhile wins.
        if r.state.running() {
            r.state.status = status.into();
            self.save(&r)?;
        }
        Ok(())
    }

    /// `(SizeRw, SizeRootFs)`: the container's own writes (its snapshot's usage)
    /// and that plus its image.
    pub async fn sizes(&self, c: &Container) -> (i64, i64) {
        let rw = self
            .ctrd
            .snapshots()
            .usage(self.ctrd.req(UsageRequest {
                snapshotter: self.ctrd.snapshotter.clone(),
                key: c.id.clone(),
            }))
            .await
            .map_or(0, |r| r.into_inner().size);
        let image_id = lock(&c.rec).image_id.clone();
        let image = self
            .images
            .list()
            .await
            .into_iter()
            .find(|i| i.id == image_id)
            .map_or(0, |i| i.size);
        (rw, rw + image)
    }

    /// The pids of the container's processes, from containerd.
    pub async fn pids(&self, c: &Container) -> ApiResult<std::collections::HashSet<u32>> {
        Ok(self
            .ctrd
            .tasks()
            .list_pids(self.ctrd.req(ListPidsRequest {
                container_id: c.id.clone(),
            }))
            .await
            .ctx(|| "list the container's processes".into())?
            .into_inner()
            .processes
            .into_iter()
            .map(|p| p.pid)
            .collect())
    }

    /// One stats sample of the container (zeros when it does not run).
    pub async fn stats_sample(&self, c: &Container) -> Value {
        let host = stats::Host::read();
        if !c.running() {
            return stats::empty(host);
        }
        let got = self
            .ctrd
            .tasks()
            .metrics(self.ctrd.req(MetricsRequest {
                filters: vec![format!("id=={}", c.id)],
            }))
            .await;
        match got {
            Ok(r) => r
                .into_inner()
                .metrics
                .into_iter()
                .find_map(|m| m.data)
                .map_or_else(
                    || stats::empty(host),
                    |d| stats::sample(&d.type_url, &d.value, host),
                ),
            Err(s) => {
                debug!(container_id = %c.id, error = %s.message(), "metrics");
                stats::empty(host)
            }
        }
    }

    #[instrument(skip_all, fields(container_id = %c.id))]
    pub async fn remove(&self, c: &Arc<Container>, force: bool) -> ApiResult<()> {
        if c.running() {
            if !force {
                return Err(ApiError::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.id
                )));
            }
            c.restart_cancelled.store(true, Ordering::SeqCst);
            if c.status() == "paused" {
                let _ = self.resume_task(c).await;
            }
            self.signal(c, 9, true).await?;
            if !self.wait_stopped(c, Duration::from_secs(30)).await {
                return Err(ApiError::Internal(format!(
                    "container {} did not stop after SIGKILL",
                    c.id
                )));
            }
        }
        c.restart_cancelled.store(true, Ordering::SeqCst);
        let _op = c.op.lock().await;
        if self.write_containers().remove(&c.id).is_none() {
            // Another remove (auto-remove racing an explicit rm) got there first.
            return Ok(());
        }
        self.drop_ctrd_objects(&c.id).await;
        let _ = std::fs::remove_dir_all(self.container_dir(&c.id));
        let _ = std::fs::remove_dir_all(self.fifo_dir(&c.id));
        lock(&self.execs).retain(|_, e| e.container_id != c.id);
        if lock(&c.rec).host_config.auto_remove.unwrap_or(false) {
            // `--rm` takes the anonymous volumes along, as dockerd's auto-remove does.
            crate::volumes::remove_anonymous_of(self, &c.id);
        }
        c.life.send_modify(|l| l.removed = true);
        self.events.container(&c.record(), "destroy", &[]);
        Ok(())
    }

    async fn drop_ctrd_objects(&self, id: &str) {
        let _ = self
            .ctrd
            .tasks()
            .delete(self.ctrd.req(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await;
        let _ = self
            .ctrd
            .containers()
            .delete(self.ctrd.req(DeleteContainerRequest { id: id.to_string() }))
            .await;
        let _ = self
            .ctrd
            .snapshots()
            .remove(self.ctrd.req(RemoveSnapshotRequest {
                snapshotter: self.ctrd.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await;
    }

    pub async fn resize(&self, c: &Container, exec_id: &str, h: u32, w: u32) -> ApiResult<()> {
        if exec_id.is_empty() && !c.running() {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        self.ctrd
            .tasks()
            .resize_pty(self.ctrd.req(ResizePtyRequest {
                container_id: c.id.clone(),
                exec_id: exec_id.to_string(),
                width: w,
                height: h,
            }))
            .await
            .ctx(|| "resize".into())?;
        Ok(())
    }

    /// Closes a process's stdin in the shim: the shim keeps its own end of the
    /// FIFO open for writing, so our closing it is not an EOF for the process.
    pub async fn close_io(&self, container_id: &str, exec_id: &str) {
        let closed = self
            .ctrd
            .tasks()
            .close_io(self.ctrd.req(CloseIoRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await;
        if let Err(s) = closed {
            debug!(container_id, exec_id, error = %s.message(), "close stdin failed");
        }
    }

    pub fn rename(&self, c: &Container, new: &str) -> ApiResult<()> {
        let new = new.trim_start_matches('/');
        if new.is_empty() {
            return Err(ApiError::BadRequest(
                "Neither old nor new names may be empty".into(),
            ));
        }
        let map = self.read_containers();
        if map.values().any(|o| o.id != c.id && o.name() == new) {
            return Err(ApiError::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use"
            )));
        }
        let mut r = lock(&c.rec);
        let old = std::mem::replace(&mut r.name, new.to_string());
        self.save(&r)?;
        self.events
            .container(&r, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    // ---- exec ----

    pub fn exec_create(&self, c: &Container, config: ExecConfig) -> ApiResult<String> {
        if !c.running() {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if config.cmd.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::BadRequest("No exec command specified".into()));
        }
        let id = util::new_id();
        let ev = format!(
            "exec_create: {}",
            config.cmd.clone().unwrap_or_default().join(" ")
        );
        lock(&self.execs).insert(
            id.clone(),
            Arc::new(Exec {
                id: id.clone(),
                container_id: c.id.clone(),
                config,
                state: Mutex::new(ExecState::default()),
            }),
        );
        self.events
            .container(&c.record(), &ev, &[("execID", id.clone())]);
        Ok(id)
    }

    pub fn exec(&self, id: &str) -> ApiResult<Arc<Exec>> {
        lock(&self.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("No such exec instance: {id}")))
    }

    /// Starts an exec'd process. Returns its FIFOs for the caller to relay; the exit
    /// is recorded by a background task that the returned receiver reports on.
    #[instrument(skip_all, fields(container_id = %e.container_id, exec_id = %e.id))]
    pub async fn exec_start(
        self: &Arc<Self>,
        e: &Arc<Exec>,
    ) -> ApiResult<(Fifos, tokio::sync::oneshot::Receiver<i64>)> {
        {
            let mut st = lock(&e.state);
            if st.started {
                return Err(ApiError::Conflict(format!(
                    "Error: Exec command {} has already run",
                    e.id
                )));
            }
            st.started = true;
        }
        let c = self.find(&e.container_id)?;
        if !c.running() {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let spec = lock(&c.spec).clone();
        let rec = c.record();
        let spec = match spec {
            Some(s) => s,
            None => self.build_spec(&rec).await?,
        };
        let cfg = &e.config;
        let tty = cfg.tty.unwrap_or(false);
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(cfg.cmd.clone().unwrap_or_default());
        process["terminal"] = serde_json::json!(tty);
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        for kv in cfg.env.clone().unwrap_or_default() {
            let key = kv.split('=').next().unwrap_or("").to_string();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(kv);
        }
        process["env"] = serde_json::json!(env);
        if let Some(w) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
            process["cwd"] = serde_json::json!(w);
        }
        if let Some(u) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
            let (uid, gid, _) = self.resolve_user(&c.id, u).await?;
            process["user"] = serde_json::json!({ "uid": uid, "gid": gid });
        }
        if let Some(o) = process.as_object_mut() {
            o.remove("consoleSize");
        }
        let short = &e.id[..16];
        let mut fifos = Fifos::create(
            &self.fifo_dir(&c.id),
            &format!("exec-{short}-"),
            cfg.attach_stdin.unwrap_or(false),
            !tty,
        )?;
        self.ctrd
            .tasks()
            .exec(self.ctrd.req(ExecProcessRequest {
                container_id: c.id.clone(),
                stdin: Fifos::path_str(&fifos.stdin_path),
                stdout: fifos.stdout_path.to_string_lossy().into_owned(),
                stderr: Fifos::path_str(&fifos.stderr_path),
                terminal: tty,
                spec:
                    Some(
                        Any {
                            type_url: PROCESS_TYPE.into(),
                            value:
                                serde_json::to_vec(&process).map_err(|e| {
                                    ApiError::Internal(format!("encode process: {e}"))
                                })?,
                        },
                    ),
                exec_id: e.id.clone(),
            }))
            .await
            .ctx(|| "exec".into())?;
        let started = self
            .ctrd
            .tasks()
            .start(self.ctrd.req(StartRequest {
                container_id: c.id.clone(),
                exec_id: e.id.clone(),
            }))
            .await;
        let pid = match started {
            Ok(r) => r.into_inner().pid,
            Err(s) => {
                let _ = self
                    .ctrd
                    .tasks()
                    .delete_process(self.ctrd.req(DeleteProcessRequest {
                        container_id: c.id.clone(),
                        exec_id: e.id.clone(),
                    }))
                    .await;
                let mut st = lock(&e.state);
                st.exit_code = Some(126);
                return Err(ApiError::Internal(format!(
                    "OCI runtime exec failed: {}",
                    s.message()
                )));
            }
        };
        fifos.keepalive.clear();
        {
            let mut st = lock(&e.state);
            st.running = true;
            st.pid = i64::from(pid);
        }
        let cmd = format!(
            "exec_start: {}",
            cfg.cmd.clone().unwrap_or_default().join(" ")
        );
        self.events
            .container(&rec, &cmd, &[("execID", e.id.clone())]);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let d = self.clone();
        let e2 = e.clone();
        let cid = c.id.clone();
        tokio::spawn(async move {
            let code = match d
                .ctrd
                .tasks()
                .wait(d.ctrd.req(WaitRequest {
                    container_id: cid.clone(),
                    exec_id: e2.id.clone(),
                }))
                .await
            {
                Ok(r) => i64::from(r.into_inner().exit_status),
                Err(s) => {
                    warn!(exec_id = %e2.id, error = %s.message(), "waiting for exec failed");
                    126
                }
            };
            let _ = d
                .ctrd
                .tasks()
                .delete_process(d.ctrd.req(DeleteProcessRequest {
                    container_id: cid,
                    exec_id: e2.id.clone(),
                }))
                .await;
            {
                let mut st = lock(&e2.state);
                st.running = false;
                st.exit_code = Some(code);
            }
            let attrs = [("execID", e2.id.clone()), ("exitCode", code.to_string())];
            d.events.container(&rec, "exec_die", &attrs);
            let _ = tx.send(code);
        });
        Ok((fifos, rx))
    }
}

/// Fills what the create body left empty from the image config, as dockerd does.
fn merge_image_config(config: &mut ContainerConfig, image: &ImageInfo) {
    let ic = &image.config["config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    };
    let mut env = strings(&ic["Env"]).unwrap_or_default();
    for kv in config.env.clone().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    config.env = Some(env);
    let user_entrypoint = config.entrypoint.as_ref().is_some_and(|e| !e.is_empty());
    if config
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        config.entrypoint = Some(vec![]);
    } else if !user_entrypoint {
        config.entrypoint = strings(&ic["Entrypoint"]);
    }
    if config.cmd.as_ref().is_none_or(Vec::is_empty) && !user_entrypoint {
        config.cmd = strings(&ic["Cmd"]);
    }
    if config.working_dir.as_deref().unwrap_or("").is_empty() {
        config.working_dir = ic["WorkingDir"].as_str().map(str::to_string);
    }
    if config.user.as_deref().unwrap_or("").is_empty() {
        config.user = ic["User"].as_str().map(str::to_string);
    }
    if config.stop_signal.is_none() {
        config.stop_signal = ic["StopSignal"].as_str().map(str::to_string);
    }
    let mut labels: HashMap<String, String> = ic["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(config.labels.clone().unwrap_or_default());
    config.labels = Some(labels);
}

/// Our end of a container's stdin FIFO. O_RDWR: opening a FIFO for writing
/// alone would wait for a reader, and the shim opens it only at task create.
fn open_stdin_fifo(path: &Path) -> std::io::Result<pipe::Sender> {
    pipe::OpenOptions::new().read_write(true).open_sender(path)
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> ApiResult<u32> {
    if s.is_empty() {
        return Ok(9);
    }
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > 64 {
            return Err(ApiError::BadRequest(format!("Invalid signal: {s}")));
        }
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as u32)
        .map_err(|_| ApiError::BadRequest(format!("Invalid signal: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
