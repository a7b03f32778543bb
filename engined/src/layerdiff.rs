//! `docker diff` and `docker commit`, from the overlay upper directory of the
//! container's snapshot: what is there was added or changed (changed when the image
//! has it), a 0/0 character device is a deletion, a directory marked
//! `trusted.overlay.opaque` hides what the image had below it. The runtime's mount
//! points (`/dev`, `/proc`, `/sys`, `/etc/{hosts,hostname,resolv.conf}`) are left
//! out, as Docker's init layer keeps them out. A commit turns the same walk into a
//! layer tar (whiteouts as `.wh.` files) on top of the image's layers.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_client::services::v1::snapshots::MountsRequest;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use nix::sys::stat::FileStat;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::changes;
use crate::daemon::{Container, Daemon};
use crate::error::{ApiError, ApiResult, Context};
use crate::fstree::{self, Kind, TreeTar, is_whiteout, lstat_at, open_dir_at};
use crate::reference;
use crate::rootfs::on_thread;
use crate::save::query_values;
use crate::server::{self, Body};

/// Paths the runtime creates as mount points; never the container's own changes.
const RUNTIME_PATHS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/.dockerenv",
];

fn runtime_path(abs: &Path) -> bool {
    RUNTIME_PATHS.iter().any(|p| abs.starts_with(p))
}

/// The snapshot's writable layer and the image layers below it, top first.
#[derive(Debug)]
pub(crate) struct Layers {
    pub(crate) upper: PathBuf,
    lowers: Vec<PathBuf>,
}

pub(crate) async fn layers(d: &Daemon, id: &str) -> ApiResult<Layers> {
    let mounts = d
        .ctrd
        .snapshots()
        .mounts(d.ctrd.req(MountsRequest {
            snapshotter: d.ctrd.snapshotter.clone(),
            key: id.to_string(),
        }))
        .await
        .ctx(|| "get the rootfs mounts".into())?
        .into_inner()
        .mounts;
    let m = mounts
        .first()
        .ok_or_else(|| ApiError::Internal("the rootfs snapshot has no mounts".into()))?;
    match m.r#type.as_str() {
        "overlay" => {
            let opt = |k: &str| m.options.iter().find_map(|o| o.strip_prefix(k));
            let upper = opt("upperdir=").ok_or_else(|| {
                ApiError::Internal("the rootfs overlay has no upper directory".into())
            })?;
            let lowers = opt("lowerdir=")
                .map(|l| l.split(':').map(PathBuf::from).collect())
                .unwrap_or_default();
            Ok(Layers {
                upper: PathBuf::from(upper),
                lowers,
            })
        }
        // An image without layers: everything in the container is its own.
        "bind" if mounts.len() == 1 && d.ctrd.snapshotter != "native" => Ok(Layers {
            upper: PathBuf::from(&m.source),
            lowers: Vec::new(),
        }),
        other => Err(ApiError::BadRequest(format!(
            "diff and commit need the overlayfs snapshotter (the rootfs is a {other} mount)"
        ))),
    }
}

fn opaque(dir: BorrowedFd<'_>) -> bool {
    fstree::xattr(dir, "trusted.overlay.opaque").as_deref() == Some(b"y")
}

/// What the image layers have at `rel`, looking top down as overlayfs does: a
/// whiteout, a non-directory on the way or an opaque directory stops the search.
fn lower_stat(lowers: &[OwnedFd], rel: &Path) -> Option<FileStat> {
    let comps: Vec<&OsStr> = rel.iter().collect();
    'layers: for l in lowers {
        let mut cur: Option<OwnedFd> = None;
        let mut hidden_below = false;
        for (i, c) in comps.iter().enumerate() {
            let at = cur.as_ref().map_or(l.as_fd(), |f| f.as_fd());
            let st = match lstat_at(at, c) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) if !hidden_below => continue 'layers,
                Err(_) => return None,
            };
            if is_whiteout(&st) {
                return None;
            }
            if i + 1 == comps.len() {
                return Some(st);
            }
            if Kind::of(&st) != Kind::Dir {
                return None;
            }
            let fd = open_dir_at(at, c).ok()?;
            hidden_below |= opaque(fd.as_fd());
            cur = Some(fd);
        }
    }
    None
}

fn open_lowers(l: &Layers) -> ApiResult<(OwnedFd, Vec<OwnedFd>)> {
    let open = |p: &Path| -> ApiResult<OwnedFd> {
        Ok(std::fs::File::open(p)
            .ctx(|| format!("open {}", p.display()))?
            .into())
    };
    let upper = open(&l.upper)?;
    let lowers = l.lowers.iter().map(|p| open(p)).collect::<ApiResult<_>>()?;
    Ok((upper, lowers))
}

/// One change, Docker's way: 0 changed, 1 added, 2 deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: u8,
}

/// Walks the upper directory `dir` (at `rel`); returns whether anything below was
/// reported, which makes an existing directory count as changed.
fn diff_dir(
    dir: BorrowedFd<'_>,
    rel: &Path,
    lowers: &[OwnedFd],
    out: &mut Vec<Change>,
) -> io::Result<bool> {
    let mut any = false;
    for name in fstree::list(dir).map_err(io::Error::from)? {
        let path = rel.join(&name);
        let abs = Path::new("/").join(&path);
        if runtime_path(&abs) {
            continue;
        }
        let st = lstat_at(dir, &name).map_err(io::Error::from)?;
        let shown = abs.to_string_lossy().into_owned();
        let below = lower_stat(lowers, &path);
        if is_whiteout(&st) {
            if below.is_some() {
                out.push(Change {
                    path: shown,
                    kind: 2,
                });
                any = true;
            }
            continue;
        }
        if Kind::of(&st) == Kind::Dir {
            let sub = open_dir_at(dir, &name).map_err(io::Error::from)?;
            let at = out.len();
            let inner = diff_dir(sub.as_fd(), &path, lowers, out)?;
            let changed = match &below {
                None => Some(1),
                Some(b) if Kind::of(b) != Kind::Dir => Some(0),
                Some(b)
                    if inner
                        || opaque(sub.as_fd())
                        || b.st_mode != st.st_mode
                        || b.st_uid != st.st_uid
                        || b.st_gid != st.st_gid =>
                {
                    Some(0)
                }
                Some(_) => None,
            };
            if let Some(kind) = changed {
                out.insert(at, Change { path: shown, kind });
                any = true;
            }
            continue;
        }
        out.push(Change {
            path: shown,
            kind: if below.is_some() { 0 } else { 1 },
        });
        any = true;
    }
    Ok(any)
}

/// `GET /containers/{id}/changes`.
pub async fn changes(d: &Arc<Daemon>, c: &Arc<Container>) -> ApiResult<Response<Body>> {
    let l = layers(d, &c.id).await?;
    let list = on_thread("diff", move || -> ApiResult<Vec<Change>> {
        let (upper, lowers) = open_lowers(&l)?;
        let mut out = Vec::new();
        diff_dir(upper.as_fd(), Path::new(""), &lowers, &mut out)
            .ctx(|| format!("read {}", l.upper.display()))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    })
    .await??;
    let body: Vec<Value> = list
        .iter()
        .map(|c| json!({ "Path": c.path, "Kind": c.kind }))
        .collect();
    Ok(server::json(StatusCode::OK, &body))
}

/// A writer that hashes what it writes (the layer's digest and diff id).
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The upper directory as a layer: entries as they are, whiteouts as `.wh.<name>`,
/// opaque directories with `.wh..wh..opq`. Returns how many entries it holds.
fn layer_dir<W: Write>(
    tar: &mut TreeTar<'_, W>,
    dir: BorrowedFd<'_>,
    rel: &Path,
) -> io::Result<u64> {
    let mut n = 0;
    for name in fstree::list(dir).map_err(io::Error::from)? {
        let path = rel.join(&name);
        if runtime_path(&Path::new("/").join(&path)) {
            continue;
        }
        let st = lstat_at(dir, &name).map_err(io::Error::from)?;
        n += 1;
        if is_whiteout(&st) {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(&name);
            tar.append_marker(&st, &rel.join(wh))?;
        } else if Kind::of(&st) == Kind::Dir {
            let sub = open_dir_at(dir, &name).map_err(io::Error::from)?;
            tar.append_dir_header(&st, &path)?;
            if opaque(sub.as_fd()) {
                tar.append_marker(&st, &path.join(".wh..wh..opq"))?;
            }
            n += layer_dir(tar, sub.as_fd(), &path)?;
        } else {
            tar.append_leaf(dir, &name, &st, &path)?;
        }
    }
    Ok(n)
}

/// Writes the layer tar of `upper` to `out`: (digest, size, entries).
pub(crate) fn write_layer(upper: &Path, out: &Path) -> ApiResult<(String, i64, u64)> {
    let dir = std::fs::File::open(upper).ctx(|| format!("open {}", upper.display()))?;
    let file = std::fs::File::create(out).ctx(|| format!("create {}", out.display()))?;
    let hashing = Hashing {
        inner: io::BufWriter::new(file),
        hash: Sha256::new(),
        size: 0,
    };
    let mut tar = TreeTar::new(hashing, None, fstree::MountPolicy::RootOnly);
    let entries = layer_dir(&mut tar, dir.as_fd(), Path::new(""))
        .ctx(|| format!("archive {}", upper.display()))?;
    let mut h = tar.finish().ctx(|| "finish the layer".into())?;
    h.flush().ctx(|| "write the layer".into())?;
    let mut digest = String::from("sha256:");
    for b in h.hash.finalize() {
        digest.push_str(&format!("{b:02x}"));
    }
    Ok((digest, h.size as i64, entries))
}

/// `repo[:tag]` (with `tag` replacing one in `repo`) as a full name.
fn commit_name(repo: &str, tag: &str) -> ApiResult<Option<String>> {
    if repo.is_empty() {
        return Ok(None);
    }
    let name = if tag.is_empty() {
        repo.to_string()
    } else {
        format!("{}:{tag}", reference::split_tag(repo).0)
    };
    if repo.contains('@') || !reference::is_valid(&name) {
        return Err(ApiError::BadRequest(format!(
            "invalid reference format: {name}"
        )));
    }
    Ok(Some(reference::normalize(&name)))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
pub async fn commit(d: &Arc<Daemon>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let qs = req.uri().query().map(str::to_string);
    let qs = qs.as_deref();
    let last = |k: &str| query_values(qs, k).pop().unwrap_or_default();
    let c = d.find(&last("container"))?;
    let name = commit_name(&last("repo"), &last("tag"))?;
    let comment = last("comment");
    let author = last("author");
    let pause = !matches!(last("pause").as_str(), "0" | "false" | "False");
    let rec = c.record();
    let image = d.images.lookup(&rec.image_id).await.ok_or_else(|| {
        ApiError::Conflict(format!(
            "the image {} of container {} is gone",
            rec.image, rec.id
        ))
    })?;
    let mut config = match serde_json::to_value(&rec.config) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::Internal("encode the container config".into())),
    };
    changes::apply(&mut config, &query_values(qs, "changes"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;

    let l = layers(d, &c.id).await?;
    let started = std::time::Instant::now();
    // Frozen while its files are read, as dockerd commits (unless pause=0).
    let paused = pause && c.status() == "running" && d.pause(&c).await.is_ok();
    let tmp = tempfile::NamedTempFile::new_in(d.cfg.data_root.join("tmp"))
        .ctx(|| "create a layer file".into())?;
    let out = tmp.path().to_path_buf();
    let written = on_thread("commit", move || write_layer(&l.upper, &out)).await;
    if paused && let Err(e) = d.unpause(&c).await {
        warn!(container_id = %c.id, error = %e, "unpause after commit");
    }
    let (digest, size, entries) = written??;
    let layer_done = started.elapsed();

    let created = common::rfc3339_nanos(std::time::SystemTime::now());
    let mut ic = image.config.clone();
    let mut cmd = rec.config.cmd.clone().unwrap_or_default().join(" ");
    if cmd.is_empty() {
        cmd = format!("{} {}", rec.path, rec.args.join(" "))
            .trim()
            .to_string();
    }
    let empty = entries == 0;
    let mut history = ic["history"].as_array().cloned().unwrap_or_default();
    if history.is_empty() {
        // One entry per layer, so that `docker history` still lines them up.
        let base = ic["created"].clone();
        history = image
            .layers
            .iter()
            .map(|_| json!({ "created": base }))
            .collect();
    }
    let mut h = json!({ "created": created, "created_by": cmd });
    if !author.is_empty() {
        h["author"] = json!(author);
    }
    if !comment.is_empty() {
        h["comment"] = json!(comment);
    }
    if empty {
        h["empty_layer"] = json!(true);
    }
    history.push(h);
    let mut diff_ids = ic["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !empty {
        diff_ids.push(json!(digest));
    }
    ic["config"] = Value::Object(config);
    ic["container"] = json!(rec.id);
    ic["container_config"] = serde_json::to_value(&rec.config).unwrap_or(Value::Null);
    ic["created"] = json!(created);
    ic["docker_version"] = json!(server::SERVER_VERSION);
    ic["author"] = json!(author);
    ic["comment"] = json!(comment);
    ic["history"] = json!(history);
    ic["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    if let Some(o) = ic.as_object_mut() {
        // Legacy v1 fields of a loaded image would name the parent, not this one.
        o.remove("id");
        o.remove("parent");
    }
    let bytes = serde_json::to_vec(&ic)
        .map_err(|e| ApiError::Internal(format!("encode the image config: {e}")))?;
    let names: Vec<String> = name.into_iter().collect();
    let layer = (!empty).then_some((tmp.path(), digest.as_str(), size));
    let made = d
        .images
        .commit(&bytes, ic, &image.layers, layer, &names)
        .await?;
    info!(
        container_id = %c.id, image = %made.id, names = ?names, layer_bytes = size, paused,
        layer_ms = layer_done.as_millis() as u64,
        store_ms = (started.elapsed() - layer_done).as_millis() as u64,
        "committed"
    );
    Ok(server::json(StatusCode::CREATED, &json!({ "Id": made.id })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    fn changes_of(upper: &Path, lowers: &[&Path]) -> Vec<(String, u8)> {
        let l = Layers {
            upper: upper.to_path_buf(),
            lowers: lowers.iter().map(|p| p.to_path_buf()).collect(),
        };
        let (u, lo) = open_lowers(&l).unwrap();
        let mut out = Vec::new();
        diff_dir(u.as_fd(), Path::new(""), &lo, &mut out).unwrap();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.into_iter().map(|c| (c.path, c.kind)).collect()
    }

    #[test]
    fn upper_entries_become_changes() {
        if !nix::unistd::geteuid().is_root() {
            // Whiteouts are character devices: only root makes them.
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("u"), t.path().join("l"));
        for d in ["tmp", "etc", "bin"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "root").unwrap();
        std::fs::write(lower.join("bin/ls"), "ls").unwrap();
        std::fs::write(upper.join("tmp/new"), "x").unwrap();
        std::fs::write(upper.join("etc/passwd"), "root2").unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        mknod(
            &upper.join("bin/ls"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        std::fs::create_dir_all(upper.join("proc")).unwrap();
        assert_eq!(
            changes_of(&upper, &[&lower]),
            vec![
                ("/bin".into(), 0),
                ("/bin/ls".into(), 2),
                ("/etc".into(), 0),
                ("/etc/passwd".into(), 0),
                ("/tmp".into(), 0),
                ("/tmp/new".into(), 1),
            ]
        );
        let out = t.path().join("layer.tar");
        let (_, size, entries) = write_layer(&upper, &out).unwrap();
        assert!(size > 0 && entries > 0);
        let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "bin/",
                "bin/.wh.ls",
                "etc/",
                "etc/passwd",
                "tmp/",
                "tmp/new"
            ]
        );
    }

    #[test]
    fn names_normalise_like_the_cli_sends_them() {
        assert_eq!(commit_name("", "").unwrap(), None);
        assert_eq!(
            commit_name("docker.io/library/committed", "v1")
                .unwrap()
                .as_deref(),
            Some("docker.io/library/committed:v1")
        );
        assert!(commit_name("Bad", "").is_err());
    }
}
