//! Snapshotters laid out as containerd's: `<root>/snapshots/<id>/fs` holds a
//! snapshot's files (the overlay upperdir), `<root>/snapshots/<id>/work` the overlay
//! workdir. Records (key, parent, kind, labels, id) live in the metadata database, in
//! the same transaction discipline as everything else, so a crash leaves at worst a
//! directory without a record, which [`Snapshotter::cleanup`] removes.
//!
//! Two drivers: `overlayfs` (parents become lowerdirs, nothing is copied) and `native`
//! (every prepare copies its parent: slow, but works on any filesystem, including
//! where overlay cannot be mounted, e.g. on top of another overlay).
#![forbid(unsafe_code)]

mod copy;
mod mount;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use common::{ErrorKind, HasKind};
use metadata::{Db, Labels, MetaError, Snapshot, SnapshotKind, snapshot_tx};

pub use copy::{copy_dir, disk_usage};
pub use metadata::SnapshotKind as Kind;
pub use mount::{Mount, MountGuard, mount_all, unmount_all};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("snapshot {0}: not found")]
    NotFound(String),
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("mount {detail} on {target}: {source}")]
    Mount {
        target: String,
        detail: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HasKind for SnapshotError {
    fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Meta(e) => e.kind(),
            SnapshotError::NotFound(_) => ErrorKind::NotFound,
            SnapshotError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            SnapshotError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            SnapshotError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            SnapshotError::Mount { .. } | SnapshotError::Io { .. } => ErrorKind::Internal,
        }
    }
}

// The metadata closures return MetaError; carry our own errors through it.
impl From<SnapshotError> for MetaError {
    fn from(e: SnapshotError) -> MetaError {
        match e {
            SnapshotError::Meta(m) => m,
            SnapshotError::NotFound(s) => MetaError::NotFound(format!("snapshot {s}")),
            SnapshotError::AlreadyExists(s) => MetaError::AlreadyExists(format!("snapshot {s}")),
            SnapshotError::InvalidArgument(s) => MetaError::InvalidArgument(s),
            SnapshotError::FailedPrecondition(s) => MetaError::FailedPrecondition(s),
            other => MetaError::FailedPrecondition(other.to_string()),
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let context = context.into();
    move |source| SnapshotError::Io { context, source }
}

/// What `Stat` and `List` return (containerd's `snapshots.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub parent: Option<String>,
    pub kind: SnapshotKind,
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl From<&Snapshot> for Info {
    fn from(s: &Snapshot) -> Info {
        Info {
            name: s.key.clone(),
            parent: s.parent.clone(),
            kind: s.kind,
            labels: s.labels.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Overlay,
    Native,
}

/// How a layer applied straight into [`Snapshotter::apply_dir`] must express deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// The directory is an overlay upperdir above parents: deletions become 0/0 char
    /// devices and opaque directories get `trusted.overlay.opaque=y`.
    Overlay,
    /// The directory holds the full tree: delete for real.
    Delete,
}

#[derive(Debug)]
pub struct Snapshotter {
    name: String,
    root: PathBuf,
    db: Arc<Db>,
    driver: Driver,
}

impl Snapshotter {
    /// `root` is this snapshotter's directory (containerd uses
    /// `<root>/io.containerd.snapshotter.v1.overlayfs`).
    pub fn new(driver: Driver, root: &Path, db: Arc<Db>) -> Result<Snapshotter, SnapshotError> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        let name = match driver {
            Driver::Overlay => "overlayfs",
            Driver::Native => "native",
        };
        Ok(Snapshotter {
            name: name.to_string(),
            root: root.to_path_buf(),
            db,
            driver,
        })
    }

    /// Whether overlayfs can be mounted with upper and work dirs under `root`, by trying.
    pub fn overlay_supported(root: &Path) -> bool {
        let Ok(t) = tempdir_in(root) else {
            return false;
        };
        let (l, u, w, m) = (t.join("l"), t.join("u"), t.join("w"), t.join("m"));
        let ok = [&l, &u, &w, &m].iter().all(|d| fs::create_dir(d).is_ok())
            && Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", l.display()),
                    format!("upperdir={}", u.display()),
                    format!("workdir={}", w.display()),
                ],
            }
            .mount(&m)
            .is_ok();
        if ok {
            let _ = unmount_all(&m);
        }
        let _ = fs::remove_dir_all(&t);
        ok
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    fn get(&self, ns: &str, key: &str) -> Result<Snapshot, SnapshotError> {
        self.db
            .get_snapshot(&self.name, ns, key)?
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))
    }

    /// The ids of `parent` and its ancestors, nearest first.
    fn chain(&self, ns: &str, parent: Option<&str>) -> Result<Vec<u64>, SnapshotError> {
        let mut ids = Vec::new();
        let mut next = parent.map(String::from);
        while let Some(k) = next {
            let s = self.get(ns, &k)?;
            ids.push(s.id);
            next = s.parent;
        }
        Ok(ids)
    }

    pub fn prepare(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(ns, key, parent, labels, SnapshotKind::Active)
    }

    pub fn view(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<Mount>, SnapshotError> {
        self.create(ns, key, parent, labels, SnapshotKind::View)
    }

    fn create(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
        kind: SnapshotKind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let _span =
            tracing::info_span!("snapshot.create", snapshotter = %self.name, ns, key, ?kind)
                .entered();
        let parent = parent.filter(|p| !p.is_empty());
        let snap = self.db.update(|tx| {
            if snapshot_tx::get(tx, &self.name, ns, key)?.is_some() {
                return Err(SnapshotError::AlreadyExists(key.to_string()).into());
            }
            let parent_id = match parent {
                Some(p) => {
                    let ps = snapshot_tx::get(tx, &self.name, ns, p)?
                        .ok_or_else(|| SnapshotError::NotFound(format!("parent {p}")))?;
                    if ps.kind != SnapshotKind::Committed {
                        return Err(SnapshotError::InvalidArgument(format!(
                            "parent {p} is not committed"
                        ))
                        .into());
                    }
                    Some(ps.id)
                }
                None => None,
            };
            let id = snapshot_tx::next_id(tx, &self.name)?;
            let now = SystemTime::now();
            let snap = Snapshot {
                key: key.to_string(),
                id,
                parent: parent.map(String::from),
                kind,
                labels,
                created_at: now,
                updated_at: now,
                size: None,
                inodes: None,
            };
            // The directory comes before the record commits: a crash in between leaves
            // an orphan directory for cleanup(), never a record without its directory.
            let dir = self.dir(id);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(self.fs_dir(id)).map_err(io(dir.display().to_string()))?;
            if self.driver == Driver::Overlay && kind == SnapshotKind::Active {
                fs::create_dir(dir.join("work")).map_err(io(dir.display().to_string()))?;
            }
            if let (Driver::Native, Some(pid)) = (self.driver, parent_id) {
                copy_dir(&self.fs_dir(pid), &self.fs_dir(id))
                    .map_err(io(format!("copy snapshot {pid} to {id}")))?;
            }
            snapshot_tx::put(tx, &self.name, ns, &snap)?;
            Ok(snap)
        })?;
        self.mounts_of(ns, &snap)
    }

    pub fn mounts(&self, ns: &str, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let s = self.get(ns, key)?;
        if s.kind == SnapshotKind::Committed {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key} is committed: only active and view snapshots have mounts"
            )));
        }
        self.mounts_of(ns, &s)
    }

    fn mounts_of(&self, ns: &str, s: &Snapshot) -> Result<Vec<Mount>, SnapshotError> {
        let ro = s.kind == SnapshotKind::View;
        let bind = |dir: PathBuf| Mount {
            kind: "bind".into(),
            source: dir.display().to_string(),
            options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
        };
        if self.driver == Driver::Native {
            return Ok(vec![bind(self.fs_dir(s.id))]);
        }
        let parents = self.chain(ns, s.parent.as_deref())?;
        if parents.is_empty() {
            return Ok(vec![bind(self.fs_dir(s.id))]);
        }
        let lower = parents
            .iter()
            .map(|id| self.fs_dir(*id).display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        if ro {
            if parents.len() == 1 {
                return Ok(vec![bind(self.fs_dir(parents[0]))]);
            }
            // Overlay with lowerdirs only is read-only by construction.
            return Ok(vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={lower}")],
            }]);
        }
        Ok(vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                format!("workdir={}", self.dir(s.id).join("work").display()),
                format!("upperdir={}", self.fs_dir(s.id).display()),
                format!("lowerdir={lower}"),
            ],
        }])
    }

    /// The directory a diff applier writes an active snapshot's changes into, and how
    /// it must express deletions there.
    pub fn apply_dir(&self, ns: &str, key: &str) -> Result<(PathBuf, Whiteouts), SnapshotError> {
        let s = self.get(ns, key)?;
        if s.kind != SnapshotKind::Active {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key} is not active"
            )));
        }
        let mode = if self.driver == Driver::Overlay && s.parent.is_some() {
            Whiteouts::Overlay
        } else {
            Whiteouts::Delete
        };
        Ok((self.fs_dir(s.id), mode))
    }

    /// Turns the active snapshot `key` into the committed snapshot `name`; its files
    /// stay where they are, under the same id.
    pub fn commit(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        labels: Labels,
    ) -> Result<(), SnapshotError> {
        let _span = tracing::info_span!("snapshot.commit", snapshotter = %self.name, ns, name, key)
            .entered();
        let active = self.get(ns, key)?;
        if active.kind != SnapshotKind::Active {
            return Err(SnapshotError::FailedPrecondition(format!(
                "snapshot {key} is not active"
            )));
        }
        // Measured outside the transaction: the files of an active snapshot being
        // committed are no longer written to.
        let (size, inodes) =
            disk_usage(&self.fs_dir(active.id)).map_err(io(format!("usage of {key}")))?;
        self.db.update(|tx| {
            let a = snapshot_tx::get(tx, &self.name, ns, key)?
                .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            if a.id != active.id {
                return Err(
                    SnapshotError::FailedPrecondition(format!("snapshot {key} changed")).into(),
                );
            }
            if snapshot_tx::get(tx, &self.name, ns, name)?.is_some() {
                return Err(SnapshotError::AlreadyExists(name.to_string()).into());
            }
            snapshot_tx::remove(tx, &self.name, ns, key)?;
            let mut all = a.labels.clone();
            all.extend(labels);
            let now = SystemTime::now();
            snapshot_tx::put(
                tx,
                &self.name,
                ns,
                &Snapshot {
                    key: name.to_string(),
                    id: a.id,
                    parent: a.parent,
                    kind: SnapshotKind::Committed,
                    labels: all,
                    created_at: now,
                    updated_at: now,
                    size: Some(size),
                    inodes: Some(inodes),
                },
            )
        })?;
        let _ = fs::remove_dir_all(self.dir(active.id).join("work"));
        Ok(())
    }

    /// Removes a snapshot that no other snapshot has as parent.
    pub fn remove(&self, ns: &str, key: &str) -> Result<(), SnapshotError> {
        let _span =
            tracing::info_span!("snapshot.remove", snapshotter = %self.name, ns, key).entered();
        let id = self.db.update(|tx| {
            let s = snapshot_tx::get(tx, &self.name, ns, key)?
                .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            let children = snapshot_tx::children(tx, &self.name, ns, key)?;
            if !children.is_empty() {
                return Err(SnapshotError::FailedPrecondition(format!(
                    "cannot remove snapshot {key}: it is the parent of {}",
                    children.join(", ")
                ))
                .into());
            }
            snapshot_tx::remove(tx, &self.name, ns, key)?;
            Ok(s.id)
        })?;
        self.remove_dir(id)
    }

    fn remove_dir(&self, id: u64) -> Result<(), SnapshotError> {
        let dir = self.dir(id);
        // Renamed first so that a half-removed tree never looks like a snapshot.
        let doomed = self.root.join("snapshots").join(format!("rm-{id}"));
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io(doomed.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(dir.display().to_string())(e)),
        }
    }

    pub fn stat(&self, ns: &str, key: &str) -> Result<Info, SnapshotError> {
        Ok(Info::from(&self.get(ns, key)?))
    }

    pub fn list(&self, ns: &str) -> Result<Vec<Info>, SnapshotError> {
        Ok(self
            .db
            .list_snapshots(&self.name, ns)?
            .iter()
            .map(Info::from)
            .collect())
    }

    /// Replaces the labels (containerd's Update with `labels` field paths).
    pub fn update_labels(
        &self,
        ns: &str,
        key: &str,
        labels: Labels,
    ) -> Result<Info, SnapshotError> {
        let s = self.db.update(|tx| {
            let mut s = snapshot_tx::get(tx, &self.name, ns, key)?
                .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            s.labels = labels;
            s.updated_at = SystemTime::now();
            snapshot_tx::put(tx, &self.name, ns, &s)?;
            Ok(s)
        })?;
        Ok(Info::from(&s))
    }

    /// Committed snapshots report the usage measured at commit; active ones are walked.
    pub fn usage(&self, ns: &str, key: &str) -> Result<Usage, SnapshotError> {
        let s = self.get(ns, key)?;
        if let (Some(size), Some(inodes)) = (s.size, s.inodes) {
            return Ok(Usage { size, inodes });
        }
        let (size, inodes) =
            disk_usage(&self.fs_dir(s.id)).map_err(io(format!("usage of {key}")))?;
        Ok(Usage { size, inodes })
    }

    /// Removes directories that no record names (left by crashes, by GC dropping
    /// records, or by a removal interrupted half-way). Returns how many went.
    pub fn cleanup(&self) -> Result<usize, SnapshotError> {
        let ids = self.db.snapshot_ids(&self.name)?;
        let dir = self.root.join("snapshots");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io(dir.display().to_string()))? {
            let entry = entry.map_err(io(dir.display().to_string()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let keep = name.parse::<u64>().is_ok_and(|id| ids.contains(&id));
            if !keep {
                fs::remove_dir_all(entry.path()).map_err(io(entry.path().display().to_string()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn tempdir_in(root: &Path) -> std::io::Result<PathBuf> {
    fs::create_dir_all(root)?;
    let p = root.join(format!(".probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir(&p)?;
    Ok(p)
}
