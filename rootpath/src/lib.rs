//! Resolving spec paths (mount destinations, devices, masked paths, cwd) inside the
//! rootfs without ever leaving it, one component at a time through O_PATH fds.
//!
//! Shared by the runtime (mount destinations, devices, masked paths, cwd inside a
//! rootfs) and the image unpacker (every parent of a layer entry).
//!
//! With [`Symlinks::Scoped`], absolute symlinks are followed as the container will see
//! them: relative to the root (`/var/run -> /run` stays inside). With
//! [`Symlinks::Confined`] an absolute symlink is refused instead, because a layer being
//! unpacked is not yet anybody's root: a host tool that later walks the same directory
//! would follow `a -> /` out. In both modes a `..` that would climb above the root,
//! whether spelled in the path or hidden in a relative symlink, is refused: no image
//! needs it, and following it on the host would escape.
#![forbid(unsafe_code)]
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};

/// What to create when a path (or one of its parents) does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail with ENOENT.
    Nothing,
    /// Create missing parents and the leaf as directories.
    Dir,
    /// Create missing parents as directories and the leaf as an empty file.
    File,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path} escapes the root through {via}")]
    Escape { path: PathBuf, via: String },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: PathBuf },
    #[error("{path}: {component} is not a directory")]
    NotDir { path: PathBuf, component: String },
    #[error("{path}: {source}")]
    Sys {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

impl ResolveError {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ResolveError::Sys { source, .. } => Some(*source),
            _ => None,
        }
    }
}

const MAX_SYMLINKS: usize = 40;

struct Step {
    name: OsString,
    /// The symlink whose target this component came from, if any.
    via: Option<String>,
}

/// How symlinks met on the way are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow them as a chroot would: absolute targets restart at the root.
    Scoped,
    /// Follow only relative targets that stay below the root; refuse absolute ones.
    Confined,
}

/// Resolves `path` under `root` (a directory fd) and returns an O_PATH fd to it.
pub fn resolve_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Create,
) -> Result<OwnedFd, ResolveError> {
    resolve_in_root_with(root, path, create, Symlinks::Scoped)
}

/// [`resolve_in_root`] with an explicit symlink policy.
pub fn resolve_in_root_with(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Create,
    symlinks: Symlinks,
) -> Result<OwnedFd, ResolveError> {
    let sys = |source| ResolveError::Sys {
        path: path.to_path_buf(),
        source,
    };
    let mut queue: VecDeque<Step> = components(path, None);
    // Directories walked so far below the root; empty means "at the root".
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut names: Vec<OsString> = Vec::new();
    let mut links = 0usize;

    while let Some(step) = queue.pop_front() {
        if step.name == ".." {
            if stack.pop().is_none() {
                return Err(ResolveError::Escape {
                    path: path.to_path_buf(),
                    via: step.via.unwrap_or_else(|| "'..'".to_string()),
                });
            }
            names.pop();
            continue;
        }
        let is_last = queue.is_empty();
        let parent: BorrowedFd<'_> = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let fd = match open_path(parent, &step.name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::Nothing => {
                make(parent, &step.name, is_last, create).map_err(sys)?;
                open_path(parent, &step.name).map_err(sys)?
            }
            Err(e) => return Err(sys(e)),
        };
        let st = fstatat(&fd, "", AtFlags::AT_EMPTY_PATH).map_err(sys)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ResolveError::Loop {
                    path: path.to_path_buf(),
                });
            }
            let target = readlinkat(&fd, "").map_err(sys)?;
            let mut shown: PathBuf = names.iter().collect();
            shown.push(&step.name);
            let via = format!(
                "symlink /{} -> {}",
                shown.display(),
                Path::new(&target).display()
            );
            let target = Path::new(&target);
            if target.is_absolute() && symlinks == Symlinks::Confined {
                return Err(ResolveError::Escape {
                    path: path.to_path_buf(),
                    via,
                });
            }
            if target.is_absolute() {
                stack.clear();
                names.clear();
            }
            let mut rest = components(target, Some(via));
            rest.extend(queue);
            queue = rest;
            continue;
        }
        if !is_last && kind != SFlag::S_IFDIR {
            return Err(ResolveError::NotDir {
                path: path.to_path_buf(),
                component: step.name.to_string_lossy().into_owned(),
            });
        }
        names.push(step.name);
        stack.push(fd);
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => open_path(root, OsStr::new(".")).map_err(sys),
    }
}

fn components(path: &Path, via: Option<String>) -> VecDeque<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .map(|name| Step {
            name,
            via: via.clone(),
        })
        .collect()
}

fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name.as_bytes(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn make(dir: BorrowedFd<'_>, name: &OsStr, is_last: bool, create: Create) -> nix::Result<()> {
    let result = if is_last && create == Create::File {
        openat(
            dir,
            name.as_bytes(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    } else {
        mkdirat(dir, name.as_bytes(), Mode::from_bits_truncate(0o755))
    };
    match result {
        // Someone else made it first: fine, we only need it to exist.
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

/// `/proc/self/fd/N`: a path that mount(2) and friends follow to exactly the object the
/// fd refers to, so a symlink swapped in after resolution cannot redirect them.
pub fn fd_path(fd: &impl AsFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};
    use std::os::unix::fs::symlink;

    fn root(dir: &Path) -> OwnedFd {
        File::open(dir).unwrap().into()
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("run/lock")).unwrap();
        fs::create_dir(t.path().join("var")).unwrap();
        symlink("/run", t.path().join("var/run")).unwrap();
        let r = root(t.path());
        let fd = resolve_in_root(r.as_fd(), Path::new("/var/run/lock"), Create::Nothing).unwrap();
        assert_eq!(real(&fd), t.path().join("run/lock"));
    }

    #[test]
    fn dotdot_escape_through_a_relative_symlink_is_refused() {
        let t = tempfile::tempdir().unwrap();
        symlink("../../../../../tmp", t.path().join("escape")).unwrap();
        let r = root(t.path());
        let err = resolve_in_root(r.as_fd(), Path::new("/escape/x"), Create::Dir).unwrap_err();
        assert!(matches!(err, ResolveError::Escape { .. }), "{err}");
        assert!(err.to_string().contains("symlink /escape"), "{err}");
    }

    #[test]
    fn dotdot_in_the_spec_path_is_refused_at_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = root(t.path());
        let err = resolve_in_root(r.as_fd(), Path::new("/../etc"), Create::Nothing).unwrap_err();
        assert!(matches!(err, ResolveError::Escape { .. }));
        fs::create_dir(t.path().join("a")).unwrap();
        let fd = resolve_in_root(r.as_fd(), Path::new("/a/../a"), Create::Nothing).unwrap();
        assert_eq!(real(&fd), t.path().join("a"));
    }

    #[test]
    fn creates_missing_dirs_and_files() {
        let t = tempfile::tempdir().unwrap();
        let r = root(t.path());
        resolve_in_root(r.as_fd(), Path::new("/a/b/c"), Create::Dir).unwrap();
        assert!(t.path().join("a/b/c").is_dir());
        resolve_in_root(r.as_fd(), Path::new("/etc/hosts"), Create::File).unwrap();
        assert!(t.path().join("etc/hosts").is_file());
    }

    #[test]
    fn confined_refuses_absolute_symlinks_and_follows_relative_ones() {
        let t = tempfile::tempdir().unwrap();
        symlink("/", t.path().join("a")).unwrap();
        fs::create_dir(t.path().join("usr")).unwrap();
        symlink("usr", t.path().join("lib")).unwrap();
        let r = root(t.path());
        let err = resolve_in_root_with(
            r.as_fd(),
            Path::new("a/etc"),
            Create::Dir,
            Symlinks::Confined,
        )
        .unwrap_err();
        assert!(err.to_string().contains("symlink /a -> /"), "{err}");
        assert!(!t.path().join("etc").exists());
        let fd = resolve_in_root_with(
            r.as_fd(),
            Path::new("lib/x"),
            Create::Dir,
            Symlinks::Confined,
        )
        .unwrap();
        assert_eq!(real(&fd), t.path().join("usr/x"));
    }

    #[test]
    fn symlink_loops_end() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let r = root(t.path());
        let err = resolve_in_root(r.as_fd(), Path::new("/a"), Create::Nothing).unwrap_err();
        assert!(matches!(err, ResolveError::Loop { .. }));
    }

    #[test]
    fn missing_path_without_create_is_enoent() {
        let t = tempfile::tempdir().unwrap();
        let r = root(t.path());
        let err = resolve_in_root(r.as_fd(), Path::new("/nope"), Create::Nothing).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ENOENT));
    }
}
