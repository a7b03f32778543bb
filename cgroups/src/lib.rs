//! Cgroup managers: v1, v2 (unified) and the hybrid layout (v1 controllers plus a
//! cgroup2 mount at /sys/fs/cgroup/unified) behind one type, chosen by what the host has.
//!
//! The crate writes cgroupfs directly (no systemd). A [`Cgroup`] is a set of directories,
//! one per hierarchy; [`CgroupPaths`] is what gets saved in the container state so that a
//! later `delete`, `pause` or `ps` can act on the cgroup without the spec or the layout.
// The bpf(2) calls of the cgroup v2 device filter are the one exception, kept in `bpf`.
#![deny(unsafe_code)]

mod bpf;
mod devices;
pub mod event_stats;
mod fs;
mod layout;
mod stats;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use devices::attached_filters as attached_device_filters;
pub use event_stats::EventStats;
pub use v2::{blkio_weight_to_io_weight, shares_to_weight};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no cgroup hierarchy is mounted")]
    NoCgroups,
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid value for {field}: {reason}")]
    InvalidValue { field: &'static str, reason: String },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{op} {path}: timed out")]
    Timeout { op: &'static str, path: PathBuf },
    #[error("load device filter for {path}: {source}{}", if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
    BpfLoad {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        log: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl common::HasKind for CgroupError {
    fn kind(&self) -> common::ErrorKind {
        use common::ErrorKind as K;
        match self {
            CgroupError::Io { source, .. } if source.kind() == ErrorKind::NotFound => K::NotFound,
            CgroupError::Io { .. }
            | CgroupError::Parse { .. }
            | CgroupError::BpfLoad { .. }
            | CgroupError::Internal(_) => K::Internal,
            CgroupError::NoCgroups | CgroupError::Unsupported(_) => K::FailedPrecondition,
            CgroupError::InvalidValue { .. } => K::InvalidArgument,
            CgroupError::Timeout { .. } => K::Unavailable,
        }
    }
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Hierarchy {
    /// Controllers bound to it (`["cpu", "cpuacct"]`, or `["name=systemd"]`).
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The mountinfo root field (the cgroup path that is mounted at `mount_point`).
    pub root: PathBuf,
}

/// What the host has mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// v1 controllers; `unified` is the hybrid cgroup2 mount if there is one.
    V1 {
        hierarchies: Vec<V1Hierarchy>,
        unified: Option<PathBuf>,
    },
    /// Everything on one cgroup2 mount.
    V2 { root: PathBuf },
}

/// Directories of one container's cgroup, saved in the container state so that a later
/// process (delete, pause, ps, update) can act on it without the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    pub v2: bool,
    /// Controller (v1: "memory", "cpu", "name=systemd"...; "" for the unified
    /// directory) to the absolute directory of the container's cgroup.
    pub dirs: BTreeMap<String, PathBuf>,
}

/// Resource usage, as `runc events --stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usage_total_ns: u64,
    pub cpu_usage_kernel_ns: u64,
    pub cpu_usage_user_ns: u64,
    pub cpu_per_cpu_ns: Vec<u64>,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_time_ns: u64,
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// `u64::MAX` when unlimited on v2 ("max"); v1 reports the kernel's page-rounded maximum.
    pub memory_limit: u64,
    pub memory_failcnt: u64,
    pub memory_cache: u64,
    pub memory_raw: BTreeMap<String, u64>,
    pub oom_kills: u64,
    pub pids_current: u64,
    /// 0 when unlimited ("max").
    pub pids_limit: u64,
}

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    paths: CgroupPaths,
    /// Key (as in `paths.dirs`) to the hierarchy's mount point. Known only when built by
    /// [`Cgroup::new`]; otherwise the mount point is found by walking up (see `mount_of`).
    mounts: BTreeMap<String, PathBuf>,
}

/// Turns `linux.cgroupsPath` (or the container id when it is empty) into a path relative
/// to each hierarchy's mount point.
fn relative_cgroup_path(cgroups_path: &str, id: &str) -> Result<PathBuf> {
    let (field, raw) = if cgroups_path.is_empty() {
        if id.is_empty() || id.contains('/') {
            return Err(CgroupError::InvalidValue {
                field: "container id",
                reason: format!("{id:?} cannot name a cgroup"),
            });
        }
        ("container id", id)
    } else {
        ("linux.cgroupsPath", cgroups_path)
    };
    let mut rel = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::InvalidValue {
                    field,
                    reason: format!("{raw:?} must not contain '..'"),
                });
            }
        }
    }
    if rel.as_os_str().is_empty() {
        // Limits written to the root cgroup would apply to the whole host, and
        // destroy would try to remove it.
        return Err(CgroupError::InvalidValue {
            field,
            reason: format!("{raw:?} names the root cgroup"),
        });
    }
    Ok(rel)
}

impl Cgroup {
    /// Computes (without touching the filesystem) where the cgroup of container `id` lives.
    /// `cgroups_path` is the spec's `linux.cgroupsPath` ("" when unset).
    ///
    /// A relative `cgroups_path` is taken from each hierarchy's mount point like an
    /// absolute one (runc resolves it against its own cgroup, which is a surprise when
    /// the runtime itself runs in a transient scope).
    pub fn new(layout: &Layout, cgroups_path: &str, id: &str) -> Result<Cgroup> {
        let rel = relative_cgroup_path(cgroups_path, id)?;
        let mut dirs = BTreeMap::new();
        let mut mounts = BTreeMap::new();
        let v2 = match layout {
            Layout::V1 {
                hierarchies,
                unified,
            } => {
                for h in hierarchies {
                    dirs.insert(h.key(), h.mount_point.join(&rel));
                    mounts.insert(h.key(), h.mount_point.clone());
                }
                // In hybrid mode the process also joins the unified hierarchy (as runc
                // does), so tools that only look at 0:: still see the container.
                if let Some(u) = unified {
                    dirs.insert(String::new(), u.join(&rel));
                    mounts.insert(String::new(), u.clone());
                }
                false
            }
            Layout::V2 { root } => {
                dirs.insert(String::new(), root.join(&rel));
                mounts.insert(String::new(), root.clone());
                true
            }
        };
        if dirs.is_empty() {
            return Err(CgroupError::NoCgroups);
        }
        Ok(Cgroup {
            paths: CgroupPaths { v2, dirs },
            mounts,
        })
    }

    pub fn from_paths(paths: CgroupPaths) -> Cgroup {
        Cgroup {
            paths,
            mounts: BTreeMap::new(),
        }
    }

    pub fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    pub fn is_v2(&self) -> bool {
        self.paths.v2
    }

    /// The directory of the hierarchy that has `controller` ("memory", "name=systemd";
    /// "" for the unified directory). On v2 every controller maps to the one directory.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        if self.paths.v2 {
            return self.paths.dirs.get("").map(PathBuf::as_path);
        }
        if controller.is_empty() {
            return self.paths.dirs.get("").map(PathBuf::as_path);
        }
        self.paths
            .dirs
            .iter()
            .find(|(k, _)| !k.is_empty() && k.split(',').any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// The hybrid (or v2) unified directory.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.paths.dirs.get("").map(PathBuf::as_path)
    }

    /// Mount point of the hierarchy `key`: known from the layout, or the highest
    /// ancestor that still is a cgroup directory (every cgroup dir has cgroup.procs,
    /// the directory the hierarchy is mounted on does not).
    fn mount_of(&self, key: &str) -> Option<PathBuf> {
        if let Some(m) = self.mounts.get(key) {
            return Some(m.clone());
        }
        let mut cur = self.paths.dirs.get(key)?.clone();
        while let Some(parent) = cur.parent() {
            if !parent.join("cgroup.procs").exists() {
                break;
            }
            cur = parent.to_path_buf();
        }
        Some(cur)
    }

    /// Creates every directory (mkdir -p). On v1 cpuset, empty cpuset.cpus/mems are
    /// filled from the parent; on v2 the controllers are enabled down to the leaf.
    #[tracing::instrument(skip_all, fields(dirs = ?self.paths.dirs))]
    pub fn create(&self) -> Result<()> {
        for (key, dir) in &self.paths.dirs {
            let mount = self.mount_of(key);
            let is_cpuset = !self.paths.v2 && key.split(',').any(|c| c == "cpuset");
            if is_cpuset {
                v1::create_cpuset(mount.as_deref(), dir)?;
            } else {
                std::fs::create_dir_all(dir).map_err(|e| fs::io_err("mkdir", dir, e))?;
            }
            if self.paths.v2 && key.is_empty() {
                let root = mount.unwrap_or_else(|| dir.clone());
                v2::enable_controllers(&root, dir, v2::DEFAULT_CONTROLLERS)?;
            }
        }
        Ok(())
    }

    /// Writes the resource limits. Unset fields write nothing.
    #[tracing::instrument(skip_all, fields(v2 = self.paths.v2))]
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        if self.paths.v2 {
            v2::apply(self, r)
        } else {
            v1::apply(self, r)
        }
    }

    /// Moves `pid` (and its threads) into every directory of the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(CgroupError::InvalidValue {
                field: "pid",
                reason: pid.to_string(),
            });
        }
        let pid = pid.to_string();
        for dir in self.paths.dirs.values() {
            fs::write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn procs_dir(&self) -> Option<&Path> {
        if self.paths.v2 {
            return self.unified_dir();
        }
        self.dir("pids")
            .or_else(|| self.dir("memory"))
            .or_else(|| {
                self.paths
                    .dirs
                    .iter()
                    .find(|(k, _)| !k.is_empty())
                    .map(|(_, d)| d.as_path())
            })
            .or_else(|| self.unified_dir())
    }

    /// Pids in the cgroup and its descendants, sorted; empty if the cgroup is gone.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        if let Some(dir) = self.procs_dir() {
            collect_procs(dir, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freezes every process in the cgroup and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<()> {
        if self.paths.v2 {
            v2::set_frozen(self, true)
        } else {
            v1::set_frozen(self, true)
        }
    }

    pub fn thaw(&self) -> Result<()> {
        if self.paths.v2 {
            v2::set_frozen(self, false)
        } else {
            v1::set_frozen(self, false)
        }
    }

    /// False (not an error) when the cgroup or the freezer is missing.
    pub fn is_frozen(&self) -> Result<bool> {
        if self.paths.v2 {
            v2::is_frozen(self)
        } else {
            v1::is_frozen(self)
        }
    }

    /// Usage counters; files that do not exist count as zero.
    pub fn stats(&self) -> Result<Stats> {
        if self.paths.v2 {
            stats::v2(self)
        } else {
            stats::v1(self)
        }
    }

    /// Everything `runc events --stats` reports, in runc's JSON shape.
    pub fn event_stats(&self) -> Result<EventStats> {
        event_stats::read(self)
    }

    /// How many times the OOM killer killed a process in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64> {
        stats::oom_kills(self)
    }

    /// True if any of the directories exists.
    pub fn exists(&self) -> bool {
        self.paths.dirs.values().any(|d| d.is_dir())
    }

    /// Removes the directories, sub-cgroups first. Never touches anything above the
    /// container's own directory. Missing directories are fine.
    #[tracing::instrument(skip_all, fields(dirs = ?self.paths.dirs))]
    pub fn destroy(&self) -> Result<()> {
        // One deadline for all hierarchies: a cgroup that is busy in one is busy in all.
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut first_err = None;
        for dir in self.paths.dirs.values() {
            if let Err(e) = remove_tree(dir, deadline)
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let Some(text) = fs::read_opt(dir, "cgroup.procs")? else {
        return Ok(());
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let pid = line.parse::<i32>().map_err(|e| CgroupError::Parse {
            path: dir.join("cgroup.procs"),
            reason: format!("{line:?}: {e}"),
        })?;
        pids.push(pid);
    }
    for sub in subdirs(dir)? {
        collect_procs(&sub, pids)?;
    }
    Ok(())
}

/// Child directories; empty if `dir` is gone (a cgroup may vanish while we walk).
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fs::io_err("read dir", dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| fs::io_err("read dir", dir, e))?;
        let ft = entry
            .file_type()
            .map_err(|e| fs::io_err("stat", entry.path(), e))?;
        if ft.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    for sub in subdirs(dir)? {
        remove_tree(&sub, deadline)?;
    }
    rmdir_retry(dir, deadline)
}

/// rmdir(2) fails with EBUSY while the cgroup still has tasks, and exiting tasks leave
/// the cgroup shortly after they are reaped, so retry until `deadline`.
fn rmdir_retry(dir: &Path, deadline: Instant) -> Result<()> {
    let mut delay = Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => {
                tracing::debug!(path = %dir.display(), "cgroup removed");
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(fs::io_err("rmdir", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests;
