//! The few syscalls that need `unsafe`, each wrapped once and audited here. Everything
//! else goes through nix's safe wrappers.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::unistd::ForkResult;

/// fork(2) in a process that has exactly one thread.
///
/// ocirun never starts a thread (no async runtime, no thread pools), so the child is a
/// faithful copy that may allocate and take locks: nothing can be held by a thread that
/// does not exist in the child.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: ocirun is single-threaded for its whole life (see above), which is the
    // condition under which fork's child may do more than async-signal-safe calls.
    unsafe { nix::unistd::fork() }
}

/// Marks every fd from `first` upwards close-on-exec (close_range(2) with
/// CLOSE_RANGE_CLOEXEC, Linux 5.11), so the container process inherits only stdio
/// and the fds the caller asked to preserve.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes plain integers and touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// Sets mount attributes on a mount tree (mount_setattr(2), Linux 5.12); used for the
/// recursive read-only and similar `r*` mount options, which mount(2) cannot express.
pub fn mount_setattr_recursive(
    path: &std::ffi::CStr,
    attr_set: u64,
    attr_clr: u64,
) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a valid NUL-terminated string and `attr` a properly laid-out
    // struct mount_attr that lives for the duration of the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// setrlimit(2) for any resource number, including those nix has no name for.
pub fn setrlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> nix::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit struct that the kernel only reads.
    let rc = unsafe { libc::setrlimit(resource, &lim) };
    Errno::result(rc).map(drop)
}

/// _exit(2): ends a forked child without running atexit handlers or flushing stdio
/// buffers it inherited from the parent (which would print them twice).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

fn cstr(s: &str) -> nix::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| Errno::EINVAL)
}

/// fsopen(2) (Linux 5.2): a filesystem context for the new mount API.
pub fn fsopen(fstype: &str) -> nix::Result<std::os::fd::OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    let name = cstr(fstype)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = Errno::result(rc)?;
    // SAFETY: on success fsopen returns a new fd that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// fsconfig(2) with FSCONFIG_SET_STRING: sets one option, one call per value, so a
/// path needs no escaping of `,` or `:`.
pub fn fsconfig_set_string(
    fs: std::os::fd::BorrowedFd<'_>,
    key: &str,
    value: &str,
) -> nix::Result<()> {
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    let key = cstr(key)?;
    let value = cstr(value)?;
    // SAFETY: both strings are valid and NUL-terminated for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            std::os::fd::AsRawFd::as_raw_fd(&fs),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// fsconfig(2) with FSCONFIG_CMD_CREATE, then fsmount(2): a detached, read-only mount
/// that is reachable only through the returned fd.
pub fn fsmount_readonly(fs: std::os::fd::BorrowedFd<'_>) -> nix::Result<std::os::fd::OwnedFd> {
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 4;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fs);
    // SAFETY: plain integer arguments; null key and value are what CMD_CREATE takes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            raw,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(rc)?;
    // SAFETY: plain integer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            raw,
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    };
    let fd = Errno::result(rc)?;
    // SAFETY: on success fsmount returns a new fd that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// seccomp(2) SECCOMP_SET_MODE_FILTER with a classic BPF program (as generated by
/// libseccomp), `program` being whole 8-byte `struct sock_filter` instructions.
pub fn seccomp_set_filter(program: &[u8], flags: u32) -> nix::Result<()> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    let insn = std::mem::size_of::<libc::sock_filter>();
    if program.is_empty() || !program.len().is_multiple_of(insn) {
        return Err(Errno::EINVAL);
    }
    let len = u16::try_from(program.len() / insn).map_err(|_| Errno::EINVAL)?;
    // Copied into properly aligned instructions: the byte buffer has no alignment promise.
    let filter: Vec<libc::sock_filter> = program
        .chunks_exact(insn)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` valid instructions in `filter`, which outlives the
    // call; the kernel copies the program and does not keep the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(rc).map(drop)
}

/// Gives the container process the signal state a fresh process expects: the Rust
/// runtime set SIGPIPE to SIG_IGN in ocirun (and an ignored signal survives execve),
/// and a caller such as a shim may have blocked signals it handles through signalfd.
pub fn reset_signals_for_exec() -> nix::Result<()> {
    use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
    // SAFETY: installing SIG_DFL runs no handler code of ours, so none of signal()'s
    // handler-safety conditions apply.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }?;
    SigSet::empty().thread_set_mask()
}
