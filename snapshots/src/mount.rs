//! containerd's `Mount` and the code that performs one, for tests and task creation.
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::SnapshotError;

/// A mount as containerd's `types.Mount`: what a snapshotter returns and what a task's
/// rootfs is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

fn flag(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "remount" => (true, MsFlags::MS_REMOUNT),
        _ => return None,
    })
}

impl Mount {
    /// Performs the mount on `target`. A read-only bind takes a second remount, since
    /// the kernel ignores MS_RDONLY on the bind itself.
    pub fn mount(&self, target: &Path) -> Result<(), SnapshotError> {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in &self.options {
            match flag(o) {
                Some((true, f)) => flags |= f,
                Some((false, f)) => flags &= !f,
                None => data.push(o.as_str()),
            }
        }
        let is_bind = self.kind == "bind" || flags.contains(MsFlags::MS_BIND);
        let fstype = (!is_bind).then_some(self.kind.as_str());
        let data = data.join(",");
        let err = |e: nix::errno::Errno| SnapshotError::Mount {
            target: target.display().to_string(),
            detail: format!("{} {} {:?}", self.kind, self.source, self.options),
            source: e,
        };
        mount(
            Some(self.source.as_str()),
            target,
            fstype,
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(err)?;
        if is_bind && flags.contains(MsFlags::MS_RDONLY) {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(err)?;
        }
        Ok(())
    }
}

/// Mounts `mounts` in order on `target` (containerd's `mount.All`).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), SnapshotError> {
    for m in mounts {
        m.mount(target)?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; lazily if it is busy.
pub fn unmount_all(target: &Path) -> Result<(), SnapshotError> {
    loop {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                return umount2(target, MntFlags::MNT_DETACH).map_err(|e| SnapshotError::Mount {
                    target: target.display().to_string(),
                    detail: "unmount".into(),
                    source: e,
                });
            }
            Err(e) => {
                return Err(SnapshotError::Mount {
                    target: target.display().to_string(),
                    detail: "unmount".into(),
                    source: e,
                });
            }
        }
    }
}

/// Mounted for its lifetime: unmounts on drop, so a failing test leaves no mount.
#[derive(Debug)]
pub struct MountGuard {
    target: std::path::PathBuf,
}

impl MountGuard {
    pub fn new(mounts: &[Mount], target: &Path) -> Result<MountGuard, SnapshotError> {
        let guard = MountGuard {
            target: target.to_path_buf(),
        };
        mount_all(mounts, target)?;
        Ok(guard)
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount_all(&self.target) {
            tracing::warn!(error = %e, "unmount on drop");
        }
    }
}
