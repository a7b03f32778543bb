//! The bpf(2) calls the device filter needs, each wrapped once and audited here: the
//! only `unsafe` in this crate. Each command takes its own member of `union bpf_attr`
//! (linux/bpf.h) as a `#[repr(C)]` struct with every byte an explicit field, so nothing
//! uninitialised reaches the kernel; a size smaller than the kernel's union is fine, the
//! kernel zero-fills the rest (and insists that unknown trailing bytes be zero).
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs per cgroup, all of which must allow (the kernel ANDs them), so a
/// new filter can be attached before the old one is detached.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// One eBPF instruction, laid out as `struct bpf_insn`: the opcode, the destination
/// register in the low nibble of `regs` and the source register in the high one, a
/// jump offset and an immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(cmd, attr, sizeof attr).
///
/// # Safety
/// `attr` must be the attribute struct `cmd` expects, and every pointer stored in it
/// must be valid for the access the kernel makes (reads of inputs, writes of outputs)
/// for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let size = u32::try_from(std::mem::size_of::<T>()).map_err(|_| io::Error::other("size"))?;
    // SAFETY: `attr` is a live, exclusively borrowed struct of `size` bytes; the
    // caller vouches for the pointers inside it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes ownership of an fd the kernel just returned.
fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(rc).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: a successful BPF_PROG_LOAD / BPF_PROG_GET_FD_BY_ID returns a new fd that
    // nothing else in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // A valid fd is never negative.
    fd.as_raw_fd().unsigned_abs()
}

/// BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program. With `log` the verifier
/// writes its report there (NUL-terminated), which is how a rejection is explained.
pub(crate) fn load_device_prog(
    insns: &[Insn],
    license: &CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?;
    let mut prog_name = [0u8; 16];
    // At most 15 bytes, so the name stays NUL-terminated.
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let (log_level, log_size, log_buf) = match log {
        Some(buf) if !buf.is_empty() => (
            1,
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf.as_mut_ptr() as u64,
        ),
        _ => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: `insns` (insn_cnt instructions in struct bpf_insn layout) and `license`
    // (NUL-terminated) are read by the kernel during the call and outlive it; the log
    // buffer, if any, is exclusively borrowed for the call and log_size is its length.
    let rc = unsafe { bpf(BPF_PROG_LOAD, &mut attr)? };
    owned(rc)
}

/// BPF_PROG_ATTACH of a device program to a cgroup v2 directory, in multi mode.
pub(crate) fn attach_device_prog(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: the attach attributes hold only fds and integers, no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr)? };
    Ok(())
}

/// BPF_PROG_DETACH of one device program from a cgroup.
pub(crate) fn detach_device_prog(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    // SAFETY: the detach attributes hold only fds and integers, no pointers.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr)? };
    Ok(())
}

/// BPF_PROG_QUERY: ids of the device programs attached to this cgroup itself (not
/// those inherited from ancestors).
pub(crate) fn query_device_progs(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 8];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            query_flags: 0,
            attach_flags: 0,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            pad: 0,
        };
        // SAFETY: `prog_ids` points at `prog_cnt` writable u32s that outlive the call;
        // the kernel writes at most that many.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                let n = usize::try_from(attr.prog_cnt).unwrap_or(usize::MAX);
                ids.truncate(n.min(ids.len()));
                return Ok(ids);
            }
            // More programs than room: prog_cnt now holds how many there are.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt > 0 => {
                let n = usize::try_from(attr.prog_cnt).unwrap_or(usize::MAX);
                if n <= ids.len() || n > 1 << 16 {
                    return Err(e);
                }
                ids = vec![0u32; n];
            }
            Err(e) => return Err(e),
        }
    }
}

/// BPF_PROG_GET_FD_BY_ID: an fd for a loaded program, needed to detach it.
pub(crate) fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: the attributes hold only integers, no pointers.
    let rc = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)? };
    owned(rc)
}
