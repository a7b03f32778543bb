//! CVE-2019-5736: a container process that execs /proc/self/exe while ocirun is in its
//! pid namespace could open the ocirun binary through /proc/PID/exe and overwrite it on
//! the host. ocirun therefore re-executes itself from a sealed memfd copy before it
//! touches any container: /proc/self/exe then names an in-memory file that no one can
//! write (F_SEAL_WRITE), and the host binary is never reachable from the container.
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::unistd::fexecve;

use crate::error::{OciError, Result};

const MARKER: &str = "_OCIRUN_SEALED_EXE";

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    match fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(required_seals()),
        Err(_) => false,
    }
}

/// Returns only when already running from a sealed copy; otherwise execs one.
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    if std::env::var_os(MARKER).is_some() {
        return Err(OciError::Other(
            "re-executed from a sealed copy, but /proc/self/exe is not sealed".into(),
        ));
    }
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
    let e = match fexecve(copy.as_fd(), &args, &env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(OciError::sys("fexecve sealed copy", e))
}
