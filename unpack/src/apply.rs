//! Applies one layer tar onto a directory.
//!
//! Every entry's parent is resolved inside the target with `rootpath` (one component
//! at a time through O_PATH fds, symlinks confined: a relative symlink that stays
//! inside is followed, an absolute one or a `..` climbing out is refused), and the
//! entry is created relative to that fd with `*at` calls and O_NOFOLLOW, so neither a
//! hostile name nor a symlink planted by an earlier entry can make us write outside.
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmodat, fstatat, makedev, mkdirat, mknodat,
    utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use rootpath::{Create, Symlinks, fd_path, resolve_in_root_with};
use sha2::{Digest as _, Sha256};
use snapshots::Whiteouts;

use crate::compression::{Compression, decompress};
use crate::{UnpackError, io_err};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    pub whiteouts: Whiteouts,
    /// Create character and block devices; refused otherwise (unprivileged unpacking
    /// cannot create them, and an image has no business needing them).
    pub allow_devices: bool,
}

impl ApplyOptions {
    pub fn new(whiteouts: Whiteouts) -> ApplyOptions {
        ApplyOptions {
            whiteouts,
            allow_devices: nix::unistd::geteuid().is_root(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream: the layer's diff ID.
    pub diff_id: content::Digest,
    pub compression: Compression,
    /// Uncompressed size.
    pub size: u64,
    pub entries: u64,
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Applies the (possibly compressed) layer `r` onto `dir`.
pub fn apply_layer(r: impl Read, dir: &Path, opts: ApplyOptions) -> Result<Applied, UnpackError> {
    let _span = tracing::info_span!("apply_layer", dir = %dir.display()).entered();
    let (compression, stream) = decompress(r).map_err(io_err("layer header"))?;
    let mut hashing = Hashing {
        inner: stream,
        hasher: Sha256::new(),
        count: 0,
    };
    let root: OwnedFd = File::open(dir)
        .map_err(io_err(dir.display().to_string()))?
        .into();
    let mut state = State {
        root: root.as_fd(),
        opts,
        created: HashSet::new(),
        dirs: Vec::new(),
    };
    let mut entries = 0u64;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(io_err("layer tar"))? {
            let mut entry = entry.map_err(io_err("layer tar entry"))?;
            state.entry(&mut entry)?;
            entries += 1;
        }
    }
    // The diff ID covers the whole stream, trailing zero blocks included.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("layer tail"))?;
    state.finish_dirs()?;
    Ok(Applied {
        diff_id: content::Digest::from_hasher(hashing.hasher),
        compression,
        size: hashing.count,
        entries,
    })
}

struct State<'a> {
    root: BorrowedFd<'a>,
    opts: ApplyOptions,
    /// Paths this layer created, which an opaque marker must not delete.
    created: HashSet<PathBuf>,
    /// Directory times are set last: creating children changes them.
    dirs: Vec<(PathBuf, TimeSpec)>,
}

/// The entry's path as plain components; absolute and `..` are refused outright.
fn clean(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: raw.display().to_string(),
                    reason: "absolute path".into(),
                });
            }
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    entry: raw.display().to_string(),
                    reason: "'..' component".into(),
                });
            }
        }
    }
    Ok(out)
}

fn sys(entry: &Path, what: &str) -> impl FnOnce(Errno) -> UnpackError {
    let context = format!("{} {what}", entry.display());
    move |e| UnpackError::Io {
        context,
        source: io::Error::from(e),
    }
}

fn entry_err(entry: &Path) -> impl FnOnce(io::Error) -> UnpackError {
    io_err(entry.display().to_string())
}

impl State<'_> {
    fn resolve_dir(
        &self,
        entry: &Path,
        dir: &Path,
        create: Create,
    ) -> Result<OwnedFd, UnpackError> {
        resolve_in_root_with(self.root, dir, create, Symlinks::Confined).map_err(|e| match e {
            rootpath::ResolveError::Escape { via, .. } => UnpackError::Escape {
                entry: entry.display().to_string(),
                reason: format!("parent goes through {via}, outside the layer root"),
            },
            other => UnpackError::Escape {
                entry: entry.display().to_string(),
                reason: other.to_string(),
            },
        })
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = e.path().map_err(io_err("entry path"))?.into_owned();
        let path = clean(&raw)?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            // The root itself ("./"): nothing to create.
            return Ok(());
        };
        let name = name.to_os_string();
        let name_s = name.to_string_lossy();
        if name_s == OPAQUE {
            return self.opaque(&path, parent);
        }
        if let Some(hidden) = name_s.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&path, parent, OsStr::new(hidden));
        }
        let pfd = self.resolve_dir(&path, parent, Create::Dir)?;
        let pfd = pfd.as_fd();
        let h = e.header().clone();
        let kind = h.entry_type();
        let mode = Mode::from_bits_truncate(h.mode().map_err(entry_err(&path))? & 0o7777);
        let uid = Uid::from_raw(u32::try_from(h.uid().map_err(entry_err(&path))?).unwrap_or(0));
        let gid = Gid::from_raw(u32::try_from(h.gid().map_err(entry_err(&path))?).unwrap_or(0));
        let mtime = TimeSpec::new(
            i64::try_from(h.mtime().map_err(entry_err(&path))?).unwrap_or(0),
            0,
        );
        let name_b = name.as_bytes();

        // Whatever is there already (from a lower entry or layer) is replaced, except
        // that a directory over a directory merges.
        let existing = fstatat(pfd, name_b, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.is_some_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        if existing.is_some() && !(kind.is_dir() && existing_dir) {
            remove_at(pfd, &name, existing_dir).map_err(entry_err(&path))?;
        }

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {
                let fd = openat(
                    pfd,
                    name_b,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(sys(&path, "create"))?;
                let mut f = File::from(fd);
                io::copy(e, &mut f).map_err(entry_err(&path))?;
            }
            T::Directory => {
                if !existing_dir {
                    mkdirat(pfd, name_b, Mode::from_bits_truncate(0o700))
                        .map_err(sys(&path, "mkdir"))?;
                }
            }
            T::Symlink => {
                let target = e.link_name().map_err(entry_err(&path))?.ok_or_else(|| {
                    UnpackError::Invalid(format!("{}: symlink without target", path.display()))
                })?;
                // Stored as is: a symlink is only dangerous when followed, and every
                // later path through it is resolved confined.
                symlinkat(target.as_ref(), pfd, name_b).map_err(sys(&path, "symlink"))?;
            }
            T::Link => {
                let target = e.link_name().map_err(entry_err(&path))?.ok_or_else(|| {
                    UnpackError::Invalid(format!("{}: hardlink without target", path.display()))
                })?;
                let target = clean(&target).map_err(|err| match err {
                    UnpackError::Escape { reason, .. } => UnpackError::Escape {
                        entry: path.display().to_string(),
                        reason: format!("hardlink target {} ({reason})", target.display()),
                    },
                    other => other,
                })?;
                let (Some(tparent), Some(tname)) = (target.parent(), target.file_name()) else {
                    return Err(UnpackError::Escape {
                        entry: path.display().to_string(),
                        reason: "hardlink to the layer root".into(),
                    });
                };
                let tfd = self.resolve_dir(&path, tparent, Create::Nothing)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                linkat(tfd.as_fd(), tname.as_bytes(), pfd, name_b, AtFlags::empty())
                    .map_err(sys(&path, "hardlink"))?;
                self.created.insert(path);
                return Ok(());
            }
            T::Char | T::Block => {
                if !self.opts.allow_devices {
                    return Err(UnpackError::Device(path.display().to_string()));
                }
                let major = h.device_major().map_err(entry_err(&path))?.unwrap_or(0);
                let minor = h.device_minor().map_err(entry_err(&path))?.unwrap_or(0);
                let k = if kind == T::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                mknodat(pfd, name_b, k, mode, makedev(major.into(), minor.into()))
                    .map_err(sys(&path, "mknod"))?;
            }
            T::Fifo => {
                mknodat(pfd, name_b, SFlag::S_IFIFO, mode, 0).map_err(sys(&path, "mkfifo"))?;
            }
            other => {
                return Err(UnpackError::Invalid(format!(
                    "{}: unsupported tar entry type {other:?}",
                    path.display()
                )));
            }
        }

        fchownat(
            pfd,
            name_b,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(sys(&path, "chown"))?;
        if kind != T::Symlink {
            // After chown, which clears set-id bits. The name was just created by us
            // as a non-symlink, so following it cannot leave the directory.
            fchmodat(pfd, name_b, mode, FchmodatFlags::FollowSymlink)
                .map_err(sys(&path, "chmod"))?;
        }
        if let Some(exts) = e.pax_extensions().map_err(entry_err(&path))? {
            let at = fd_path(&pfd).join(&name);
            for ext in exts {
                let ext = ext.map_err(entry_err(&path))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    rustix::fs::lsetxattr(
                        &at,
                        xattr,
                        ext.value_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|err| UnpackError::Io {
                        context: format!("{} xattr {xattr}", path.display()),
                        source: err.into(),
                    })?;
                }
            }
        }
        if kind == T::Directory {
            self.dirs.push((path.clone(), mtime));
        } else {
            utimensat(pfd, name_b, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
                .map_err(sys(&path, "utimes"))?;
        }
        self.created.insert(path);
        Ok(())
    }

    fn whiteout(&mut self, path: &Path, parent: &Path, hidden: &OsStr) -> Result<(), UnpackError> {
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.as_bytes().contains(&b'/')
        {
            return Err(UnpackError::Escape {
                entry: path.display().to_string(),
                reason: "malformed whiteout".into(),
            });
        }
        let pfd = self.resolve_dir(path, parent, Create::Dir)?;
        let existing = fstatat(pfd.as_fd(), hidden.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        if let Some(st) = existing {
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            remove_at(pfd.as_fd(), hidden, is_dir).map_err(entry_err(path))?;
        }
        if self.opts.whiteouts == Whiteouts::Overlay {
            // overlayfs's whiteout: a 0/0 character device hides the lower entry.
            mknodat(
                pfd.as_fd(),
                hidden.as_bytes(),
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(sys(path, "whiteout"))?;
        }
        Ok(())
    }

    fn opaque(&mut self, path: &Path, dir: &Path) -> Result<(), UnpackError> {
        let dfd = self.resolve_dir(path, dir, Create::Dir)?;
        match self.opts.whiteouts {
            Whiteouts::Overlay => {
                rustix::fs::setxattr(
                    fd_path(&dfd),
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| UnpackError::Io {
                    context: format!("{} opaque xattr", path.display()),
                    source: e.into(),
                })?;
            }
            Whiteouts::Delete => {
                let listing = fs::read_dir(fd_path(&dfd)).map_err(entry_err(path))?;
                let mut doomed: Vec<(OsString, bool)> = Vec::new();
                for child in listing {
                    let child = child.map_err(entry_err(path))?;
                    if !self.created.contains(&dir.join(child.file_name())) {
                        let is_dir = child.file_type().map(|t| t.is_dir()).unwrap_or(false);
                        doomed.push((child.file_name(), is_dir));
                    }
                }
                for (name, is_dir) in doomed {
                    remove_at(dfd.as_fd(), &name, is_dir).map_err(entry_err(path))?;
                }
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for (path, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let pfd = self.resolve_dir(&path, parent, Create::Nothing)?;
            utimensat(
                pfd.as_fd(),
                name.as_bytes(),
                &mtime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(sys(&path, "utimes"))?;
        }
        Ok(())
    }
}

/// Removes `name` under `dir`, recursively when it is a directory (std's
/// remove_dir_all does not follow symlinks inside the tree).
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    if is_dir {
        fs::remove_dir_all(fd_path(&dir).join(name))
    } else {
        unlinkat(dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
    }
}
