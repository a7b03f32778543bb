//! Directory copy for the native snapshotter (which has no copy-on-write) and disk
//! usage for `Usage`.
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

/// Copies the tree under `src` into the existing directory `dst`, keeping modes,
/// owners, times, xattrs, symlinks, device nodes and hardlinks within the tree.
pub fn copy_dir(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_tree(src, dst, &mut links)?;
    copy_meta(src, dst, &fs::symlink_metadata(src)?)
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to, links)?;
        } else {
            if !ft.is_dir() && md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    fs::hard_link(first, &to)?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), to.clone());
            }
            if ft.is_file() {
                fs::copy(&from, &to)?;
            } else if ft.is_symlink() {
                symlink(fs::read_link(&from)?, &to)?;
            } else {
                let kind = if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else {
                    SFlag::S_IFSOCK
                };
                mknod(&to, kind, Mode::from_bits_truncate(md.mode()), md.rdev())
                    .map_err(io::Error::from)?;
            }
        }
        copy_meta(&from, &to, &md)?;
    }
    Ok(())
}

fn copy_meta(from: &Path, to: &Path, md: &fs::Metadata) -> io::Result<()> {
    lchown(to, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        // After chown, which clears setuid bits.
        fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(from, to)?;
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    let size = match rustix::fs::llistxattr(from, &mut [0u8; 0][..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(from, &mut names[..])?;
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap_or_default());
        if name.is_empty() {
            continue;
        }
        let len = rustix::fs::lgetxattr_query(from, name)?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(from, name, &mut value[..])?;
        rustix::fs::lsetxattr(to, name, &value[..got], rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Bytes allocated and inodes used under `root`, each inode counted once.
pub fn disk_usage(root: &Path) -> io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p)?;
        if seen.insert((md.dev(), md.ino())) {
            bytes += md.blocks() * 512;
        }
        if md.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok((bytes, seen.len() as u64))
}
