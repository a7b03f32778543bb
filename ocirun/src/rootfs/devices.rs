//! /dev inside the container: the default device nodes every container gets, the
//! spec's `linux.devices`, and the standard symlinks.
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat, umask};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::error::{OciError, Result};
use crate::rootfs::resolve::{Create, fd_path, resolve_in_root};

/// A device node to create: path inside the container, char device numbers, mode.
#[derive(Debug, Clone, Copy)]
pub struct DefaultDevice {
    pub path: &'static str,
    pub major: u64,
    pub minor: u64,
}

/// The nodes every container gets (the runtime spec's list), all char devices 0666.
pub const DEFAULT_DEVICES: [DefaultDevice; 6] = [
    DefaultDevice {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    DefaultDevice {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    DefaultDevice {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    DefaultDevice {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    DefaultDevice {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    DefaultDevice {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

struct Node<'a> {
    path: &'a Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

pub fn create_default(root: &OwnedFd, in_userns: bool) -> Result<()> {
    for d in DEFAULT_DEVICES {
        create_node(
            root,
            &Node {
                path: Path::new(d.path),
                kind: SFlag::S_IFCHR,
                major: d.major,
                minor: d.minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            },
            in_userns,
        )?;
    }
    Ok(())
}

pub fn create_spec_devices(root: &OwnedFd, devices: &[LinuxDevice], in_userns: bool) -> Result<()> {
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(OciError::InvalidConfig(format!(
                    "linux.devices: {} has type 'a', which is only valid in cgroup rules",
                    d.path().display()
                )));
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(OciError::InvalidConfig(format!(
                "linux.devices: {} is not under /dev",
                d.path().display()
            )));
        }
        create_node(
            root,
            &Node {
                path: d.path(),
                kind,
                major: d.major() as u64,
                minor: d.minor() as u64,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            },
            in_userns,
        )?;
    }
    Ok(())
}

fn create_node(root: &OwnedFd, n: &Node<'_>, in_userns: bool) -> Result<()> {
    let err = |what: &str, e: Errno| OciError::sys(format!("{what} {}", n.path.display()), e);
    let parent = n.path.parent().unwrap_or(Path::new("/dev"));
    let name = n.path.file_name().ok_or_else(|| {
        OciError::InvalidConfig(format!("device path {} has no name", n.path.display()))
    })?;
    let dir = resolve_in_root(root.as_fd(), parent, Create::Dir)
        .map_err(|e| OciError::Other(format!("device: {e}")))?;
    // A node the image already ships (or a default listed again in the spec) is replaced.
    match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(err("unlink", e)),
    }
    if in_userns {
        // mknod is refused in a user namespace: bind the host's node onto an empty file.
        let target = resolve_in_root(root.as_fd(), n.path, Create::File)
            .map_err(|e| OciError::Other(format!("device: {e}")))?;
        mount(
            Some(n.path),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err("bind device", e))?;
        return Ok(());
    }
    let old = umask(Mode::empty());
    let made = mknodat(
        &dir,
        name,
        n.kind,
        Mode::from_bits_truncate(n.mode),
        makedev(n.major, n.minor),
    );
    umask(old);
    made.map_err(|e| err("mknod", e))?;
    if n.uid != 0 || n.gid != 0 {
        fchownat(
            &dir,
            name,
            Some(Uid::from_raw(n.uid)),
            Some(Gid::from_raw(n.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err("chown", e))?;
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx (to the devpts instance) and /dev/core.
pub fn create_links(root: &OwnedFd) -> Result<()> {
    let dev = resolve_in_root(root.as_fd(), Path::new("/dev"), Create::Dir)
        .map_err(|e| OciError::Other(format!("/dev: {e}")))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            let _ = unlinkat(&dev, name, UnlinkatFlags::NoRemoveDir);
        }
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(OciError::sys(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}
