//! Building the container's root filesystem inside its new mount namespace: the spec's
//! mounts, /dev, pivot_root, masked and read-only paths. Every path from the spec is
//! resolved inside the rootfs (see `resolve`), and mounts target the resolved fd.
pub mod devices;
pub mod options;
pub mod resolve;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cgroups::CgroupPaths;
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use crate::error::{OciError, Result};
use crate::sys;
use options::MountOptions;
use resolve::{Create, fd_path, resolve_in_root};

/// What rootfs setup needs besides the spec.
#[derive(Debug)]
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    /// Set when the container runs in a user namespace: mknod is refused there, and
    /// mount flags of bind mounts are locked.
    pub in_userns: bool,
    pub cgroup: Option<&'a CgroupPaths>,
    pub no_pivot: bool,
}

fn mount_err(what: &str, target: &Path, e: Errno) -> OciError {
    OciError::sys(format!("mount {what} on {}", target.display()), e)
}

/// Everything from the first mount to pivot_root. The process must be in its own mount
/// namespace.
pub fn setup(ctx: &RootfsContext<'_>) -> Result<()> {
    prepare(ctx)?;
    switch_root(ctx)
}

/// Everything up to the switch of root: propagation, the rootfs bind, mounts, devices.
/// Split from [`switch_root`] because hooks run between the two.
pub fn prepare(ctx: &RootfsContext<'_>) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => parse_propagation(p)?,
    };
    // Keep host mount events from reaching the container (and ours from reaching the
    // host) before anything is mounted.
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(|e| mount_err("propagation", Path::new("/"), e))?;
    make_parent_private(ctx.rootfs)?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| mount_err("rootfs bind", ctx.rootfs, e))?;
    let root: OwnedFd = File::open(ctx.rootfs)
        .map_err(|e| OciError::io("open rootfs", ctx.rootfs, e))?
        .into();

    let mounts = ctx.spec.mounts().as_deref().unwrap_or_default();
    for m in mounts {
        mount_entry(ctx, &root, m)?;
    }
    let dev_is_bound = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && options_of(m).is_bind());
    if !dev_is_bound {
        devices::create_default(&root, ctx.in_userns)?;
        devices::create_links(&root)?;
    }
    if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        devices::create_spec_devices(&root, devs, ctx.in_userns)?;
    }
    if let Some(cwd) = ctx.spec.process().as_ref().map(|p| p.cwd()) {
        // runc creates a missing cwd (as root, before dropping privileges).
        if !cwd.as_os_str().is_empty() {
            resolve_in_root(root.as_fd(), cwd, Create::Dir)
                .map_err(|e| OciError::Other(format!("cwd: {e}")))?;
        }
    }
    Ok(())
}

/// pivot_root (or MS_MOVE plus chroot with --no-pivot) into the prepared rootfs.
pub fn switch_root(ctx: &RootfsContext<'_>) -> Result<()> {
    if ctx.no_pivot {
        move_root(ctx.rootfs)
    } else {
        pivot(ctx.rootfs)
    }
}

fn parse_propagation(p: &str) -> Result<MsFlags> {
    let o = options::parse(&[p.to_string()]);
    match o.propagation.as_slice() {
        [flag] => Ok(*flag),
        _ => Err(OciError::InvalidConfig(format!(
            "linux.rootfsPropagation: unknown value {p:?}"
        ))),
    }
}

/// pivot_root(2) refuses a new root whose parent mount is shared; make that one mount
/// private (only it, not the tree).
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let Some(mount_point) = find_mount_point(rootfs.parent().unwrap_or(Path::new("/")))? else {
        return Ok(());
    };
    match mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(mount_err("private", &mount_point, e)),
    }
}

/// The mount point (from /proc/self/mountinfo) that contains `path`, if it is shared.
fn find_mount_point(path: &Path) -> Result<Option<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| OciError::io("read", "/proc/self/mountinfo", e))?;
    let mut best: Option<(usize, PathBuf, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if path.starts_with(&mp) {
            let len = mp.as_os_str().len();
            let shared = fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"));
            if best.as_ref().is_none_or(|(l, _, _)| len >= *l) {
                best = Some((len, mp, shared));
            }
        }
    }
    Ok(best.and_then(|(_, mp, shared)| shared.then_some(mp)))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// An fd opened before a mount still names the directory underneath it, so every step
/// after a mount (remount, propagation, sub-mounts) must look the destination up again.
fn reopen(root: &OwnedFd, dest: &Path) -> Result<(OwnedFd, PathBuf)> {
    let fd = resolve_in_root(root.as_fd(), dest, Create::Nothing)
        .map_err(|e| OciError::Other(format!("mount destination: {e}")))?;
    let path = fd_path(&fd);
    Ok((fd, path))
}

fn options_of(m: &Mount) -> MountOptions {
    let mut o = options::parse(m.options().as_deref().unwrap_or_default());
    if m.typ().as_deref() == Some("bind") {
        o.flags.insert(MsFlags::MS_BIND);
    }
    o
}

fn mount_entry(ctx: &RootfsContext<'_>, root: &OwnedFd, m: &Mount) -> Result<()> {
    let opts = options_of(m);
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let _span = tracing::debug_span!("mount", dest = %dest.display(), typ).entered();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, m, &opts);
    }
    if opts.is_bind() {
        return bind_mount(ctx, root, m, &opts);
    }
    let target = resolve_in_root(root.as_fd(), dest, Create::Dir)
        .map_err(|e| OciError::Other(format!("mount destination: {e}")))?;
    let target_path = fd_path(&target);
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = opts.data_string();
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    let result = mount(
        Some(&source),
        &target_path,
        Some(typ),
        flags,
        data.as_deref(),
    );
    match result {
        Ok(()) => {}
        // sysfs belongs to the network namespace: in a user namespace without its own
        // network namespace the kernel refuses it, so bind the host's /sys as runc does.
        Err(Errno::EPERM) if typ == "sysfs" && ctx.in_userns => {
            mount(
                Some("/sys"),
                &target_path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| mount_err("sysfs (rbind)", dest, e))?;
            let (_fd, mounted) = reopen(root, dest)?;
            remount_bind(&mounted, opts.flags, dest)?;
        }
        Err(e) => return Err(mount_err(typ, dest, e)),
    }
    let (_fd, mounted) = reopen(root, dest)?;
    finish_mount(&mounted, &opts, dest)
}

fn bind_mount(
    ctx: &RootfsContext<'_>,
    root: &OwnedFd,
    m: &Mount,
    opts: &MountOptions,
) -> Result<()> {
    let dest = m.destination();
    let source = m.source().clone().ok_or_else(|| {
        OciError::InvalidConfig(format!("bind mount on {} has no source", dest.display()))
    })?;
    let source = if source.is_absolute() {
        source
    } else {
        ctx.bundle.join(source)
    };
    let meta =
        std::fs::metadata(&source).map_err(|e| OciError::io("bind mount source", &source, e))?;
    let create = if meta.is_dir() {
        Create::Dir
    } else {
        Create::File
    };
    let target = resolve_in_root(root.as_fd(), dest, create)
        .map_err(|e| OciError::Other(format!("mount destination: {e}")))?;
    let target_path = fd_path(&target);
    let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    mount(
        Some(&source),
        &target_path,
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| mount_err(&format!("bind {}", source.display()), dest, e))?;
    let (_fd, mounted) = reopen(root, dest)?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        remount_bind(&mounted, opts.flags, dest)?;
    }
    finish_mount(&mounted, opts, dest)
}

/// Applies flags to a bind mount (mount(2) ignores them on the first MS_BIND). Flags the
/// kernel has locked on the source (nodev, nosuid, noexec... in a user namespace) must
/// be repeated or the remount is refused.
fn remount_bind(target: &Path, flags: MsFlags, shown: &Path) -> Result<()> {
    let locked = locked_flags(target);
    let flags = (flags & !(MsFlags::MS_REC | MsFlags::MS_BIND))
        | MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | locked;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| mount_err("remount", shown, e))
}

fn locked_flags(target: &Path) -> MsFlags {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(target)
    else {
        return MsFlags::empty();
    };
    let Ok(st) = fstatvfs(&f) else {
        return MsFlags::empty();
    };
    let mut out = MsFlags::empty();
    let fl = st.flags();
    for (fs, ms) in [
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if fl.contains(fs) {
            out |= ms;
        }
    }
    out
}

use std::os::unix::fs::OpenOptionsExt;

fn finish_mount(target: &Path, opts: &MountOptions, shown: &Path) -> Result<()> {
    for p in &opts.propagation {
        mount(None::<&str>, target, None::<&str>, *p, None::<&str>)
            .map_err(|e| mount_err("propagation", shown, e))?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        let c = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| OciError::InvalidConfig(format!("{} has a NUL byte", shown.display())))?;
        sys::mount_setattr_recursive(&c, opts.rec_set, opts.rec_clear)
            .map_err(|e| mount_err("recursive attributes", shown, e))?;
    }
    Ok(())
}

/// cgroup v1: a tmpfs with one bind mount per hierarchy of the container's own cgroup
/// directories (as runc does), so the container sees its cgroup as the root. v2: the
/// container's cgroup directory itself.
fn mount_cgroup(
    ctx: &RootfsContext<'_>,
    root: &OwnedFd,
    m: &Mount,
    opts: &MountOptions,
) -> Result<()> {
    let dest = m.destination();
    let target = resolve_in_root(root.as_fd(), dest, Create::Dir)
        .map_err(|e| OciError::Other(format!("mount destination: {e}")))?;
    let target_path = fd_path(&target);
    let Some(paths) = ctx.cgroup else {
        return Ok(());
    };
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = (opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC))
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    if paths.v2 {
        if let Some(dir) = paths.dirs.get("") {
            mount(
                Some(dir),
                &target_path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| mount_err("cgroup2 bind", dest, e))?;
            let (_fd, mounted) = reopen(root, dest)?;
            remount_bind(
                &mounted,
                base | if ro {
                    MsFlags::MS_RDONLY
                } else {
                    MsFlags::empty()
                },
                dest,
            )?;
        }
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        &target_path,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| mount_err("cgroup tmpfs", dest, e))?;
    let (tmpfs, target_path) = reopen(root, dest)?;
    for (key, dir) in &paths.dirs {
        let name = match key.as_str() {
            "" => "unified".to_string(),
            k => k.strip_prefix("name=").unwrap_or(k).to_string(),
        };
        if !dir.exists() {
            continue;
        }
        let sub = resolve_in_root(tmpfs.as_fd(), Path::new(&name), Create::Dir)
            .map_err(|e| OciError::Other(format!("cgroup mount: {e}")))?;
        let sub_path = fd_path(&sub);
        mount(
            Some(dir),
            &sub_path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| mount_err(&format!("cgroup {key}"), dest, e))?;
        let sub = resolve_in_root(tmpfs.as_fd(), Path::new(&name), Create::Nothing)
            .map_err(|e| OciError::Other(format!("cgroup mount: {e}")))?;
        let sub_path = fd_path(&sub);
        remount_bind(
            &sub_path,
            base | if ro {
                MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            },
            dest,
        )?;
        if name.contains(',') {
            for part in name.split(',') {
                let _ = nix::unistd::symlinkat(name.as_str(), tmpfs.as_fd(), part);
            }
        }
    }
    if ro {
        mount(
            None::<&str>,
            &target_path,
            None::<&str>,
            base | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .map_err(|e| mount_err("cgroup tmpfs ro", dest, e))?;
    }
    Ok(())
}

fn pivot(rootfs: &Path) -> Result<()> {
    let old_root = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OciError::sys("open /", e))?;
    let new_root = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OciError::sys(format!("open {}", rootfs.display()), e))?;
    fchdir(&new_root).map_err(|e| OciError::sys("fchdir rootfs", e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one, so no directory
    // for it is needed inside the rootfs.
    pivot_root(".", ".").map_err(|e| OciError::sys("pivot_root", e))?;
    fchdir(&old_root).map_err(|e| OciError::sys("fchdir old root", e))?;
    // Detaching must not propagate to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| mount_err("rslave", Path::new("old root"), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| OciError::sys("umount old root", e))?;
    chdir("/").map_err(|e| OciError::sys("chdir /", e))
}

/// --no-pivot: for roots that pivot_root cannot leave (initramfs).
fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(|e| OciError::sys("chdir rootfs", e))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(|e| mount_err("move", rootfs, e))?;
    chroot(".").map_err(|e| OciError::sys("chroot", e))?;
    chdir("/").map_err(|e| OciError::sys("chdir /", e))
}

/// After pivot_root: maskedPaths, readonlyPaths, then a read-only root if asked.
pub fn finish(spec: &Spec) -> Result<()> {
    let root: OwnedFd = File::open("/")
        .map_err(|e| OciError::io("open", "/", e))?
        .into();
    if let Some(linux) = spec.linux() {
        for p in linux.readonly_paths().as_deref().unwrap_or_default() {
            make_readonly(&root, Path::new(p))?;
        }
        for p in linux.masked_paths().as_deref().unwrap_or_default() {
            mask(&root, Path::new(p))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY, Path::new("/"))?;
    }
    Ok(())
}

fn make_readonly(root: &OwnedFd, p: &Path) -> Result<()> {
    let fd = match resolve_in_root(root.as_fd(), p, Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(OciError::Other(format!("readonly path: {e}"))),
    };
    let target = fd_path(&fd);
    mount(
        Some(&target),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| mount_err("readonly bind", p, e))?;
    // Re-resolve: the bind created a new mount on top of the old fd's.
    let fd = resolve_in_root(root.as_fd(), p, Create::Nothing)
        .map_err(|e| OciError::Other(format!("readonly path: {e}")))?;
    remount_bind(&fd_path(&fd), MsFlags::MS_RDONLY, p)
}

fn mask(root: &OwnedFd, p: &Path) -> Result<()> {
    let fd = match resolve_in_root(root.as_fd(), p, Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(OciError::Other(format!("masked path: {e}"))),
    };
    let target = fd_path(&fd);
    let is_dir = std::fs::metadata(&target)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let result = if is_dir {
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
        )
    } else {
        mount(
            Some("/dev/null"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| mount_err("mask", p, e))
}
