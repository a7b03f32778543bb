//! Runs a container through containerd-lite's gRPC API with containerd's own Rust
//! client (the `containerd-client` crate), the way an embedder would: no `ctr`, no
//! code of ours on the client side.
//!
//! ```text
//! containerd-lite --address /tmp/cdl.sock --root /tmp/cdl-root --state /tmp/cdl-state &
//! ctr -a /tmp/cdl.sock images import busybox.tar
//! cargo run -p containerd-lite --example run_container -- \
//!     --address /tmp/cdl.sock docker.io/library/busybox:latest demo sh -c 'echo hi; exit 3'
//! ```
//!
//! It resolves the image (Images.Get, then the manifest and config through
//! Content.Read), prepares a snapshot on the image's top layer (Snapshots.Prepare,
//! parent = the layers' chain id), creates a container with an OCI runtime spec
//! (Containers.Create), creates the task with its stdout and stderr on FIFOs it reads
//! (Tasks.Create with the snapshot's mounts as rootfs), starts it, waits for it, and
//! deletes the task, the container and the snapshot. It prints the container's output
//! and exits with its exit status. The integration tests run [`run_container`] from
//! this file.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateRequest as CreateLeaseRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteRequest as DeleteLeaseRequest, DeleteTaskRequest,
    GetImageRequest, ListContainersRequest, ReadContentRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// containerd-lite's socket.
    pub address: PathBuf,
    pub namespace: String,
    /// An image already in the daemon (imported or pulled).
    pub image: String,
    /// Container id (also the snapshot key).
    pub id: String,
    /// The command; empty means the image's entrypoint and cmd.
    pub args: Vec<String>,
    /// A directory for the stdio FIFOs.
    pub fifo_dir: PathBuf,
}

/// What the container did.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub pid: u32,
    pub exit_status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The ids `Containers.List` showed while the task ran.
    pub listed: Vec<String>,
}

/// A request carrying containerd's namespace header.
fn req<T>(ns: &str, msg: T) -> Result<Request<T>, Error> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "containerd-namespace",
        ns.parse().map_err(|_| "bad namespace")?,
    );
    Ok(r)
}

/// A request that also adds what it creates to `lease`, so that garbage collection
/// leaves the snapshot alone until the lease goes (as containerd's clients do).
fn leased<T>(ns: &str, lease: &str, msg: T) -> Result<Request<T>, Error> {
    let mut r = req(ns, msg)?;
    r.metadata_mut().insert(
        "containerd-lease",
        lease.parse().map_err(|_| "bad lease id")?,
    );
    Ok(r)
}

/// A whole blob, through the streaming Content.Read.
async fn read_blob(ch: &Channel, ns: &str, digest: &str) -> Result<Vec<u8>, Error> {
    let mut stream = ContentClient::new(ch.clone())
        .read(req(
            ns,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        )?)
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await? {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

fn is_index(media_type: &str) -> bool {
    media_type.ends_with("image.index.v1+json") || media_type.ends_with("manifest.list.v2+json")
}

/// The image's config JSON, through the host platform's manifest.
async fn image_config(ch: &Channel, ns: &str, image: &str) -> Result<Value, Error> {
    let target = ImagesClient::new(ch.clone())
        .get(req(
            ns,
            GetImageRequest {
                name: image.to_string(),
            },
        )?)
        .await?
        .into_inner()
        .image
        .and_then(|i| i.target)
        .ok_or("image has no target")?;
    let mut manifest: Value = serde_json::from_slice(&read_blob(ch, ns, &target.digest).await?)?;
    if is_index(&target.media_type) {
        let entry = manifest["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
                })
            })
            .ok_or("no linux/amd64 manifest in the index")?;
        let digest = entry["digest"].as_str().ok_or("manifest without digest")?;
        manifest = serde_json::from_slice(&read_blob(ch, ns, digest).await?)?;
    }
    let config = manifest["config"]["digest"]
        .as_str()
        .ok_or("manifest without a config")?;
    Ok(serde_json::from_slice(&read_blob(ch, ns, config).await?)?)
}

/// The snapshot name of the image's top layer: the OCI chain id of its diff ids.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for d in ids {
        let sum = Sha256::digest(format!("{chain} {d}").as_bytes());
        chain = format!("sha256:{}", hex_of(&sum));
    }
    Some(chain)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A runtime spec close to containerd's default for `args` in the image's env and
/// working dir, in the cgroup containerd would pick (`/<namespace>/<id>`).
fn runtime_spec(config: &Value, args: &[String], ns: &str, id: &str) -> Result<Value, Error> {
    let cfg = &config["config"];
    let args: Vec<Value> = if args.is_empty() {
        let mut a: Vec<Value> = cfg["Entrypoint"].as_array().cloned().unwrap_or_default();
        a.extend(cfg["Cmd"].as_array().cloned().unwrap_or_default());
        a
    } else {
        args.iter().map(|a| json!(a)).collect()
    };
    if args.is_empty() {
        return Err("no command given and the image has none".into());
    }
    let env = cfg["Env"].as_array().cloned().unwrap_or_else(|| {
        vec![json!(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )]
    });
    let cwd = cfg["WorkingDir"]
        .as_str()
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT"
    ]);
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs" },
        "hostname": id.chars().take(63).collect::<String>(),
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "cgroupsPath": format!("/{ns}/{id}"),
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// A FIFO and the thread that reads it to EOF: the open waits for the shim to
/// open the write end, as containerd's own FIFO readers do.
struct FifoReader {
    path: PathBuf,
    thread: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
}

impl FifoReader {
    fn new(path: PathBuf) -> Result<FifoReader, Error> {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        let p = path.clone();
        let thread = std::thread::spawn(move || {
            let mut data = Vec::new();
            std::fs::File::open(&p)?.read_to_end(&mut data)?;
            Ok(data)
        });
        Ok(FifoReader {
            path,
            thread: Some(thread),
        })
    }

    /// Everything written; a FIFO the shim never opened (no output at all, or a
    /// failed start) is opened for writing here so the reader's open returns.
    fn finish(mut self) -> Result<Vec<u8>, Error> {
        let thread = self.thread.take().ok_or("FIFO already read")?;
        if !thread.is_finished() {
            // Non-blocking: succeeds only while the reader is still in its open.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&self.path);
        }
        let data = thread.join().map_err(|_| "FIFO reader panicked")??;
        Ok(data)
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&self.path);
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

const SNAPSHOTTER: &str = "overlayfs";

/// Runs `spec` to completion and cleans up after it (task, container, snapshot,
/// lease), also when a step fails.
pub async fn run_container(spec: &RunSpec) -> Result<RunResult, Error> {
    let ch = containerd_client::connect(&spec.address).await?;
    let ns = spec.namespace.as_str();
    let config = image_config(&ch, ns, &spec.image).await?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let parent = chain_id(&diff_ids).ok_or("image has no layers")?;
    let oci = runtime_spec(&config, &spec.args, ns, &spec.id)?;

    let lease = format!("run_container-{}", spec.id);
    let mut leases = LeasesClient::new(ch.clone());
    leases
        .create(req(
            ns,
            CreateLeaseRequest {
                id: lease.clone(),
                labels: HashMap::new(),
            },
        )?)
        .await?;
    let result = with_snapshot(&ch, spec, &lease, &parent, oci).await;
    let released = leases
        .delete(req(
            ns,
            DeleteLeaseRequest {
                id: lease,
                sync: true,
            },
        )?)
        .await;
    let r = result?;
    released?;
    Ok(r)
}

async fn with_snapshot(
    ch: &Channel,
    spec: &RunSpec,
    lease: &str,
    parent: &str,
    oci: Value,
) -> Result<RunResult, Error> {
    let ns = spec.namespace.as_str();
    let mut snapshots = SnapshotsClient::new(ch.clone());
    let mounts = snapshots
        .prepare(leased(
            ns,
            lease,
            PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: spec.id.clone(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            },
        )?)
        .await?
        .into_inner()
        .mounts;
    let result = with_container(ch, spec, oci, mounts).await;
    let removed = snapshots
        .remove(req(
            ns,
            RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: spec.id.clone(),
            },
        )?)
        .await;
    let r = result?;
    match removed {
        // Already collected is as good as removed.
        Err(s) if s.code() != Code::NotFound => return Err(s.into()),
        _ => {}
    }
    Ok(r)
}

async fn with_container(
    ch: &Channel,
    spec: &RunSpec,
    oci: Value,
    mounts: Vec<containerd_client::types::Mount>,
) -> Result<RunResult, Error> {
    let ns = spec.namespace.as_str();
    let mut containers = ContainersClient::new(ch.clone());
    let container = Container {
        id: spec.id.clone(),
        image: spec.image.clone(),
        runtime: Some(Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: serde_json::to_vec(&oci)?,
        }),
        snapshotter: SNAPSHOTTER.into(),
        snapshot_key: spec.id.clone(),
        ..Default::default()
    };
    containers
        .create(req(
            ns,
            CreateContainerRequest {
                container: Some(container),
            },
        )?)
        .await?;
    let result = with_task(ch, spec, mounts).await;
    let deleted = containers
        .delete(req(
            ns,
            DeleteContainerRequest {
                id: spec.id.clone(),
            },
        )?)
        .await;
    let r = result?;
    deleted?;
    Ok(r)
}

async fn with_task(
    ch: &Channel,
    spec: &RunSpec,
    rootfs: Vec<containerd_client::types::Mount>,
) -> Result<RunResult, Error> {
    let ns = spec.namespace.as_str();
    let stdout = FifoReader::new(spec.fifo_dir.join(format!("{}-stdout", spec.id)))?;
    let stderr = FifoReader::new(spec.fifo_dir.join(format!("{}-stderr", spec.id)))?;
    let mut tasks = TasksClient::new(ch.clone());
    let created = tasks
        .create(req(
            ns,
            CreateTaskRequest {
                container_id: spec.id.clone(),
                rootfs,
                stdout: path_str(&stdout.path)?,
                stderr: path_str(&stderr.path)?,
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();
    let run = async {
        // Wait before Start, as containerd's clients do, so no exit can be missed.
        let mut waiter = tasks.clone();
        let wait_req = req(
            ns,
            WaitRequest {
                container_id: spec.id.clone(),
                exec_id: String::new(),
            },
        )?;
        let wait = tokio::spawn(async move { waiter.wait(wait_req).await });
        tasks
            .clone()
            .start(req(
                ns,
                StartRequest {
                    container_id: spec.id.clone(),
                    exec_id: String::new(),
                },
            )?)
            .await?;
        let listed = ContainersClient::new(ch.clone())
            .list(req(ns, ListContainersRequest { filters: vec![] })?)
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        let exit = wait.await??.into_inner().exit_status;
        Ok::<_, Error>((exit, listed))
    }
    .await;
    let deleted = tasks
        .delete(req(
            ns,
            DeleteTaskRequest {
                container_id: spec.id.clone(),
            },
        )?)
        .await;
    let (exit_status, listed) = run?;
    deleted.map_err(|s: Status| format!("deleting the task: {s}"))?;
    Ok(RunResult {
        pid: created.pid,
        exit_status,
        stdout: stdout.finish()?,
        stderr: stderr.finish()?,
        listed,
    })
}

fn path_str(p: &Path) -> Result<String, Error> {
    Ok(p.to_str().ok_or("non-UTF-8 path")?.to_string())
}

const USAGE: &str = "usage: run_container [--address SOCK] [--namespace NS] IMAGE ID [CMD...]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<RunSpec, Error> {
    let mut address = PathBuf::from("/run/containerd-lite/containerd-lite.sock");
    let mut namespace = "default".to_string();
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--address" | "-a" => address = args.next().ok_or(USAGE)?.into(),
            "--namespace" | "-n" => namespace = args.next().ok_or(USAGE)?,
            "--help" | "-h" => return Err(USAGE.into()),
            _ => {
                rest.push(a);
                rest.extend(args.by_ref());
            }
        }
    }
    let mut rest = rest.into_iter();
    let image = rest.next().ok_or(USAGE)?;
    let id = rest.next().ok_or(USAGE)?;
    Ok(RunSpec {
        address,
        namespace,
        image,
        id,
        args: rest.collect(),
        fifo_dir: std::env::temp_dir(),
    })
}

#[allow(dead_code)] // The tests take the rest of this file as a module, not main.
fn main() -> std::process::ExitCode {
    let outcome = (|| -> Result<RunResult, Error> {
        let spec = parse_args(std::env::args().skip(1))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run_container(&spec))
    })();
    match outcome {
        Ok(r) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&r.stdout);
            let _ = std::io::stderr().write_all(&r.stderr);
            std::process::ExitCode::from(u8::try_from(r.exit_status).unwrap_or(u8::MAX))
        }
        Err(e) => {
            eprintln!("run_container: {e}");
            std::process::ExitCode::from(125)
        }
    }
}
