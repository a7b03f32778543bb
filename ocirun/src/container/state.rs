//! The on-disk record of a container under `--root`, and how its status is read from
//! the live system (the record says which process; /proc says whether it still runs).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cgroups::CgroupPaths;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{OciError, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The state directory exists but create has not finished (or died midway).
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What ocirun keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState {
    pub id: String,
    pub init_pid: i32,
    /// Start time of the init process (field 22 of /proc/PID/stat), so that a recycled
    /// pid is never mistaken for the container.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: Option<CgroupPaths>,
    /// Whether the container has its own pid namespace (killing init then ends all).
    pub own_pid_ns: bool,
    pub spec: Spec,
}

/// A container's directory under --root.
#[derive(Debug)]
pub struct ContainerDir {
    pub id: String,
    pub dir: PathBuf,
}

impl ContainerDir {
    pub fn new(root: &Path, id: &common::ContainerId) -> ContainerDir {
        ContainerDir {
            id: id.to_string(),
            dir: root.join(id.as_str()),
        }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    pub fn save(&self, s: &SavedState) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let data =
            serde_json::to_vec(s).map_err(|e| OciError::Other(format!("encode state: {e}")))?;
        common::atomic_write(&path, &data, 0o600).map_err(|e| OciError::io("write", path, e))
    }

    /// The saved state, or None while the container is still being created.
    pub fn load(&self) -> Result<Option<SavedState>> {
        let path = self.dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| OciError::Other(format!("{}: corrupt state: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.exists() {
                    Ok(None)
                } else {
                    Err(OciError::NotFound(self.id.clone()))
                }
            }
            Err(e) => Err(OciError::io("read", path, e)),
        }
    }

    pub fn status(&self, s: &SavedState) -> Status {
        if !process_alive(s.init_pid, s.init_start_time) {
            return Status::Stopped;
        }
        // Frozen first: a created container can be paused too (as with runc).
        if let Some(paths) = &s.cgroup
            && cgroups::Cgroup::from_paths(paths.clone())
                .is_frozen()
                .unwrap_or(false)
        {
            return Status::Paused;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        Status::Running
    }

    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(OciError::io("remove", &self.dir, e)),
        }
    }
}

/// (state char, start time) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is index 19 after pid and comm.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, start)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// The OCI state document (`ocirun state`), shaped as runc prints it.
pub fn oci_state_json(s: &SavedState, status: Status) -> serde_json::Value {
    let pid = if matches!(status, Status::Stopped) {
        0
    } else {
        s.init_pid
    };
    serde_json::json!({
        "ociVersion": "1.0.2",
        "id": s.id,
        "pid": pid,
        "status": status.as_str(),
        "bundle": s.bundle,
        "rootfs": s.rootfs,
        "created": s.created,
        "owner": "",
        "annotations": s.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(0, 0));
    }
}
