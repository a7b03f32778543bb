//! `docker cp` and `docker export`: `HEAD|GET|PUT /containers/{id}/archive?path=`
//! and `GET /containers/{id}/export`, on running and stopped containers (see
//! [`crate::rootfs`]). Paths are resolved below the container's root with `rootpath`
//! (symlinks followed in its scope, never out of it), tar entries are cleaned and
//! refused when they climb above the extraction point, and every file is created
//! relative to a directory fd with O_NOFOLLOW, so nothing lands outside the container.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstat, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::daemon::{Container, Daemon};
use crate::error::{ApiError, ApiResult};
use crate::fstree::{
    self, Crossing, Kind, MountPolicy, Place, TreeTar, clean_abs, clean_entry, lstat_at, mount_id,
};
use crate::rootfs::{self, View};
use crate::server::{self, Body, channel_body, query, truthy};

/// The `X-Docker-Container-Path-Stat` of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    pub link_target: String,
}

impl PathStat {
    fn header(&self) -> String {
        let v = json!({
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        });
        fstree::base64(v.to_string().as_bytes())
    }
}

/// A path found in the container: the entry `name` of directory `parent`, or (when
/// `name` is None) `parent` itself.
#[derive(Debug)]
struct Found {
    parent: OwnedFd,
    name: Option<OsString>,
    stat: PathStat,
    /// The first path component of the tar entries (Docker's rebase name).
    rebase: PathBuf,
}

fn rfc3339(st: &FileStat) -> String {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(st.st_mtime).unwrap_or(0),
            u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        );
    common::rfc3339_nanos(t)
}

fn errno_err(what: &str) -> impl FnOnce(nix::errno::Errno) -> ApiError + '_ {
    move |e| ApiError::Io {
        context: what.to_string(),
        source: io::Error::from(e),
    }
}

/// Finds `path` as Docker's `ResolvePath` does: cleaned as an absolute path, the
/// directory part resolved in the container's scope, the last element not followed
/// unless the path ends in `/` or `/.`.
fn find(view: &View, path: &str, container: &str) -> ApiResult<Found> {
    let abs = clean_abs(path);
    let trailing = path.ends_with('/') || path.ends_with("/.") || path == ".";
    let stat_name = if path.ends_with("/.") || path == "." {
        ".".to_string()
    } else {
        abs.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    };
    let rebase = PathBuf::from(if stat_name == "/" { "." } else { &stat_name });
    let not_found = || {
        ApiError::NotFound(format!(
            "Could not find the file {path} in container {container}"
        ))
    };
    let (parent, name, st) = match (trailing, abs.parent(), abs.file_name()) {
        (false, Some(dir), Some(base)) => {
            let parent = rootfs::resolve(view, dir, container).map_err(|e| match e {
                ApiError::NotFound(_) => not_found(),
                other => other,
            })?;
            let st = lstat_at(parent.as_fd(), base).map_err(|e| match e {
                nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => not_found(),
                other => errno_err("stat")(other),
            })?;
            (parent, Some(base.to_os_string()), st)
        }
        _ => {
            let fd = rootfs::resolve(view, &abs, container).map_err(|e| match e {
                ApiError::NotFound(_) => not_found(),
                other => other,
            })?;
            let st = fstat(fd.as_fd()).map_err(errno_err("stat"))?;
            if Kind::of(&st) != Kind::Dir {
                return Err(ApiError::BadRequest(format!("{path}: not a directory")));
            }
            (fd, None, st)
        }
    };
    let mut link_target = String::new();
    if let (Some(n), Kind::Symlink) = (&name, Kind::of(&st)) {
        let target = fstree::readlink_at(parent.as_fd(), n).map_err(errno_err("readlink"))?;
        let t = Path::new(&target);
        let joined = if t.is_absolute() {
            t.to_path_buf()
        } else {
            abs.parent().unwrap_or(Path::new("/")).join(t)
        };
        link_target = clean_abs(&joined.to_string_lossy())
            .to_string_lossy()
            .into_owned();
    }
    let stat = PathStat {
        name: stat_name,
        size: st.st_size,
        mode: fstree::go_file_mode(st.st_mode),
        mtime: rfc3339(&st),
        link_target,
    };
    Ok(Found {
        parent,
        name,
        stat,
        rebase,
    })
}

/// `HEAD`, `GET` and `PUT /containers/{id}/archive`.
pub async fn route(
    d: Arc<Daemon>,
    req: Request<Incoming>,
    c: Arc<Container>,
) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let path = q
        .get("path")
        .cloned()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::BadRequest("path is required".into()))?;
    let method = req.method().clone();
    match method {
        Method::HEAD => {
            let name = c.name();
            let stat =
                rootfs::with_view(&d, &c, true, move |v| find(v, &path, &name).map(|f| f.stat))
                    .await??;
            let mut r = server::status(StatusCode::OK);
            stat_header(&mut r, &stat)?;
            Ok(r)
        }
        Method::GET => get(d, c, path).await,
        Method::PUT => {
            let opts = ExtractOptions {
                no_overwrite_dir_non_dir: truthy(&q, "noOverwriteDirNonDir"),
                copy_uid_gid: truthy(&q, "copyUIDGID"),
                user: c.record().config.user.unwrap_or_default(),
            };
            put(d, c, req, path, opts).await
        }
        _ => Err(server::method_not_allowed(&method, "/archive")),
    }
}

fn stat_header(r: &mut Response<Body>, stat: &PathStat) -> ApiResult<()> {
    let v = HeaderValue::from_str(&stat.header())
        .map_err(|e| ApiError::Internal(format!("path stat header: {e}")))?;
    r.headers_mut().insert("X-Docker-Container-Path-Stat", v);
    Ok(())
}

/// A `Write` that hands 64 KiB chunks to an HTTP body; it fails once the client has
/// gone, which ends the walk.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Streams a tar produced on the view's thread; `prepare` runs first there and
/// decides the response (its error is the HTTP error, before any byte is sent).
async fn stream_tar<S, P, W>(
    d: Arc<Daemon>,
    c: Arc<Container>,
    with_volumes: bool,
    prepare: P,
    write: W,
) -> ApiResult<(S, mpsc::Receiver<Bytes>)>
where
    S: Send + 'static,
    P: FnOnce(&View) -> ApiResult<S> + Send + 'static,
    W: FnOnce(&View, &mut ChannelWriter) -> io::Result<()> + Send + 'static,
{
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<ApiResult<S>>();
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let id = c.id.clone();
    let job = tokio::spawn(async move {
        rootfs::with_view(&d, &c, with_volumes, move |v| {
            let ready = prepare(v);
            let ok = ready.is_ok();
            if ready_tx.send(ready).is_err() || !ok {
                return;
            }
            let mut w = ChannelWriter::new(tx);
            let written = write(v, &mut w).and_then(|()| w.flush());
            if let Err(e) = written {
                // After the 200 the only way to tell is to cut the stream short.
                if e.kind() == io::ErrorKind::BrokenPipe {
                    debug!(container_id = %id, "archive client went away");
                } else {
                    warn!(container_id = %id, error = %e, "writing the archive failed");
                }
            }
        })
        .await
    });
    match ready_rx.await {
        Ok(Ok(s)) => Ok((s, rx)),
        Ok(Err(e)) => Err(e),
        Err(_) => match job.await {
            Ok(Err(e)) => Err(e),
            _ => Err(ApiError::Internal("the archive worker failed".into())),
        },
    }
}

async fn get(d: Arc<Daemon>, c: Arc<Container>, path: String) -> ApiResult<Response<Body>> {
    let name = c.name();
    let p2 = path.clone();
    let (stat, rx) = stream_tar(
        d,
        c,
        true,
        move |v| find(v, &path, &name).map(|f| f.stat),
        move |v, w| {
            let f = find(v, &p2, "").map_err(|e| io::Error::other(e.to_string()))?;
            write_found(v, &f, w)
        },
    )
    .await?;
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    stat_header(&mut r, &stat)?;
    Ok(r)
}

fn write_found(v: &View, f: &Found, out: impl Write) -> io::Result<()> {
    let mut tar = TreeTar::new(out, Some(&v.mounts), MountPolicy::FollowBinds);
    let pst = fstat(f.parent.as_fd()).map_err(io::Error::from)?;
    let place = Place {
        dev: pst.st_dev,
        mount: mount_id(f.parent.as_fd()).unwrap_or(0),
    };
    match &f.name {
        Some(n) => tar.append(f.parent.as_fd(), n, &f.rebase, place)?,
        None => {
            let dir = fstree::reopen_dir(f.parent.as_fd()).map_err(io::Error::from)?;
            tar.append_dir(dir.as_fd(), &f.rebase, place)?;
        }
    }
    tar.finish()?.flush()
}

/// `GET /containers/{id}/export`: the container's root filesystem (its rootfs
/// snapshot, without volumes or other mounts) as a tar.
pub async fn export(d: Arc<Daemon>, c: Arc<Container>) -> ApiResult<Response<Body>> {
    let ((), rx) = stream_tar(
        d,
        c,
        false,
        |_| Ok(()),
        |v, w| {
            let mut tar = TreeTar::new(w, Some(&v.mounts), MountPolicy::RootOnly);
            let dir = fstree::reopen_dir(v.root()).map_err(io::Error::from)?;
            let st = fstat(dir.as_fd()).map_err(io::Error::from)?;
            let place = Place {
                dev: st.st_dev,
                mount: v.mounts.root_id,
            };
            tar.append_dir(dir.as_fd(), Path::new(""), place)?;
            tar.finish()?.flush()
        },
    )
    .await?;
    let mut r = Response::new(channel_body(rx));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// What a `PUT` asks of the extraction.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory and the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// Owned by the container's user (`docker cp -a`) rather than as in the tar.
    pub copy_uid_gid: bool,
    pub user: String,
}

/// Blocking reads of the request body, fed by an async pump.
struct BodyReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

async fn put(
    d: Arc<Daemon>,
    c: Arc<Container>,
    req: Request<Incoming>,
    path: String,
    opts: ExtractOptions,
) -> ApiResult<Response<Body>> {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut body = req.into_body();
    // The whole body is read even when the extraction stops early: a reply before it
    // is consumed reaches the CLI as a broken pipe instead of our error.
    let pump = tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let (Some(data), Some(t)) = (frame.data_ref(), tx.as_ref())
                && t.send(data.clone()).await.is_err()
            {
                tx = None;
            }
        }
    });
    let name = c.name();
    let extracted = rootfs::with_view(&d, &c, true, move |v| {
        let reader = BodyReader {
            rx,
            cur: Bytes::new(),
        };
        extract(v, reader, &path, &name, &opts)
    })
    .await;
    let _ = pump.await;
    extracted??;
    Ok(server::status(StatusCode::OK))
}

/// uid and gid of `user` (`name`, `uid`, `uid:gid`, `name:group`) from the
/// container's own /etc/passwd and /etc/group.
fn container_ids(v: &View, user: &str) -> ApiResult<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let read = |p: &str| -> String {
        rootpath::resolve_in_root(v.root(), Path::new(p), rootpath::Create::Nothing)
            .ok()
            .and_then(|fd| std::fs::read_to_string(rootpath::fd_path(&fd)).ok())
            .unwrap_or_default()
    };
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let passwd = read("/etc/passwd");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == u || f[2] == u));
    let (uid, mut gid) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0)),
        (None, Ok(n)) => (n, 0),
        (None, Err(_)) => {
            return Err(ApiError::BadRequest(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )));
        }
    };
    if !g.is_empty() {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("/etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    Ok((uid, gid))
}

fn bad_entry(name: &Path, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("refusing archive entry {:?}: {why}", name))
}

/// Extracts the tar `input` into the directory `path` of the container.
pub(crate) fn extract(
    v: &View,
    input: impl Read,
    path: &str,
    container: &str,
    opts: &ExtractOptions,
) -> ApiResult<()> {
    let dest = clean_abs(path);
    let fd = rootfs::resolve(v, &dest, container)?;
    let st = fstat(fd.as_fd()).map_err(errno_err("stat"))?;
    if Kind::of(&st) != Kind::Dir {
        return Err(ApiError::BadRequest(
            "extraction point is not a directory".into(),
        ));
    }
    match mount_id(fd.as_fd()).map(|id| v.mounts.crossing(id)) {
        Some(Crossing::Root) if v.mounts.root_readonly => {
            return Err(ApiError::BadRequest(
                "container rootfs is marked read-only".into(),
            ));
        }
        Some(Crossing::Bind { readonly: true }) => {
            return Err(ApiError::BadRequest(
                "mounted volume is marked read-only".into(),
            ));
        }
        _ => {}
    }
    let owner = if opts.copy_uid_gid {
        Some(container_ids(v, &opts.user)?)
    } else {
        None
    };
    let mut x = Extractor {
        root: v.root(),
        dest,
        container,
        opts,
        owner,
        dirs: Vec::new(),
    };
    let mut ar = tar::Archive::new(input);
    for entry in ar
        .entries()
        .map_err(|e| ApiError::BadRequest(format!("invalid tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| ApiError::BadRequest(format!("invalid tar: {e}")))?;
        x.entry(&mut entry)?;
    }
    x.finish_dirs();
    Ok(())
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    /// The extraction point, as a cleaned container path.
    dest: PathBuf,
    container: &'a str,
    opts: &'a ExtractOptions,
    owner: Option<(u32, u32)>,
    /// Directory times, set last (creating children changes them).
    dirs: Vec<(PathBuf, TimeSpec)>,
}

impl Extractor<'_> {
    /// The directory an entry goes in, created if missing, resolved in the
    /// container's scope.
    fn parent_of(&self, rel_parent: &Path, shown: &Path) -> ApiResult<OwnedFd> {
        rootpath::resolve_in_root(
            self.root,
            &self.dest.join(rel_parent),
            rootpath::Create::Dir,
        )
        .map_err(|e| match e {
            rootpath::ResolveError::Escape { .. } | rootpath::ResolveError::Loop { .. } => {
                bad_entry(shown, e)
            }
            other => rootfs::resolve_error(other, &shown.display().to_string(), self.container),
        })
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> ApiResult<()> {
        let raw = e
            .path()
            .map_err(|err| ApiError::BadRequest(format!("invalid tar entry name: {err}")))?
            .into_owned();
        let rel = clean_entry(&raw)
            .ok_or_else(|| bad_entry(&raw, "it climbs out of the extraction directory"))?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            // The extraction point itself ("." or "./"): Docker applies nothing.
            return Ok(());
        };
        let name = name.to_os_string();
        let h = e.header().clone();
        let kind = h.entry_type();
        let pfd = self.parent_of(parent, &raw)?;
        let pfd = pfd.as_fd();
        let nb = name.as_bytes();
        let io_err = |what: &str| {
            let shown = raw.display().to_string();
            let what = what.to_string();
            move |err: nix::errno::Errno| ApiError::Io {
                context: format!("{what} {shown}"),
                source: io::Error::from(err),
            }
        };

        let existing = lstat_at(pfd, &name).ok();
        let existing_dir = existing.as_ref().is_some_and(|s| Kind::of(s) == Kind::Dir);
        if existing.is_some() {
            if self.opts.no_overwrite_dir_non_dir && existing_dir && !kind.is_dir() {
                return Err(ApiError::BadRequest(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    self.dest.join(&rel),
                    raw
                )));
            }
            if self.opts.no_overwrite_dir_non_dir && !existing_dir && kind.is_dir() {
                return Err(ApiError::BadRequest(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    self.dest.join(&rel),
                    raw
                )));
            }
            if !(existing_dir && kind.is_dir()) {
                remove_at(pfd, &name, existing_dir).map_err(|err| ApiError::Io {
                    context: format!("replace {}", raw.display()),
                    source: err,
                })?;
            }
        }

        let mode = Mode::from_bits_truncate(h.mode().map_err(|err| bad_entry(&raw, err))? & 0o7777);
        // Empty numeric fields read as 0, as Go's archive/tar (the CLI's) reads them.
        let (uid, gid) = match self.owner {
            Some(o) => o,
            None => (
                h.uid()
                    .ok()
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or(0),
                h.gid()
                    .ok()
                    .and_then(|g| u32::try_from(g).ok())
                    .unwrap_or(0),
            ),
        };
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let mtime = TimeSpec::new(
            h.mtime()
                .ok()
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0),
            0,
        );

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {
                let fd = openat(
                    pfd,
                    nb,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_err("create"))?;
                let mut f = File::from(fd);
                io::copy(e, &mut f).map_err(|err| ApiError::Io {
                    context: format!("write {}", raw.display()),
                    source: err,
                })?;
                // On the fd we hold: a name swapped for a symlink meanwhile cannot
                // redirect the owner or mode to some other file.
                fchown(&f, uid, gid).map_err(io_err("chown"))?;
                fchmod(&f, mode).map_err(io_err("chmod"))?;
                self.xattrs(e, &f, &raw)?;
                nix::sys::stat::futimens(&f, &mtime, &mtime).map_err(io_err("set times"))?;
                return Ok(());
            }
            T::Directory => {
                if !existing_dir {
                    mkdirat(pfd, nb, Mode::from_bits_truncate(0o700)).map_err(io_err("mkdir"))?;
                }
                let dfd = fstree::open_dir_at(pfd, &name).map_err(io_err("open"))?;
                fchown(&dfd, uid, gid).map_err(io_err("chown"))?;
                fchmod(&dfd, mode).map_err(io_err("chmod"))?;
                self.dirs.push((rel.clone(), mtime));
                return Ok(());
            }
            T::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|err| bad_entry(&raw, err))?
                    .ok_or_else(|| bad_entry(&raw, "symlink without a target"))?;
                // Stored as it is: a symlink harms only when followed, and every path
                // through it is resolved in the container's scope.
                symlinkat(target.as_ref(), pfd, nb).map_err(io_err("symlink"))?;
                fchownat(pfd, nb, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(io_err("chown"))?;
                utimensat(pfd, nb, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
                    .map_err(io_err("set times"))?;
                return Ok(());
            }
            T::Link => {
                let target = e
                    .link_name()
                    .map_err(|err| bad_entry(&raw, err))?
                    .ok_or_else(|| bad_entry(&raw, "hard link without a target"))?;
                let trel = clean_entry(&target)
                    .ok_or_else(|| bad_entry(&raw, "its link target climbs out"))?;
                let (Some(tparent), Some(tname)) = (trel.parent(), trel.file_name()) else {
                    return Err(bad_entry(&raw, "hard link to the extraction point"));
                };
                let tfd = rootpath::resolve_in_root(
                    self.root,
                    &self.dest.join(tparent),
                    rootpath::Create::Nothing,
                )
                .map_err(|err| bad_entry(&raw, err))?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                linkat(&tfd, tname.as_bytes(), pfd, nb, AtFlags::empty())
                    .map_err(io_err("link"))?;
                return Ok(());
            }
            T::Char | T::Block | T::Fifo => {
                let (sflag, dev) = match kind {
                    T::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = h
                            .device_major()
                            .map_err(|err| bad_entry(&raw, err))?
                            .unwrap_or(0);
                        let minor = h
                            .device_minor()
                            .map_err(|err| bad_entry(&raw, err))?
                            .unwrap_or(0);
                        let f = if kind == T::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (f, makedev(major.into(), minor.into()))
                    }
                };
                mknodat(pfd, nb, sflag, mode, dev).map_err(io_err("mknod"))?;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => return Ok(()),
            other => {
                return Err(bad_entry(&raw, format!("unsupported entry type {other:?}")));
            }
        }
        // A device or FIFO: owner and mode through an O_PATH fd of what we made.
        fchownat(pfd, nb, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err("chown"))?;
        let node = fstree::open_path_at(pfd, &name).map_err(io_err("open"))?;
        let nst = fstat(node.as_fd()).map_err(io_err("stat"))?;
        if Kind::of(&nst) != Kind::Symlink {
            fchmodat(
                nix::fcntl::AT_FDCWD,
                &rootpath::fd_path(&node),
                mode,
                FchmodatFlags::FollowSymlink,
            )
            .map_err(io_err("chmod"))?;
        }
        utimensat(pfd, nb, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(io_err("set times"))?;
        Ok(())
    }

    /// `SCHILY.xattr.*` PAX records onto the file just written.
    fn xattrs<R: Read>(&self, e: &mut tar::Entry<'_, R>, f: &File, raw: &Path) -> ApiResult<()> {
        let Some(exts) = e.pax_extensions().map_err(|err| bad_entry(raw, err))? else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(|err| bad_entry(raw, err))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.")
                && let Err(err) = rustix::fs::fsetxattr(
                    f,
                    name,
                    ext.value_bytes(),
                    rustix::fs::XattrFlags::empty(),
                )
            {
                debug!(entry = %raw.display(), xattr = name, error = %err, "xattr not set");
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) {
        for (rel, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                continue;
            };
            if let Ok(pfd) = rootpath::resolve_in_root(
                self.root,
                &self.dest.join(parent),
                rootpath::Create::Nothing,
            ) {
                let _ = utimensat(
                    pfd.as_fd(),
                    name.as_bytes(),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
}

/// Removes `name` under `dir`, a directory recursively through fds (never following
/// a symlink inside it).
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    if is_dir {
        let sub = fstree::open_dir_at(dir, name).map_err(io::Error::from)?;
        for child in fstree::list(sub.as_fd()).map_err(io::Error::from)? {
            let st = lstat_at(sub.as_fd(), &child).map_err(io::Error::from)?;
            remove_at(sub.as_fd(), &child, Kind::of(&st) == Kind::Dir)?;
        }
        unlinkat(dir, name.as_bytes(), UnlinkatFlags::RemoveDir).map_err(io::Error::from)
    } else {
        unlinkat(dir, name.as_bytes(), UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
    }
}
