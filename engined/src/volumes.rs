//! Volumes of the `local` driver, as dockerd keeps them: a directory
//! `<data-root>/volumes/<name>/_data` mounted into containers as a bind, with its
//! metadata (labels, creation time, and for an anonymous volume the container and
//! path it was made for) written atomically next to it in `volume.json`.
//!
//! A container gets its named volumes from `-v name:/path` (created on demand) and
//! `--mount type=volume`, and anonymous ones for `-v /path`, `--mount` without a
//! source and the image's `VOLUME`s. An empty volume is filled from the image's files
//! at that path when the container starts, as Docker does (unless `nocopy`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard_stubs::models::{MountPoint, MountType};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::daemon::{Daemon, Record};
use crate::error::{ApiError, ApiResult, Context};
use crate::filters::Filters;
use crate::fstree;
use crate::rootfs::{self, Bind};
use crate::server::{self, Body, json, query, read_json, truthy};

const META_FILE: &str = "volume.json";
/// The label Docker (23+) puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Serializes creation and removal against each other (and the in-use check).
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The container an anonymous volume was made for, and where it is mounted there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Anonymous {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "Destination")]
    pub destination: String,
}

/// What `volume.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Anonymous", default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<Anonymous>,
}

pub fn root(d: &Daemon) -> PathBuf {
    d.cfg.data_root.join("volumes")
}

pub fn data_dir(d: &Daemon, name: &str) -> PathBuf {
    root(d).join(name).join("_data")
}

/// dockerd's rule for local volume names.
pub fn valid_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.len() < 2 && first_ok && rest_ok {
        return Err(ApiError::BadRequest(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    if !(first_ok && rest_ok) {
        return Err(ApiError::BadRequest(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// RFC 3339 to the second, as dockerd shows `CreatedAt`.
fn now_seconds() -> String {
    let full = common::rfc3339_nanos(std::time::SystemTime::now());
    match full.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => full,
    }
}

/// A volume's metadata; one made by an older engined (a `_data` directory without
/// `volume.json`) gets its directory's time.
pub fn load(d: &Daemon, name: &str) -> Option<Meta> {
    if valid_name(name).is_err() {
        return None;
    }
    let dir = root(d).join(name);
    if !dir.join("_data").is_dir() {
        return None;
    }
    if let Ok(data) = std::fs::read(dir.join(META_FILE))
        && let Ok(m) = serde_json::from_slice::<Meta>(&data)
    {
        return Some(m);
    }
    let created = std::fs::metadata(&dir)
        .and_then(|m| m.modified())
        .map(common::rfc3339_nanos)
        .unwrap_or_default();
    Some(Meta {
        name: name.to_string(),
        created_at: created,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
        anonymous: None,
    })
}

pub fn list(d: &Daemon) -> Vec<Meta> {
    let mut names: Vec<String> = std::fs::read_dir(root(d))
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.iter().filter_map(|n| load(d, n)).collect()
}

/// Creates a volume, or returns the existing one of that name (as dockerd does).
pub fn create(
    d: &Daemon,
    name: &str,
    labels: BTreeMap<String, String>,
    options: BTreeMap<String, String>,
    anonymous: Option<Anonymous>,
) -> ApiResult<Meta> {
    valid_name(name)?;
    let _g = lock();
    if let Some(m) = load(d, name) {
        return Ok(m);
    }
    let dir = root(d).join(name);
    std::fs::create_dir_all(dir.join("_data")).ctx(|| format!("create volume {name}"))?;
    let meta = Meta {
        name: name.to_string(),
        created_at: now_seconds(),
        labels,
        options,
        anonymous,
    };
    let data = serde_json::to_vec(&meta)
        .map_err(|e| ApiError::Internal(format!("encode volume metadata: {e}")))?;
    common::atomic_write(&dir.join(META_FILE), &data, 0o600)
        .ctx(|| format!("write {}", dir.join(META_FILE).display()))?;
    info!(
        volume = name,
        anonymous = meta.anonymous.is_some(),
        "volume created"
    );
    Ok(meta)
}

/// `-v SRC:DST[:OPTS]` split as spec.rs splits it.
fn split_bind(bind: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = bind.split(':').collect();
    match parts.as_slice() {
        [s, d] => Some((s, d, "")),
        [s, d, o] => Some((s, d, o)),
        _ => None,
    }
}

fn opts_readonly(opts: &str) -> bool {
    opts.split(',').any(|o| o == "ro")
}

/// Destinations compared as the kernel sees them: `/data/` is `/data`.
fn norm_dest(p: &str) -> String {
    fstree::clean_abs(p).to_string_lossy().into_owned()
}

/// A volume or bind a container mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Use {
    Named {
        name: String,
        destination: String,
        readonly: bool,
        copy: bool,
        mode: String,
    },
    Host {
        source: String,
        destination: String,
        readonly: bool,
        mode: String,
        propagation: String,
    },
    Tmpfs {
        destination: String,
        options: Vec<String>,
    },
}

/// The volumes and binds of a record, from `Binds` and `Mounts` (anonymous volumes
/// come from the volume metadata; see [`anonymous_of`]).
fn uses_of(rec: &Record) -> Vec<Use> {
    let mut out = Vec::new();
    for b in rec.host_config.binds.as_deref().unwrap_or_default() {
        let Some((src, dst, opts)) = split_bind(b) else {
            continue;
        };
        if src.starts_with('/') {
            out.push(Use::Host {
                source: src.to_string(),
                destination: norm_dest(dst),
                readonly: opts_readonly(opts),
                mode: opts.to_string(),
                propagation: "rprivate".into(),
            });
        } else {
            out.push(Use::Named {
                name: src.to_string(),
                destination: norm_dest(dst),
                readonly: opts_readonly(opts),
                copy: !opts.split(',').any(|o| o == "nocopy"),
                mode: if opts.is_empty() {
                    "z".into()
                } else {
                    opts.to_string()
                },
            });
        }
    }
    for m in rec.host_config.mounts.as_deref().unwrap_or_default() {
        let Some(target) = m.target.as_deref() else {
            continue;
        };
        let destination = norm_dest(target);
        let readonly = m.read_only.unwrap_or(false);
        let source = m.source.clone().unwrap_or_default();
        match m.typ {
            Some(MountType::BIND) => out.push(Use::Host {
                source,
                destination,
                readonly,
                mode: String::new(),
                propagation: m
                    .bind_options
                    .as_ref()
                    .and_then(|b| b.propagation)
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "rprivate".into()),
            }),
            Some(MountType::VOLUME) if !source.is_empty() => out.push(Use::Named {
                name: source,
                destination,
                readonly,
                copy: !m
                    .volume_options
                    .as_ref()
                    .and_then(|v| v.no_copy)
                    .unwrap_or(false),
                mode: String::new(),
            }),
            Some(MountType::TMPFS) => {
                let mut options = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                if let Some(t) = &m.tmpfs_options {
                    if let Some(size) = t.size_bytes.filter(|s| *s > 0) {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m > 0) {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                out.push(Use::Tmpfs {
                    destination,
                    options,
                });
            }
            _ => {}
        }
    }
    out
}

/// The anonymous volumes made for container `id`.
fn anonymous_of(d: &Daemon, id: &str) -> Vec<Meta> {
    list(d)
        .into_iter()
        .filter(|m| m.anonymous.as_ref().is_some_and(|a| a.container == id))
        .collect()
}

/// The containers that use volume `name`.
pub fn users(d: &Daemon, name: &str) -> Vec<String> {
    let anon_of = load(d, name).and_then(|m| m.anonymous).map(|a| a.container);
    let mut out: Vec<String> = d
        .all()
        .into_iter()
        .filter(|c| {
            anon_of.as_deref() == Some(c.id.as_str())
                || uses_of(&c.record())
                    .iter()
                    .any(|u| matches!(u, Use::Named { name: n, .. } if n == name))
        })
        .map(|c| c.id.clone())
        .collect();
    out.sort();
    out
}

/// `DELETE /volumes/{name}`: 409 while a container uses it; with `force` a missing
/// volume is no error.
pub fn remove(d: &Daemon, name: &str, force: bool) -> ApiResult<()> {
    if load(d, name).is_none() {
        if force {
            return Ok(());
        }
        return Err(ApiError::NotFound(format!("get {name}: no such volume")));
    }
    let _g = lock();
    let users = users(d, name);
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "remove {name}: volume is in use - [{}]",
            users.join(", ")
        )));
    }
    let dir = root(d).join(name);
    // Meta first: a crash half-way leaves a `_data` without it, which still lists
    // and can be removed again.
    let _ = std::fs::remove_file(dir.join(META_FILE));
    std::fs::remove_dir_all(&dir).ctx(|| format!("remove volume {name}"))?;
    info!(volume = name, "volume removed");
    Ok(())
}

/// After a container is removed with `-v` (or by `--rm`): its anonymous volumes go,
/// unless another container uses them.
pub fn remove_anonymous_of(d: &Daemon, container: &str) {
    for m in anonymous_of(d, container) {
        if let Err(e) = remove(d, &m.name, true) {
            warn!(volume = %m.name, error = %e, "keeping the anonymous volume");
        }
    }
}

/// At container create: named volumes are created on demand, `--mount`s checked,
/// and one anonymous volume made per `Volumes` entry of the request and the image
/// that no bind or mount covers.
pub async fn prepare(d: &Daemon, rec: &Record) -> ApiResult<()> {
    let uses = uses_of(rec);
    for m in rec.host_config.mounts.as_deref().unwrap_or_default() {
        let target = m.target.as_deref().unwrap_or("");
        if !target.starts_with('/') {
            return Err(ApiError::BadRequest(format!(
                "invalid mount config: invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        match m.typ {
            Some(MountType::BIND) => {
                let src = m.source.as_deref().unwrap_or("");
                if !src.starts_with('/') || !Path::new(src).exists() {
                    return Err(ApiError::BadRequest(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
            }
            Some(MountType::VOLUME | MountType::TMPFS) => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "mount type {} is not supported (bind, volume and tmpfs are)",
                    other.map(|t| t.to_string()).unwrap_or_default()
                )));
            }
        }
    }
    for u in &uses {
        if let Use::Named { name, .. } = u {
            create(d, name, BTreeMap::new(), BTreeMap::new(), None)?;
        }
    }
    let mut covered: HashSet<String> = uses
        .iter()
        .map(|u| match u {
            Use::Named { destination, .. }
            | Use::Host { destination, .. }
            | Use::Tmpfs { destination, .. } => destination.clone(),
        })
        .collect();
    if let Some(t) = &rec.host_config.tmpfs {
        covered.extend(t.keys().map(|k| norm_dest(k)));
    }
    let mut wanted: Vec<String> = Vec::new();
    for k in rec.config.volumes.iter().flatten() {
        wanted.push(k.clone());
    }
    if let Some(image) = d.images.lookup(&rec.image_id).await
        && let Some(v) = image.config["config"]["Volumes"].as_object()
    {
        wanted.extend(v.keys().cloned());
    }
    for m in rec.host_config.mounts.as_deref().unwrap_or_default() {
        if m.typ == Some(MountType::VOLUME) && m.source.as_deref().unwrap_or("").is_empty() {
            // Not "covered": the anonymous volume is its source.
            if let Some(t) = &m.target {
                covered.remove(&norm_dest(t));
                wanted.push(t.clone());
            }
        }
    }
    for dest in wanted {
        if !dest.starts_with('/') {
            return Err(ApiError::BadRequest(format!(
                "invalid volume specification: '{dest}': mount path must be absolute"
            )));
        }
        let dest = norm_dest(&dest);
        if !covered.insert(dest.clone()) {
            continue;
        }
        create(
            d,
            &crate::util::new_id(),
            BTreeMap::from([(ANONYMOUS_LABEL.to_string(), String::new())]),
            BTreeMap::new(),
            Some(Anonymous {
                container: rec.id.clone(),
                destination: dest,
            }),
        )?;
    }
    Ok(())
}

fn bind_json(dst: &str, src: &Path, readonly: bool, propagation: &str) -> Value {
    let mut opts = vec!["rbind".to_string()];
    if readonly {
        opts.push("ro".into());
    }
    opts.push(propagation.to_string());
    json!({ "destination": dst, "type": "bind", "source": src, "options": opts })
}

/// Adds the anonymous volumes and `--mount`s to a spec built by [`crate::spec`]
/// (which mounts `Binds`), parents before children.
pub fn add_to_spec(d: &Daemon, rec: &Record, spec: &mut Value) -> ApiResult<()> {
    let mut extra = Vec::new();
    for m in anonymous_of(d, &rec.id) {
        if let Some(a) = &m.anonymous {
            extra.push(bind_json(
                &a.destination,
                &data_dir(d, &m.name),
                false,
                "rprivate",
            ));
        }
    }
    let from_mounts = rec.host_config.mounts.as_deref().unwrap_or_default().len();
    if from_mounts > 0 {
        let binds = rec.host_config.binds.as_deref().unwrap_or_default().len();
        // uses_of lists Binds first, then Mounts.
        for u in uses_of(rec).into_iter().skip(binds) {
            extra.push(match u {
                Use::Named {
                    name,
                    destination,
                    readonly,
                    ..
                } => {
                    let dir = data_dir(d, &name);
                    std::fs::create_dir_all(&dir).ctx(|| format!("create volume {name}"))?;
                    bind_json(&destination, &dir, readonly, "rprivate")
                }
                Use::Host {
                    source,
                    destination,
                    readonly,
                    propagation,
                    ..
                } => bind_json(&destination, Path::new(&source), readonly, &propagation),
                Use::Tmpfs {
                    destination,
                    options,
                } => json!({
                    "destination": destination, "type": "tmpfs", "source": "tmpfs",
                    "options": options
                }),
            });
        }
    }
    let mounts = spec["mounts"]
        .as_array_mut()
        .ok_or_else(|| ApiError::Internal("spec without mounts".into()))?;
    for m in extra {
        mounts.retain(|x| x["destination"] != m["destination"]);
        mounts.push(m);
    }
    // A stable sort by depth, as dockerd sorts mounts: a volume on /etc goes before
    // the /etc/hosts bind instead of hiding it, /data before /data/sub.
    mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |p| Path::new(p).components().count())
    });
    Ok(())
}

/// Every volume and bind of a container, as host paths (for cp on a stopped one).
pub fn binds_of(d: &Daemon, rec: &Record) -> ApiResult<Vec<Bind>> {
    let mut out = Vec::new();
    for u in uses_of(rec) {
        match u {
            Use::Named {
                name,
                destination,
                readonly,
                ..
            } => out.push(Bind {
                source: data_dir(d, &name),
                destination,
                readonly,
            }),
            Use::Host {
                source,
                destination,
                readonly,
                ..
            } => out.push(Bind {
                source: PathBuf::from(source),
                destination,
                readonly,
            }),
            Use::Tmpfs { .. } => {}
        }
    }
    for m in anonymous_of(d, &rec.id) {
        if let Some(a) = m.anonymous {
            out.push(Bind {
                source: data_dir(d, &m.name),
                destination: a.destination,
                readonly: false,
            });
        }
    }
    out.retain(|b| b.source.exists());
    out.sort_by_key(|b| Path::new(&b.destination).components().count());
    Ok(out)
}

/// `Mounts` of container inspect.
pub fn mount_points(d: &Daemon, rec: &Record) -> Vec<MountPoint> {
    let mut out: Vec<MountPoint> = uses_of(rec)
        .into_iter()
        .map(|u| match u {
            Use::Named {
                name,
                destination,
                readonly,
                mode,
                ..
            } => MountPoint {
                typ: Some("volume".into()),
                source: Some(data_dir(d, &name).to_string_lossy().into_owned()),
                name: Some(name),
                destination: Some(destination),
                driver: Some("local".into()),
                mode: Some(mode),
                rw: Some(!readonly),
                propagation: Some(String::new()),
            },
            Use::Host {
                source,
                destination,
                readonly,
                mode,
                propagation,
            } => MountPoint {
                typ: Some("bind".into()),
                name: None,
                source: Some(source),
                destination: Some(destination),
                driver: None,
                mode: Some(mode),
                rw: Some(!readonly),
                propagation: Some(propagation),
            },
            Use::Tmpfs { destination, .. } => MountPoint {
                typ: Some("tmpfs".into()),
                destination: Some(destination),
                source: Some(String::new()),
                rw: Some(true),
                ..Default::default()
            },
        })
        .collect();
    for m in anonymous_of(d, &rec.id) {
        if let Some(a) = &m.anonymous {
            out.push(MountPoint {
                typ: Some("volume".into()),
                source: Some(data_dir(d, &m.name).to_string_lossy().into_owned()),
                name: Some(m.name.clone()),
                destination: Some(a.destination.clone()),
                driver: Some("local".into()),
                mode: Some(String::new()),
                rw: Some(true),
                propagation: Some(String::new()),
            });
        }
    }
    out.sort_by(|a, b| a.destination.cmp(&b.destination));
    out
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut r| r.next().is_none())
}

/// Before a start: each empty volume gets the image's files at its mount point
/// (Docker's copy-up), owner and mode of that directory included. The caller holds
/// the container's operation lock, so the snapshot is not in use.
pub async fn populate(d: &Daemon, rec: &Record) -> ApiResult<()> {
    let mut todo: Vec<(String, PathBuf)> = Vec::new();
    for u in uses_of(rec) {
        if let Use::Named {
            name,
            destination,
            copy: true,
            ..
        } = u
        {
            todo.push((destination, data_dir(d, &name)));
        }
    }
    for m in anonymous_of(d, &rec.id) {
        if let Some(a) = m.anonymous {
            todo.push((a.destination, data_dir(d, &m.name)));
        }
    }
    todo.retain(|(_, dir)| is_empty_dir(dir));
    if todo.is_empty() {
        return Ok(());
    }
    rootfs::with_snapshot(d, &rec.id, Vec::new(), false, move |v| -> ApiResult<()> {
        for (dest, dir) in todo {
            let Ok(src) =
                rootpath::resolve_in_root(v.root(), Path::new(&dest), rootpath::Create::Nothing)
            else {
                continue;
            };
            let Ok(st) = nix::sys::stat::fstat(src.as_fd()) else {
                continue;
            };
            if fstree::Kind::of(&st) != fstree::Kind::Dir {
                continue;
            }
            let src = fstree::reopen_dir(src.as_fd())
                .map_err(|e| ApiError::Internal(format!("open {dest}: {e}")))?;
            let dst = std::fs::File::open(&dir).ctx(|| format!("open {}", dir.display()))?;
            fstree::copy_tree(src.as_fd(), dst.as_fd())
                .ctx(|| format!("copy {dest} of the image into its volume"))?;
            nix::unistd::fchown(
                &dst,
                Some(nix::unistd::Uid::from_raw(st.st_uid)),
                Some(nix::unistd::Gid::from_raw(st.st_gid)),
            )
            .ctx(|| format!("chown {}", dir.display()))?;
            nix::sys::stat::fchmod(
                &dst,
                nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o7777),
            )
            .ctx(|| format!("chmod {}", dir.display()))?;
        }
        Ok(())
    })
    .await?
}

/// The JSON of a volume, as dockerd 20.10 sends it.
fn body(d: &Daemon, m: &Meta, usage: Option<(i64, i64)>) -> Value {
    let map_or_null = |b: &BTreeMap<String, String>| {
        if b.is_empty() { Value::Null } else { json!(b) }
    };
    let mut v = json!({
        "CreatedAt": m.created_at,
        "Driver": "local",
        "Labels": map_or_null(&m.labels),
        "Mountpoint": data_dir(d, &m.name),
        "Name": m.name,
        "Options": map_or_null(&m.options),
        "Scope": "local",
    });
    if let Some((size, refs)) = usage {
        v["UsageData"] = json!({ "Size": size, "RefCount": refs });
    }
    v
}

/// Size and reference count (for `system df`).
pub fn usage(d: &Daemon, m: &Meta) -> (i64, i64) {
    let size = std::fs::File::open(data_dir(d, &m.name))
        .map(|f| fstree::tree_size(f.as_fd()))
        .unwrap_or(0);
    (size, users(d, &m.name).len() as i64)
}

pub fn usage_bodies(d: &Daemon) -> Vec<Value> {
    list(d)
        .iter()
        .map(|m| body(d, m, Some(usage(d, m))))
        .collect()
}

#[derive(Debug, Deserialize, Default)]
struct CreateBody {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Driver", default)]
    driver: Option<String>,
    #[serde(rename = "DriverOpts", default)]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

fn matches(d: &Daemon, m: &Meta, f: &Filters) -> ApiResult<bool> {
    if let Some(dangling) = f.boolean("dangling")?
        && users(d, &m.name).is_empty() != dangling
    {
        return Ok(false);
    }
    let names = f.get("name");
    if !names.is_empty() && !names.iter().any(|n| m.name.contains(n.as_str())) {
        return Ok(false);
    }
    let drivers = f.get("driver");
    if !drivers.is_empty() && !drivers.iter().any(|x| x == "local") {
        return Ok(false);
    }
    let labels: HashMap<String, String> = m.labels.clone().into_iter().collect();
    Ok(f.labels_match(&labels))
}

/// `/volumes`, `/volumes/create`, `/volumes/prune`, `/volumes/{name}`.
pub async fn route(
    d: &Arc<Daemon>,
    req: Request<Incoming>,
    method: &Method,
    rest: &[&str],
) -> ApiResult<Response<Body>> {
    let q = query(&req);
    match (method, rest) {
        (&Method::POST, ["create"]) => {
            let b: CreateBody = read_json(req).await?.unwrap_or_default();
            match b.driver.as_deref().unwrap_or("") {
                "" | "local" => {}
                other => {
                    return Err(ApiError::NotFound(format!(
                        "error looking up volume plugin {other}: plugin \"{other}\" not found"
                    )));
                }
            }
            if b.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
                return Err(ApiError::BadRequest(
                    "the local driver of engined takes no options (type, device, o)".into(),
                ));
            }
            let name = b
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(crate::util::new_id);
            let labels = b.labels.unwrap_or_default().into_iter().collect();
            let m = create(d, &name, labels, BTreeMap::new(), None)?;
            Ok(json(StatusCode::CREATED, &body(d, &m, None)))
        }
        (&Method::GET, []) => {
            let f = Filters::parse(q.get("filters").map(String::as_str))?;
            f.only(&["dangling", "name", "label", "label!", "driver"])?;
            let mut vols = Vec::new();
            for m in list(d) {
                if matches(d, &m, &f)? {
                    vols.push(body(d, &m, None));
                }
            }
            Ok(json(
                StatusCode::OK,
                &json!({ "Volumes": vols, "Warnings": null }),
            ))
        }
        (&Method::POST, ["prune"]) => {
            let f = Filters::parse(q.get("filters").map(String::as_str))?;
            f.only(&["label", "label!", "all"])?;
            let mut deleted = Vec::new();
            let mut reclaimed = 0i64;
            for m in list(d) {
                let labels: HashMap<String, String> = m.labels.clone().into_iter().collect();
                if !f.labels_match(&labels) || !users(d, &m.name).is_empty() {
                    continue;
                }
                let (size, _) = usage(d, &m);
                match remove(d, &m.name, false) {
                    Ok(()) => {
                        reclaimed += size;
                        deleted.push(m.name.clone());
                    }
                    Err(e) => warn!(volume = %m.name, error = %e, "prune skipped a volume"),
                }
            }
            Ok(json(
                StatusCode::OK,
                &json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed }),
            ))
        }
        (&Method::GET, [name]) => {
            let m = load(d, name)
                .ok_or_else(|| ApiError::NotFound(format!("get {name}: no such volume")))?;
            Ok(json(StatusCode::OK, &body(d, &m, None)))
        }
        (&Method::DELETE, [name]) => {
            remove(d, name, truthy(&q, "force"))?;
            Ok(server::status(StatusCode::NO_CONTENT))
        }
        _ => Err(server::method_not_allowed(
            method,
            &format!("/volumes/{}", rest.join("/")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_dockerd_allows_them() {
        assert!(valid_name("vol1").is_ok());
        assert!(valid_name("a.b_c-d").is_ok());
        assert!(
            valid_name("a")
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
        assert!(valid_name("-x").is_err());
        assert!(valid_name("a/b").is_err());
        assert!(valid_name("..").is_err());
    }

    #[test]
    fn binds_split_into_uses() {
        let rec: Record = serde_json::from_value(json!({
            "id": "c1", "name": "n", "created": "", "image": "i", "image_id": "x",
            "chain_id": "", "path": "sh", "args": [], "log_path": "/l",
            "state": { "status": "created", "pid": 0, "exit_code": 0, "started_at": "",
                       "finished_at": "", "error": "" },
            "config": {},
            "host_config": {
                "Binds": ["vol1:/data/", "/host:/h:ro", "v2:/n:nocopy,ro"],
                "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}}]
            }
        }))
        .unwrap();
        let u = uses_of(&rec);
        assert_eq!(u.len(), 4);
        assert!(
            matches!(&u[0], Use::Named { name, destination, copy: true, .. }
            if name == "vol1" && destination == "/data")
        );
        assert!(matches!(&u[1], Use::Host { readonly: true, .. }));
        assert!(matches!(
            &u[2],
            Use::Named {
                copy: false,
                readonly: true,
                ..
            }
        ));
        assert!(
            matches!(&u[3], Use::Tmpfs { options, .. } if options.contains(&"size=1024".to_string()))
        );
    }
}
