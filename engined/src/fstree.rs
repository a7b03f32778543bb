//! File-tree plumbing shared by cp, export, diff, commit and volumes. Every walk goes
//! through directory fds with O_NOFOLLOW and `*at` calls, so a symlink inside a
//! container (or a layer) is read as a symlink and never followed on the host, and a
//! directory swapped for a symlink mid-walk is refused rather than entered.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

/// The kind of a file, from its `st_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Kind {
    pub fn of(st: &FileStat) -> Kind {
        let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if fmt == SFlag::S_IFDIR {
            Kind::Dir
        } else if fmt == SFlag::S_IFLNK {
            Kind::Symlink
        } else if fmt == SFlag::S_IFCHR {
            Kind::Char
        } else if fmt == SFlag::S_IFBLK {
            Kind::Block
        } else if fmt == SFlag::S_IFIFO {
            Kind::Fifo
        } else if fmt == SFlag::S_IFSOCK {
            Kind::Socket
        } else {
            Kind::File
        }
    }
}

/// An overlayfs whiteout: a 0/0 character device.
pub fn is_whiteout(st: &FileStat) -> bool {
    Kind::of(st) == Kind::Char && st.st_rdev == 0
}

/// Go's `os.FileMode` bits for a `st_mode`, as Docker puts them in the path stat
/// of `docker cp` (the CLI decodes them with Go's constants).
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    let fmt = SFlag::from_bits_truncate(st_mode) & SFlag::S_IFMT;
    m |= match fmt {
        f if f == SFlag::S_IFDIR => 1 << 31,
        f if f == SFlag::S_IFLNK => 1 << 27,
        f if f == SFlag::S_IFCHR => (1 << 26) | (1 << 21),
        f if f == SFlag::S_IFBLK => 1 << 26,
        f if f == SFlag::S_IFIFO => 1 << 25,
        f if f == SFlag::S_IFSOCK => 1 << 24,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if st_mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if st_mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(dir, name.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// Opens a directory below `dir` for listing; a symlink in its place is ELOOP/ENOTDIR.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name.as_bytes(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// An O_PATH fd to `name` itself (a symlink is not followed).
pub fn open_path_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name.as_bytes(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a regular file for reading; O_NONBLOCK so that a FIFO swapped in meanwhile
/// cannot hang us.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name.as_bytes(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A directory fd that can be listed (an O_PATH one cannot): reopened through ".".
pub fn reopen_dir(dir: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    open_dir_at(dir, OsStr::new("."))
}

/// The names in a directory, sorted (tar entries come out in a stable order).
pub fn list(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let mut d = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OsString> {
    readlinkat(dir, name.as_bytes())
}

/// One extended attribute of an open file (`None` when absent or unsupported).
pub fn xattr(fd: BorrowedFd<'_>, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// The mount id of an fd (`mnt_id:` in /proc/self/fdinfo), which is unique across
/// mount namespaces: it tells which mount a resolved path ended up on.
pub fn mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// One line of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    /// Where it is mounted, as seen from the reading process's root.
    pub mount_point: PathBuf,
    /// The directory of its filesystem that is mounted there: `/` for a fresh
    /// mount (proc, tmpfs, ...), a sub-directory for a bind mount.
    pub root: String,
    pub readonly: bool,
    pub fstype: String,
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/mountinfo` (proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if f.len() < 6 || sep + 1 >= f.len() {
                return None;
            }
            Some(MountEntry {
                id: f[0].parse().ok()?,
                root: unescape_mountinfo(f[3]),
                mount_point: PathBuf::from(unescape_mountinfo(f[4])),
                readonly: f[5].split(',').any(|o| o == "ro"),
                fstype: f[sep + 1].to_string(),
            })
        })
        .collect()
}

/// What a walk does with a mount it meets below the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    /// The root filesystem itself.
    Root,
    /// A bind mount (a volume, a host directory): part of what cp sees.
    Bind { readonly: bool },
    /// A fresh filesystem (proc, sysfs, tmpfs, devpts, ...): not the container's files.
    Pseudo,
}

/// The mounts of one container view, by mount id.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    pub root_id: u64,
    pub root_readonly: bool,
    entries: HashMap<u64, MountEntry>,
}

impl MountTable {
    pub fn new(root_id: u64, root_readonly: bool, entries: Vec<MountEntry>) -> Self {
        Self {
            root_id,
            root_readonly,
            entries: entries.into_iter().map(|e| (e.id, e)).collect(),
        }
    }

    pub fn crossing(&self, id: u64) -> Crossing {
        if id == self.root_id {
            return Crossing::Root;
        }
        match self.entries.get(&id) {
            Some(e) if e.root != "/" => Crossing::Bind {
                readonly: e.readonly,
            },
            _ => Crossing::Pseudo,
        }
    }

    pub fn entry(&self, id: u64) -> Option<&MountEntry> {
        self.entries.get(&id)
    }
}

/// How a tree walk treats mounts below its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPolicy {
    /// cp: volumes and binds are read, pseudo filesystems are left as empty stubs.
    FollowBinds,
    /// export: only the root filesystem; every mount point is an empty stub.
    RootOnly,
}

/// A tar of directory trees read through fds, with hard links kept as links and
/// `security.capability` as a PAX record (as Docker's archive package writes them).
pub struct TreeTar<'a, W: Write> {
    pub builder: tar::Builder<W>,
    mounts: Option<&'a MountTable>,
    policy: MountPolicy,
    /// (dev, ino) of files with several links → the tar path of the first one.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> std::fmt::Debug for TreeTar<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeTar")
            .field("policy", &self.policy)
            .finish()
    }
}

/// Where a walk stands: the directory's device and mount, so that a change of
/// device is checked for a mount boundary.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub dev: u64,
    pub mount: u64,
}

fn header_for(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

fn nix_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// A PAX extended header carrying `records` for the entry that follows.
pub fn append_pax<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    records: &[(&str, &[u8])],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (k, v) in records {
        // "<len> <key>=<value>\n", where len counts the whole record, itself included.
        let body = 3 + k.len() + v.len();
        let mut len = body + 1;
        while body + len.to_string().len() != len {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    let name = format!(
        "PaxHeaders.0/{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut short = name.into_bytes();
    short.truncate(99);
    h.set_path(String::from_utf8_lossy(&short).as_ref())?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &data[..])
}

/// A GNU long name (`L`) or long link (`K`) entry for the header that follows.
fn gnu_long<W: Write>(b: &mut tar::Builder<W>, kind: u8, value: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(value.len() as u64 + 1);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    let mut data = value.to_vec();
    data.push(0);
    b.append(&h, &data[..])
}

/// Appends an entry named exactly `name` (the tar crate's own setters drop a
/// leading `./`, which the CLI needs to rebase `docker cp X:/dir/.`), with GNU long
/// name and long link records when they do not fit the header.
pub fn append_raw<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &Path,
    link: Option<&Path>,
    data: impl Read,
) -> io::Result<()> {
    let name = name.as_os_str().as_bytes();
    if let Some(link) = link {
        let link = link.as_os_str().as_bytes();
        if link.len() > 100 {
            gnu_long(b, b'K', link)?;
        }
        let n = link.len().min(100);
        h.as_old_mut().linkname = [0; 100];
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    if name.len() > 100 {
        gnu_long(b, b'L', name)?;
    }
    let n = name.len().min(100);
    h.as_old_mut().name = [0; 100];
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_cksum();
    b.append(h, data)
}

/// Reads exactly `size` bytes: a file that grew meanwhile is cut, one that shrank is
/// padded with zeros, so the tar stays well-formed.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

impl<'a, W: Write> TreeTar<'a, W> {
    pub fn new(out: W, mounts: Option<&'a MountTable>, policy: MountPolicy) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        Self {
            builder,
            mounts,
            policy,
            links: HashMap::new(),
        }
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// An empty directory or file standing for a mount point whose contents are not
    /// part of the tree (as Docker's init layer has them).
    fn stub(&mut self, st: &FileStat, tar_path: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        if Kind::of(st) == Kind::Dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            append_raw(
                &mut self.builder,
                &mut h,
                &dir_name(tar_path),
                None,
                io::empty(),
            )
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            append_raw(&mut self.builder, &mut h, tar_path, None, io::empty())
        }
    }

    /// Decides whether `name` (in a directory at `place`) is on another mount, and
    /// whether the walk goes in. Returns the place of the entry, or None for a stub.
    fn cross(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
        place: Place,
    ) -> io::Result<Option<Place>> {
        let dev = st.st_dev;
        let Some(mounts) = self.mounts else {
            return Ok(Some(Place { dev, ..place }));
        };
        if dev == place.dev {
            return Ok(Some(place));
        }
        let fd = open_path_at(parent, name).map_err(nix_io)?;
        let Some(id) = mount_id(fd.as_fd()) else {
            return Ok(Some(Place { dev, ..place }));
        };
        if id == place.mount {
            // overlayfs reports the lower filesystem's device for some files.
            return Ok(Some(Place { dev, ..place }));
        }
        match (self.policy, mounts.crossing(id)) {
            (_, Crossing::Root) => Ok(Some(Place { dev, mount: id })),
            (MountPolicy::FollowBinds, Crossing::Bind { .. }) => Ok(Some(Place { dev, mount: id })),
            _ => Ok(None),
        }
    }

    /// Appends `name` of directory `parent` as `tar_path`, and everything below it.
    pub fn append(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        tar_path: &Path,
        place: Place,
    ) -> io::Result<()> {
        let st = lstat_at(parent, name).map_err(nix_io)?;
        let Some(here) = self.cross(parent, name, &st, place)? else {
            return self.stub(&st, tar_path);
        };
        if Kind::of(&st) == Kind::Dir {
            let dir = open_dir_at(parent, name).map_err(nix_io)?;
            return self.append_dir(dir.as_fd(), tar_path, here);
        }
        self.append_leaf(parent, name, &st, tar_path)
    }

    /// Appends a non-directory `name` of `parent` (stat `st`) as `tar_path`.
    pub fn append_leaf(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
        tar_path: &Path,
    ) -> io::Result<()> {
        match Kind::of(st) {
            Kind::Dir => Err(io::Error::other(format!(
                "{} is a directory",
                tar_path.display()
            ))),
            Kind::File => self.append_file(parent, name, st, tar_path),
            Kind::Symlink => {
                let target = readlink_at(parent, name).map_err(nix_io)?;
                let mut h = header_for(st);
                h.set_entry_type(tar::EntryType::Symlink);
                append_raw(
                    &mut self.builder,
                    &mut h,
                    tar_path,
                    Some(Path::new(&target)),
                    io::empty(),
                )
            }
            kind @ (Kind::Char | Kind::Block | Kind::Fifo) => {
                let mut h = header_for(st);
                h.set_entry_type(match kind {
                    Kind::Char => tar::EntryType::Char,
                    Kind::Block => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if kind != Kind::Fifo {
                    let major = nix::sys::stat::major(st.st_rdev);
                    let minor = nix::sys::stat::minor(st.st_rdev);
                    h.set_device_major(u32::try_from(major).unwrap_or(0))?;
                    h.set_device_minor(u32::try_from(minor).unwrap_or(0))?;
                }
                append_raw(&mut self.builder, &mut h, tar_path, None, io::empty())
            }
            // Sockets cannot be archived (tar has no type for them); Docker skips them.
            Kind::Socket => Ok(()),
        }
    }

    /// The entry of a directory itself (named with a trailing slash).
    pub fn append_dir_header(&mut self, st: &FileStat, tar_path: &Path) -> io::Result<()> {
        let mut h = header_for(st);
        h.set_entry_type(tar::EntryType::Directory);
        append_raw(
            &mut self.builder,
            &mut h,
            &dir_name(tar_path),
            None,
            io::empty(),
        )
    }

    /// An empty regular file (whiteouts and opaque markers of a layer).
    pub fn append_marker(&mut self, st: &FileStat, tar_path: &Path) -> io::Result<()> {
        let mut h = header_for(st);
        h.set_mode(st.st_mode & 0o777);
        h.set_entry_type(tar::EntryType::Regular);
        append_raw(&mut self.builder, &mut h, tar_path, None, io::empty())
    }

    /// Appends the directory `dir` itself as `tar_path` (unless it is empty: the
    /// root of an export has no entry of its own), then its entries.
    pub fn append_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        tar_path: &Path,
        place: Place,
    ) -> io::Result<()> {
        if !tar_path.as_os_str().is_empty() {
            let st = fstat(dir).map_err(nix_io)?;
            self.append_dir_header(&st, tar_path)?;
        }
        for child in list(dir).map_err(nix_io)? {
            let child_path = tar_path.join(&child);
            match self.append(dir, &child, &child_path, place) {
                Ok(()) => {}
                // Gone since it was listed: a running container changes its files.
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn append_file(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        st: &FileStat,
        tar_path: &Path,
    ) -> io::Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = header_for(st);
                h.set_entry_type(tar::EntryType::Link);
                return append_raw(
                    &mut self.builder,
                    &mut h,
                    tar_path,
                    Some(&first),
                    io::empty(),
                );
            }
            self.links.insert(key, tar_path.to_path_buf());
        }
        let fd = open_file_at(parent, name).map_err(nix_io)?;
        let st = fstat(fd.as_fd()).map_err(nix_io)?;
        if Kind::of(&st) != Kind::File {
            return Err(io::Error::other(format!(
                "{} changed type while being read",
                tar_path.display()
            )));
        }
        if let Some(cap) = xattr(fd.as_fd(), "security.capability") {
            append_pax(
                &mut self.builder,
                tar_path,
                &[("SCHILY.xattr.security.capability", &cap)],
            )?;
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut h = header_for(&st);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        let reader = Exactly {
            inner: File::from(fd),
            left: size,
        };
        append_raw(&mut self.builder, &mut h, tar_path, None, reader)
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Directory entries are named with a trailing slash, as Docker names them.
fn dir_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    if !s.as_bytes().ends_with(b"/") {
        s.push("/");
    }
    PathBuf::from(s)
}

/// Bytes used by a tree: the sizes of its non-directories, each inode once (Docker's
/// `directory.Size`). Unreadable parts count as empty.
pub fn tree_size(dir: BorrowedFd<'_>) -> i64 {
    fn walk(dir: BorrowedFd<'_>, seen: &mut std::collections::HashSet<(u64, u64)>) -> i64 {
        let mut total = 0;
        for name in list(dir).unwrap_or_default() {
            let Ok(st) = lstat_at(dir, &name) else {
                continue;
            };
            if Kind::of(&st) == Kind::Dir {
                if let Ok(sub) = open_dir_at(dir, &name) {
                    total += walk(sub.as_fd(), seen);
                }
            } else if seen.insert((st.st_dev, st.st_ino)) {
                total += st.st_size;
            }
        }
        total
    }
    walk(dir, &mut std::collections::HashSet::new())
}

/// `path` made absolute and cleaned without the filesystem: `.` dropped, `..` pops a
/// component (never above `/`), as Go's `filepath.Join("/", path)` cleans it.
pub fn clean_abs(path: &str) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    let mut p = PathBuf::from("/");
    for c in out {
        p.push(c);
    }
    p
}

/// A relative tar entry name cleaned lexically; `None` if it climbs above its root.
/// A leading `/` is taken as relative to the root, as Docker's untar takes it.
pub fn clean_entry(raw: &Path) -> Option<PathBuf> {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.iter().collect())
}

/// Copies the tree below `src` into the (empty) directory `dst`: files, links,
/// devices, owners, modes and times; how Docker fills a new volume from the image.
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), (OwnedFd, OsString)> = HashMap::new();
    copy_dir(src, dst, &mut links)
}

fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    links: &mut HashMap<(u64, u64), (OwnedFd, OsString)>,
) -> io::Result<()> {
    use nix::sys::stat::{UtimensatFlags, fchmod, mkdirat, mknodat, utimensat};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};
    for name in list(src).map_err(nix_io)? {
        let st = lstat_at(src, &name).map_err(nix_io)?;
        let uid = Some(Uid::from_raw(st.st_uid));
        let gid = Some(Gid::from_raw(st.st_gid));
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let times = (
            TimeSpec::new(st.st_atime, st.st_atime_nsec),
            TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        );
        let n = name.as_bytes();
        let kind = Kind::of(&st);
        if kind != Kind::Dir
            && st.st_nlink > 1
            && let Some((dir, first)) = links.get(&(st.st_dev, st.st_ino))
        {
            linkat(dir, first.as_bytes(), dst, n, AtFlags::empty()).map_err(nix_io)?;
            continue;
        }
        match kind {
            Kind::Dir => {
                mkdirat(dst, n, Mode::from_bits_truncate(0o700)).map_err(nix_io)?;
                let s = open_dir_at(src, &name).map_err(nix_io)?;
                let d = open_dir_at(dst, &name).map_err(nix_io)?;
                copy_dir(s.as_fd(), d.as_fd(), links)?;
                fchown(&d, uid, gid).map_err(nix_io)?;
                fchmod(&d, mode).map_err(nix_io)?;
            }
            Kind::File => {
                let s = open_file_at(src, &name).map_err(nix_io)?;
                let d = openat(
                    dst,
                    n,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(nix_io)?;
                let mut sf = File::from(s);
                let mut df = File::from(d);
                io::copy(&mut sf, &mut df)?;
                fchown(&df, uid, gid).map_err(nix_io)?;
                fchmod(&df, mode).map_err(nix_io)?;
                if let Some(cap) = xattr(sf.as_fd(), "security.capability") {
                    let _ = rustix::fs::fsetxattr(
                        &df,
                        "security.capability",
                        &cap,
                        rustix::fs::XattrFlags::empty(),
                    );
                }
            }
            Kind::Symlink => {
                let target = readlink_at(src, &name).map_err(nix_io)?;
                symlinkat(target.as_os_str(), dst, n).map_err(nix_io)?;
                fchownat(dst, n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_io)?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let sflag = match kind {
                    Kind::Char => SFlag::S_IFCHR,
                    Kind::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                mknodat(dst, n, sflag, mode, st.st_rdev).map_err(nix_io)?;
                fchownat(dst, n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_io)?;
            }
            Kind::Socket => continue,
        }
        utimensat(dst, n, &times.0, &times.1, UtimensatFlags::NoFollowSymlink).map_err(nix_io)?;
        if kind != Kind::Dir && st.st_nlink > 1 {
            links.insert(
                (st.st_dev, st.st_ino),
                (reopen_dir(dst).map_err(nix_io)?, name.clone()),
            );
        }
    }
    Ok(())
}

/// Standard base64 (with padding), for the path stat header.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_as_docker_sends_them() {
        // /tmp: drwxrwxrwt, the value the contract shows.
        assert_eq!(go_file_mode(0o041777), 2_148_532_735);
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{}"), "e30=");
    }

    #[test]
    fn mountinfo_lines_parse() {
        let text = "23 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/a\n\
                    24 23 0:5 / /proc rw,nosuid - proc proc rw\n\
                    25 23 8:1 /var/lib/x/_data /data\\040dir ro,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].mount_point, PathBuf::from("/data dir"));
        assert!(m[2].readonly);
        assert_eq!(m[2].fstype, "ext4");
        let t = MountTable::new(23, false, m);
        assert_eq!(t.crossing(23), Crossing::Root);
        assert_eq!(t.crossing(24), Crossing::Pseudo);
        assert_eq!(t.crossing(25), Crossing::Bind { readonly: true });
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(
            clean_abs("tmp/../../etc//passwd"),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(clean_abs("/"), PathBuf::from("/"));
        assert_eq!(clean_entry(Path::new("/a/./b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean_entry(Path::new("a/../b")), Some(PathBuf::from("b")));
        assert_eq!(clean_entry(Path::new("../x")), None);
        assert_eq!(clean_entry(Path::new("a/../../x")), None);
    }

    #[test]
    fn raw_names_keep_dot_slash_and_long_ones_survive() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("./{}/file", "d".repeat(150));
        let target = format!("/{}", "t".repeat(120));
        for (name, link) in [
            ("./", None),
            ("./a", None),
            (long.as_str(), Some(target.as_str())),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(if link.is_some() {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Regular
            });
            append_raw(
                &mut b,
                &mut h,
                Path::new(name),
                link.map(Path::new),
                io::empty(),
            )
            .unwrap();
        }
        let data = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let got: Vec<(String, Option<String>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned());
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), link)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("./".to_string(), None),
                ("./a".to_string(), None),
                (long.clone(), Some(target.clone())),
            ]
        );
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut b = tar::Builder::new(Vec::new());
        append_pax(&mut b, Path::new("f"), &[("SCHILY.xattr.user.k", b"v")]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap().key().unwrap().to_string())
            .collect();
        assert_eq!(exts, vec!["SCHILY.xattr.user.k".to_string()]);
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
    }
}
