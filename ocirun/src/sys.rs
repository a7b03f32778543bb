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
