//! A container's filesystem, for cp, export and volume population. While the
//! container runs it is its own root, reached through `/proc/<pid>/root` (so its
//! volumes and binds are where the container sees them); stopped, it is its rootfs
//! snapshot (and, for cp, its volumes) mounted by us on a thread of our own that
//! first moves to a private mount namespace: nobody else sees those mounts, and they
//! go with the namespace when the thread ends, even if we fail half-way.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::types::Mount;
use nix::fcntl::{OFlag, open, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use tracing::debug;

use crate::daemon::{Container, Daemon};
use crate::error::{ApiError, ApiResult, Context};
use crate::fstree::{MountEntry, MountTable, mount_id, parse_mountinfo};

/// A container's root directory and the mounts below it.
#[derive(Debug)]
pub struct View {
    /// An O_PATH fd of the root: every path is resolved below it with `rootpath`.
    pub root: OwnedFd,
    pub mounts: MountTable,
}

impl View {
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// A host directory or file to mount at `destination` in a stopped container's view.
#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Runs `f` on a thread of its own and waits for it without blocking the runtime.
pub async fn on_thread<T, F>(what: &str, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("engined-{what}"))
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ctx(|| format!("start a thread for {what}"))?;
    rx.await
        .map_err(|_| ApiError::Internal(format!("the {what} worker failed")))
}

/// Runs `f` with the container's filesystem: its live root if it runs, else its
/// snapshot (with `binds` mounted when `with_volumes`), keeping it from starting
/// meanwhile (two overlay mounts of one upper directory must not be written at once).
pub async fn with_view<T, F>(
    d: &Arc<Daemon>,
    c: &Arc<Container>,
    with_volumes: bool,
    f: F,
) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&View) -> T + Send + 'static,
{
    let mut f = f;
    if c.running() {
        match running(c, f).await? {
            Ok(t) => return Ok(t),
            Err(back) => {
                // Its process is gone and the exit not recorded yet: the snapshot is
                // about to be free.
                f = back;
                let mut life = c.subscribe_life();
                let ended =
                    tokio::time::timeout(Duration::from_secs(5), life.wait_for(|l| !l.running));
                if ended.await.is_err() {
                    return Err(ApiError::Conflict(format!(
                        "container {} is between runs, try again",
                        c.id
                    )));
                }
            }
        }
    }
    let ops = c.lock_ops().await;
    if c.running() {
        // Started meanwhile.
        drop(ops);
        return running(c, f).await?.map_err(|_| {
            ApiError::Conflict(format!("container {} is between runs, try again", c.id))
        });
    }
    let rec = c.record();
    let binds = if with_volumes {
        crate::volumes::binds_of(d, &rec)?
    } else {
        Vec::new()
    };
    let ro = rec.host_config.readonly_rootfs.unwrap_or(false);
    let r = with_snapshot(d, &rec.id, binds, ro, f).await;
    drop(ops);
    r
}

/// `f` on the live root of a running container, or `f` back when its process has
/// gone (exited, and the exit not recorded yet).
async fn running<T, F>(c: &Arc<Container>, f: F) -> ApiResult<Result<T, F>>
where
    T: Send + 'static,
    F: FnOnce(&View) -> T + Send + 'static,
{
    let rec = c.record();
    let (id, pid) = (rec.id.clone(), rec.state.pid);
    let ro = rec.host_config.readonly_rootfs.unwrap_or(false);
    on_thread("rootfs", move || match live_view(&id, pid, ro) {
        Ok(view) => Ok(f(&view)),
        Err(_) => Err(f),
    })
    .await
}

fn read_at(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<String> {
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s)?;
    Ok(s)
}

/// The root of a running container. The `/proc/<pid>` fd pins that very process, so
/// a pid reused after the container's exit is never taken for it; the cgroup check
/// makes sure the process is the container's.
fn live_view(id: &str, pid: i64, readonly_rootfs: bool) -> ApiResult<View> {
    let gone = || ApiError::Conflict(format!("container {id} is not running"));
    if pid <= 0 {
        return Err(gone());
    }
    let proc_dir = open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| gone())?;
    let root = openat(
        proc_dir.as_fd(),
        "root",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| gone())?;
    let cgroup = read_at(proc_dir.as_fd(), "cgroup").map_err(|_| gone())?;
    if !cgroup.contains(id) {
        return Err(gone());
    }
    let mountinfo = read_at(proc_dir.as_fd(), "mountinfo").map_err(|_| gone())?;
    let root_id = mount_id(root.as_fd())
        .ok_or_else(|| ApiError::Internal("cannot tell the container's root mount".into()))?;
    Ok(View {
        root,
        mounts: MountTable::new(root_id, readonly_rootfs, parse_mountinfo(&mountinfo)),
    })
}

/// Runs `f` on the container's rootfs snapshot, mounted privately with `binds` on
/// top. The caller keeps the container from starting meanwhile.
pub async fn with_snapshot<T, F>(
    d: &Daemon,
    id: &str,
    binds: Vec<Bind>,
    readonly_rootfs: bool,
    f: F,
) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&View) -> T + Send + 'static,
{
    let mounts = d
        .ctrd
        .snapshots()
        .mounts(d.ctrd.req(MountsRequest {
            snapshotter: d.ctrd.snapshotter.clone(),
            key: id.to_string(),
        }))
        .await
        .ctx(|| "get the rootfs mounts".into())?
        .into_inner()
        .mounts;
    let tmp = d.cfg.data_root.join("tmp");
    on_thread("snapshot", move || -> ApiResult<T> {
        let view_dir = PrivateMount::new(&tmp, &mounts)?;
        let view = view_dir.view(&binds, readonly_rootfs)?;
        Ok(f(&view))
    })
    .await?
}

/// A directory with the snapshot mounted on it in this thread's own mount namespace;
/// unmounted and removed on drop.
struct PrivateMount {
    target: PathBuf,
}

fn sys(what: String) -> impl FnOnce(nix::errno::Errno) -> ApiError {
    move |e| ApiError::Io {
        context: what,
        source: std::io::Error::from(e),
    }
}

impl PrivateMount {
    fn new(tmp: &Path, mounts: &[Mount]) -> ApiResult<Self> {
        // mount_namespaces(7): unsharing CLONE_NEWNS copies our mounts; making them
        // private keeps what follows from propagating back to the host's.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(sys("unshare the mount namespace".into()))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys("make the mounts private".into()))?;
        let target = tmp.join(format!("rootfs-{}", crate::util::random_hex(8)));
        std::fs::create_dir(&target).ctx(|| format!("create {}", target.display()))?;
        let me = Self { target };
        for m in mounts {
            mount_one(m, &me.target)?;
        }
        Ok(me)
    }

    fn view(&self, binds: &[Bind], readonly_rootfs: bool) -> ApiResult<View> {
        let root: OwnedFd = open(
            self.target.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(format!("open {}", self.target.display())))?;
        let root_id = mount_id(root.as_fd())
            .ok_or_else(|| ApiError::Internal("cannot tell the rootfs mount".into()))?;
        let mut entries = Vec::new();
        for b in binds {
            let create = if b.source.is_dir() {
                rootpath::Create::Dir
            } else {
                rootpath::Create::File
            };
            let dst = Path::new(&b.destination);
            let at = rootpath::resolve_in_root(root.as_fd(), dst, create)
                .map_err(|e| ApiError::BadRequest(format!("mount point {}: {e}", b.destination)))?;
            let at_path = rootpath::fd_path(&at);
            mount(
                Some(b.source.as_path()),
                &at_path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(format!(
                "mount {} on {}",
                b.source.display(),
                b.destination
            )))?;
            if b.readonly {
                mount(
                    None::<&str>,
                    &at_path,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(sys(format!("make {} read-only", b.destination)))?;
            }
            // The fd taken before the mount names the directory underneath it.
            let mounted = rootpath::resolve_in_root(root.as_fd(), dst, rootpath::Create::Nothing)
                .map_err(|e| ApiError::Internal(format!("{}: {e}", b.destination)))?;
            if let Some(id) = mount_id(mounted.as_fd()) {
                entries.push(MountEntry {
                    id,
                    mount_point: dst.to_path_buf(),
                    root: b.source.display().to_string(),
                    readonly: b.readonly,
                    fstype: "bind".into(),
                });
            }
        }
        Ok(View {
            root,
            mounts: MountTable::new(root_id, readonly_rootfs, entries),
        })
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        // umount2(2): MNT_DETACH takes the binds stacked below along.
        if let Err(e) = umount2(&self.target, MntFlags::MNT_DETACH) {
            debug!(target = %self.target.display(), error = %e, "unmount the snapshot view");
        }
        // Not recursive: should the unmount have failed, the container's files stay.
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// One containerd mount: the flag-like options become mount flags, the rest the
/// filesystem's data (as containerd's `mount.All` does).
fn mount_one(m: &Mount, target: &Path) -> ApiResult<()> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let bind = m.r#type == "bind" || flags.contains(MsFlags::MS_BIND);
    let data = data.join(",");
    let fstype = (!bind).then_some(m.r#type.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(sys(format!("mount the rootfs ({} {})", m.r#type, m.source)))?;
    if bind && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(sys("make the rootfs read-only".into()))?;
    }
    Ok(())
}

/// Where `path` (a container path) is, resolved below the view's root: following
/// every symlink in scope, as the container would. Missing is `NotFound` with
/// Docker's message for cp.
pub fn resolve(view: &View, path: &Path, container: &str) -> ApiResult<OwnedFd> {
    rootpath::resolve_in_root(view.root(), path, rootpath::Create::Nothing)
        .map_err(|e| resolve_error(e, &path.display().to_string(), container))
}

pub fn resolve_error(e: rootpath::ResolveError, shown: &str, container: &str) -> ApiError {
    match e.errno() {
        Some(nix::errno::Errno::ENOENT) => ApiError::NotFound(format!(
            "Could not find the file {shown} in container {container}"
        )),
        Some(_) => ApiError::Internal(e.to_string()),
        None => ApiError::BadRequest(e.to_string()),
    }
}
