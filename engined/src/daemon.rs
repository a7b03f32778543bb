//! Containers and execs: records persisted under the data root, lifecycles driven
//! through containerd's containers, snapshots and tasks services, and output copied
//! from the task's FIFOs into the json-file log and to attached clients.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bollard_stubs::models::{ContainerConfig, ExecConfig, HostConfig};
use bytes::Bytes;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    CloseIoRequest, Container as CtrContainer, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    KillRequest, ResizePtyRequest, StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::services::v1::{CreateRequest as LeaseCreate, DeleteRequest as LeaseDelete};
use containerd_client::tonic::Code;
use containerd_client::types::Mount;
use jsonlog::Stream;
use prost::Message;
use prost_types::Any;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, instrument, warn};

use crate::config::Config;
use crate::ctrd::{Ctrd, PROCESS_TYPE, RUNC_OPTIONS_TYPE, RuncOptions, SPEC_TYPE};
use crate::error::{ApiError, ApiResult, Context};
use crate::images::{ImageInfo, ImageStore};
use crate::{spec, util};

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

/// A chunk of container output, or the end of one run.
#[derive(Debug, Clone)]
pub enum Output {
    Data(Stream, Bytes),
    End,
}

#[derive(Debug)]
pub struct Container {
    pub id: String,
    rec: Mutex<Record>,
    life: watch::Sender<Life>,
    output: broadcast::Sender<Output>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// Serializes start, stop and remove of this container.
    op: tokio::sync::Mutex<()>,
    spec: Mutex<Option<Value>>,
}

impl Container {
    fn new(rec: Record) -> Arc<Self> {
        let running = rec.state.running();
        let (life, _) = watch::channel(Life {
            exit_code: rec.state.exit_code,
            running,
            ..Default::default()
        });
        let (output, _) = broadcast::channel(4096);
        Arc::new(Self {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            life,
            output,
            stdin: tokio::sync::Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
            spec: Mutex::new(None),
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

    pub fn subscribe_life(&self) -> watch::Receiver<Life> {
        self.life.subscribe()
    }

    pub fn subscribe_output(&self) -> broadcast::Receiver<Output> {
        self.output.subscribe()
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

    /// Loads the records of a previous run. Containers whose task is gone are marked
    /// exited (their output and exit status were lost with the old daemon: the shim
    /// does not write logs itself yet).
    async fn restore(self: &Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(self.cfg.data_root.join("containers")) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path().join("config.v2.json");
            let Ok(data) = std::fs::read(&p) else {
                continue;
            };
            let Ok(mut rec) = serde_json::from_slice::<Record>(&data) else {
                warn!(path = %p.display(), "unreadable container record");
                continue;
            };
            if rec.state.running() {
                let _ = self
                    .ctrd
                    .tasks()
                    .kill(self.ctrd.req(KillRequest {
                        container_id: rec.id.clone(),
                        exec_id: String::new(),
                        signal: 9,
                        all: true,
                    }))
                    .await;
                let _ = self
                    .ctrd
                    .tasks()
                    .delete(self.ctrd.req(DeleteTaskRequest {
                        container_id: rec.id.clone(),
                    }))
                    .await;
                rec.state.status = "exited".into();
                rec.state.exit_code = 255;
                rec.state.pid = 0;
                rec.state.finished_at = common::rfc3339_nanos(SystemTime::now());
                let _ = self.save(&rec);
            }
            let c = Container::new(rec);
            self.write_containers().insert(c.id.clone(), c);
        }
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
        };
        // Reserve the name before any slow work; a concurrent create with the same
        // name must fail with 409.
        let c = {
            let mut map = self.write_containers();
            if let Some(other) = map.values().find(|c| c.name() == name) {
                return Err(ApiError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            let c = Container::new(rec.clone());
            map.insert(id.clone(), c.clone());
            c
        };
        let made = self.materialize(&rec).await;
        if let Err(e) = made {
            self.write_containers().remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            self.drop_ctrd_objects(&id).await;
            return Err(e);
        }
        drop(c);
        info!(name = %name, "created");
        Ok(id)
    }

    /// Creates the container's directory, its /etc files, its rootfs snapshot and
    /// the containerd container record (with the spec).
    async fn materialize(&self, rec: &Record) -> ApiResult<()> {
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

    async fn materialize_leased(&self, rec: &Record, lease: &str) -> ApiResult<()> {
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
                            name: "io.containerd.runc.v2".into(),
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
        Ok(())
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
        spec::build(&spec::SpecInputs {
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
        })
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
        let rec = c.record();
        if rec.state.running() {
            return Err(ApiError::NotModified);
        }
        if !self.read_containers().contains_key(&c.id) {
            return Err(ApiError::no_such_container(&c.id));
        }
        let spec = self.build_spec(&rec).await?;
        self.ctrd
            .containers()
            .update(self.ctrd.req(UpdateContainerRequest {
                container: Some(CtrContainer {
                    id: rec.id.clone(),
                    spec:
                        Some(
                            Any {
                                type_url: SPEC_TYPE.into(),
                                value:
                                    serde_json::to_vec(&spec).map_err(|e| {
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
        *lock(&c.spec) = Some(spec);
        let rootfs = self.rootfs_mounts(&c.id).await?;
        let tty = rec.config.tty.unwrap_or(false);
        let open_stdin = rec.config.open_stdin.unwrap_or(false);
        let mut fifos = Fifos::create(&self.fifo_dir(&c.id), "", open_stdin, !tty)?;
        let rotation = self.log_rotation(&rec.host_config)?;
        let runtime = self.runtime_options(&rec)?;
        let created = self
            .ctrd
            .tasks()
            .create(self.ctrd.req(CreateTaskRequest {
                container_id: c.id.clone(),
                rootfs,
                stdin: Fifos::path_str(&fifos.stdin_path),
                stdout: fifos.stdout_path.to_string_lossy().into_owned(),
                stderr: Fifos::path_str(&fifos.stderr_path),
                terminal: tty,
                options: Some(runtime),
                ..Default::default()
            }))
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
        fifos.keepalive.clear();
        *c.stdin.lock().await = fifos.stdin.take();
        let log = jsonlog::Writer::open(&rec.log_path, rotation)
            .ctx(|| "open the container log".into())?;
        let log = Arc::new(Mutex::new(log));
        let mut copiers = vec![tokio::spawn(copy_output(
            fifos.stdout,
            Stream::Stdout,
            c.output.clone(),
            log.clone(),
        ))];
        if let Some(err) = fifos.stderr {
            copiers.push(tokio::spawn(copy_output(
                err,
                Stream::Stderr,
                c.output.clone(),
                log,
            )));
        }
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
        tokio::spawn(async move { d.reap(c2, copiers).await });
        debug!(pid, "started");
        Ok(())
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

    /// Waits for the task to exit, then records the exit, drains the output,
    /// deletes the task and removes the container if it was `--rm`.
    async fn reap(self: Arc<Self>, c: Arc<Container>, copiers: Vec<tokio::task::JoinHandle<()>>) {
        let waited = self
            .ctrd
            .tasks()
            .wait(self.ctrd.req(WaitRequest {
                container_id: c.id.clone(),
                exec_id: String::new(),
            }))
            .await;
        let (code, at) = match waited {
            Ok(r) => {
                let r = r.into_inner();
                let at = r
                    .exited_at
                    .map(|t| {
                        std::time::UNIX_EPOCH
                            + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
                    })
                    .unwrap_or_else(SystemTime::now);
                (i64::from(r.exit_status), at)
            }
            Err(s) => {
                warn!(container_id = %c.id, error = %s.message(), "waiting for the task failed");
                (255, SystemTime::now())
            }
        };
        // A process that left children holding its stdout would keep the FIFO open
        // forever; do not wait for them beyond a grace period.
        for h in copiers {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        let _ = self
            .ctrd
            .tasks()
            .delete(self.ctrd.req(DeleteTaskRequest {
                container_id: c.id.clone(),
            }))
            .await;
        c.close_stdin().await;
        let auto_remove = {
            let mut r = lock(&c.rec);
            r.state.status = "exited".into();
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = common::rfc3339_nanos(at);
            if let Err(e) = self.save(&r) {
                warn!(error = %e, "saving the container record failed");
            }
            r.host_config.auto_remove.unwrap_or(false)
        };
        let _ = c.output.send(Output::End);
        c.life.send_modify(|l| {
            l.exits += 1;
            l.exit_code = code;
            l.running = false;
        });
        info!(container_id = %c.id, code, "exited");
        if auto_remove && let Err(e) = self.remove(&c, true).await {
            warn!(container_id = %c.id, error = %e, "auto-remove failed");
        }
    }

    pub async fn kill(&self, c: &Container, signal: &str) -> ApiResult<()> {
        let sig = parse_signal(signal)?;
        if !c.running() {
            return Err(ApiError::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                c.name(),
                c.id
            )));
        }
        self.signal(c, sig, sig == 9).await
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
            Ok(_) => Ok(()),
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
            return Err(ApiError::NotModified);
        }
        let rec = c.record();
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let sig = parse_signal(rec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
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
        {
            let mut r = lock(&c.rec);
            r.restart_count += 1;
        }
        match self.start(c).await {
            Ok(()) | Err(ApiError::NotModified) => Ok(()),
            Err(e) => Err(e),
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
            self.signal(c, 9, true).await?;
            if !self.wait_stopped(c, Duration::from_secs(30)).await {
                return Err(ApiError::Internal(format!(
                    "container {} did not stop after SIGKILL",
                    c.id
                )));
            }
        }
        let _op = c.op.lock().await;
        if self.write_containers().remove(&c.id).is_none() {
            // Another remove (auto-remove racing an explicit rm) got there first.
            return Ok(());
        }
        self.drop_ctrd_objects(&c.id).await;
        let _ = std::fs::remove_dir_all(self.container_dir(&c.id));
        let _ = std::fs::remove_dir_all(self.fifo_dir(&c.id));
        lock(&self.execs).retain(|_, e| e.container_id != c.id);
        c.life.send_modify(|l| l.removed = true);
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
        r.name = new.to_string();
        self.save(&r)
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
        lock(&self.execs).insert(
            id.clone(),
            Arc::new(Exec {
                id: id.clone(),
                container_id: c.id.clone(),
                config,
                state: Mutex::new(ExecState::default()),
            }),
        );
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

/// Copies one output FIFO into the log and to attached clients until EOF.
async fn copy_output(
    mut rx: pipe::Receiver,
    stream: Stream,
    out: broadcast::Sender<Output>,
    log: Arc<Mutex<jsonlog::Writer>>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut splitter = jsonlog::LineSplitter::default();
    let write = |line: &[u8]| {
        let mut w = lock(&log);
        if let Err(e) = w.write(stream, line, SystemTime::now()) {
            warn!(error = %e, "writing the container log failed");
        }
    };
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let _ = out.send(Output::Data(stream, Bytes::copy_from_slice(&buf[..n])));
                splitter.push(&buf[..n], write);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(error = %e, "reading container output failed");
                break;
            }
        }
    }
    splitter.finish(write);
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
