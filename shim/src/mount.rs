//! Rootfs mounts from Create (a runtime v2 shim mounts the snapshot itself).

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Result, ShimError};

fn flag(opt: &str) -> Option<(MsFlags, bool)> {
    Some(match opt {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "nodev" => (MsFlags::MS_NODEV, true),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "private" => (MsFlags::MS_PRIVATE, true),
        "rprivate" => (MsFlags::MS_PRIVATE | MsFlags::MS_REC, true),
        _ => return None,
    })
}

pub fn mount_all(mounts: &[proto::mount::Mount], target: &Path) -> Result<()> {
    for m in mounts {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in &m.options {
            match flag(o) {
                Some((f, true)) => flags |= f,
                Some((f, false)) => flags &= !f,
                None => data.push(o.as_str()),
            }
        }
        let data = data.join(",");
        let fstype = if m.type_ == "bind" {
            None
        } else {
            Some(m.type_.as_str())
        };
        let ro_bind = flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY);
        mount(
            Some(m.source.as_str()),
            target,
            fstype,
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| ShimError::io("mounting rootfs on", target, e.into()))?;
        if ro_bind {
            // A bind mount ignores MS_RDONLY until remounted.
            mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(|e| ShimError::io("remounting rootfs read-only on", target, e.into()))?;
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; a missing or unmounted target is fine.
pub fn unmount_all(target: &Path) {
    for _ in 0..16 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}
