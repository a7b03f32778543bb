//! CVE-2019-5736: a container process that execs /proc/self/exe while ocirun is in its
//! pid namespace could open the ocirun binary through /proc/PID/exe and overwrite it on
//! the host. ocirun therefore re-executes itself from a copy no one can write before it
//! touches any container, so the host binary is never reachable from the container.
//!
//! First choice: the binary seen through a detached, read-only overlayfs mount (the new
//! mount API, no namespace touched, nothing copied): writes through /proc/PID/exe get
//! EROFS and the mount cannot be reached to remount it. Fallback (kernels before 6.8,
//! no overlayfs): a sealed memfd copy (F_SEAL_WRITE), which costs a copy of the binary
//! per call (~1 ms here).
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::Mode;
use nix::sys::statfs::{OVERLAYFS_SUPER_MAGIC, fstatfs};
use nix::sys::statvfs::{FsFlags, fstatvfs};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::unistd::fexecve;

use crate::error::{OciError, Result};

const MARKER: &str = "_OCIRUN_SEALED_EXE";

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Whether /proc/self/exe is a sealed memfd or a file on a read-only overlayfs.
pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    if let Ok(bits) = fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        return SealFlag::from_bits_truncate(bits).contains(required_seals());
    }
    let on_overlay = fstatfs(&exe).is_ok_and(|s| s.filesystem_type() == OVERLAYFS_SUPER_MAGIC);
    let read_only = fstatvfs(&exe).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY));
    on_overlay && read_only
}

/// Returns only when already running from a protected copy; otherwise execs one.
/// `scratch` is a directory of ours where an empty directory can be kept (overlayfs
/// needs two lower layers when it has no upper one).
pub fn ensure_sealed(scratch: &Path) -> Result<()> {
    if std::env::var_os(MARKER).is_some() {
        if is_sealed() {
            return Ok(());
        }
        return Err(OciError::Other(
            "re-executed from a sealed copy, but /proc/self/exe is not sealed".into(),
        ));
    }
    let copy = match overlay_view(scratch) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(
                "read-only overlay of the binary unavailable ({e}); copying it to a sealed memfd"
            );
            sealed_memfd()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| OciError::Other("argument has a NUL byte".into()))?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env.push(CString::new(format!("{MARKER}=1")).map_err(|_| OciError::Other("env".into()))?);
    let e = match fexecve(&copy, &args, &env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(OciError::sys("fexecve sealed copy", e))
}

fn overlay_view(scratch: &Path) -> std::result::Result<OwnedFd, nix::Error> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|_| nix::Error::ENOENT)?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(nix::Error::EINVAL);
    };
    if !exe.exists() {
        // "(deleted)": the binary was replaced while we ran.
        return Err(nix::Error::ENOENT);
    }
    let empty = scratch.join(".exe-empty-layer");
    match nix::unistd::mkdir(&empty, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let (Some(dir), Some(empty)) = (dir.to_str(), empty.to_str()) else {
        return Err(nix::Error::EINVAL);
    };
    let fs = crate::sys::fsopen("overlay")?;
    crate::sys::fsconfig_set_string(fs.as_fd(), "lowerdir+", dir)?;
    crate::sys::fsconfig_set_string(fs.as_fd(), "lowerdir+", empty)?;
    let mnt = crate::sys::fsmount_readonly(fs.as_fd())?;
    let fd = nix::fcntl::openat(
        &mnt,
        name,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

fn sealed_memfd() -> Result<OwnedFd> {
    let mut exe =
        File::open("/proc/self/exe").map_err(|e| OciError::io("open", "/proc/self/exe", e))?;
    let memfd = memfd_create(
        c"ocirun",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| OciError::sys("memfd_create", e))?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut exe, &mut copy).map_err(|e| OciError::io("copy", "/proc/self/exe", e))?;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(required_seals()))
        .map_err(|e| OciError::sys("seal memfd", e))?;
    Ok(copy.into())
}
