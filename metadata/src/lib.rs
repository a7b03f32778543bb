//! containerd-lite's metadata store: namespaces, images, containers, snapshots, leases
//! and content labels, in one database, plus garbage collection.
//!
//! Why [redb]: it is ACID with serializable write transactions, keeps everything in a
//! single file, is pure Rust (no C toolchain, no bindings), and commits by
//! copy-on-write with a checksummed, fsync'd commit slot, so a `kill -9` or power loss
//! at any instant leaves the last committed state and never a torn one. That is the
//! same contract containerd gets from bbolt. Every mutation below is one write
//! transaction; records are postcard-encoded serde structs under `ns\0name` keys so a
//! namespace is one key range.
#![forbid(unsafe_code)]

mod gc;
mod types;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use common::{ErrorKind, HasKind};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use gc::{GcReport, SnapshotRef};
pub use types::*;

type Def = TableDefinition<'static, &'static str, &'static [u8]>;
const NAMESPACES: Def = TableDefinition::new("namespaces");
const IMAGES: Def = TableDefinition::new("images");
const CONTAINERS: Def = TableDefinition::new("containers");
/// Key `snapshotter\0ns\0key`.
const SNAPSHOTS: Def = TableDefinition::new("snapshots");
const LEASES: Def = TableDefinition::new("leases");
/// Key `ns\0digest`.
const CONTENT: Def = TableDefinition::new("content");
const COUNTERS: TableDefinition<'static, &'static str, u64> = TableDefinition::new("counters");

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("record {key}: {source}")]
    Codec {
        key: String,
        #[source]
        source: postcard::Error,
    },
    #[error("content: {0}")]
    Content(#[from] content::ContentError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HasKind for MetaError {
    fn kind(&self) -> ErrorKind {
        match self {
            MetaError::NotFound(_) => ErrorKind::NotFound,
            MetaError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            MetaError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            MetaError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            MetaError::Content(e) => e.kind(),
            MetaError::Db(_) | MetaError::Codec { .. } | MetaError::Io { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self { MetaError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Joins key parts; names are validated to hold no NUL, so keys cannot collide.
pub(crate) fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') {
        return Err(MetaError::InvalidArgument(format!(
            "invalid {what} name {name:?}"
        )));
    }
    Ok(())
}

pub(crate) fn decode<V: DeserializeOwned>(k: &str, bytes: &[u8]) -> Result<V> {
    postcard::from_bytes(bytes).map_err(|source| MetaError::Codec {
        key: k.replace('\0', "/"),
        source,
    })
}

fn encode<V: Serialize>(k: &str, v: &V) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|source| MetaError::Codec {
        key: k.replace('\0', "/"),
        source,
    })
}

pub(crate) fn tget<V: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    k: &str,
) -> Result<Option<V>> {
    match t.get(k)? {
        Some(g) => Ok(Some(decode(k, g.value())?)),
        None => Ok(None),
    }
}

/// Every record whose key starts with `prefix` (pass `ns\0` for one namespace).
pub(crate) fn tscan<V: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, V)>> {
    let mut out = Vec::new();
    for item in t.range(prefix..)? {
        let (k, v) = item?;
        let k = k.value();
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_string(), decode(k, v.value())?));
    }
    Ok(out)
}

/// Whether any key starts with `prefix`, without decoding values.
fn tany(t: &impl ReadableTable<&'static str, &'static [u8]>, prefix: &str) -> Result<bool> {
    match t.range(prefix..)?.next() {
        Some(item) => Ok(item?.0.value().starts_with(prefix)),
        None => Ok(false),
    }
}

pub(crate) fn tput<V: Serialize>(tx: &WriteTransaction, def: Def, k: &str, v: &V) -> Result<()> {
    let bytes = encode(k, v)?;
    tx.open_table(def)?.insert(k, bytes.as_slice())?;
    Ok(())
}

fn ensure_namespace(tx: &WriteTransaction, ns: &str) -> Result<()> {
    check_name("namespace", ns)?;
    let mut t = tx.open_table(NAMESPACES)?;
    if t.get(ns)?.is_none() {
        let rec = Namespace {
            name: ns.to_string(),
            labels: Labels::new(),
        };
        let bytes = encode(ns, &rec)?;
        t.insert(ns, bytes.as_slice())?;
    }
    Ok(())
}

/// The database. Cheap to share behind an `Arc`; redb serialises writers and lets
/// readers run alongside them on a snapshot.
#[derive(Debug)]
pub struct Db {
    db: Database,
}

/// How long opening waits for another process to release the database.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Db {
    pub fn open(path: &Path) -> Result<Arc<Db>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MetaError::Io {
                context: dir.display().to_string(),
                source,
            })?;
        }
        // A daemon that is on its way out (SIGTERM, then a new one started at once)
        // still holds the file lock for a moment: wait for it rather than fail.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match Database::create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        // Create every table once so readers never meet a missing one.
        let tx = db.begin_write()?;
        for def in [NAMESPACES, IMAGES, CONTAINERS, SNAPSHOTS, LEASES, CONTENT] {
            tx.open_table(def)?;
        }
        tx.open_table(COUNTERS)?;
        tx.commit()?;
        Ok(Arc::new(Db { db }))
    }

    /// Runs `f` in one write transaction, committed only when it returns Ok; on error
    /// (or a panic, or the process dying) nothing of it is visible.
    pub fn update<R>(&self, f: impl FnOnce(&WriteTransaction) -> Result<R>) -> Result<R> {
        let tx = self.db.begin_write()?;
        match f(&tx) {
            Ok(r) => {
                tx.commit()?;
                Ok(r)
            }
            Err(e) => {
                tx.abort()?;
                Err(e)
            }
        }
    }

    fn read_table<R>(
        &self,
        def: Def,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<R>,
    ) -> Result<R> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def)?;
        f(&t)
    }

    // --- namespaces ---

    pub fn create_namespace(&self, name: &str, labels: Labels) -> Result<Namespace> {
        check_name("namespace", name)?;
        self.update(|tx| {
            if tget::<Namespace>(&tx.open_table(NAMESPACES)?, name)?.is_some() {
                return Err(MetaError::AlreadyExists(format!("namespace {name}")));
            }
            let rec = Namespace {
                name: name.to_string(),
                labels,
            };
            tput(tx, NAMESPACES, name, &rec)?;
            Ok(rec)
        })
    }

    pub fn get_namespace(&self, name: &str) -> Result<Namespace> {
        self.read_table(NAMESPACES, |t| tget(t, name))?
            .ok_or_else(|| MetaError::NotFound(format!("namespace {name}")))
    }

    pub fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        Ok(self
            .read_table(NAMESPACES, |t| tscan::<Namespace>(t, ""))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub fn set_namespace_labels(&self, name: &str, labels: Labels) -> Result<Namespace> {
        self.update(|tx| {
            ensure_namespace(tx, name)?;
            let mut rec: Namespace = tget(&tx.open_table(NAMESPACES)?, name)?
                .ok_or_else(|| MetaError::NotFound(format!("namespace {name}")))?;
            rec.labels = labels;
            tput(tx, NAMESPACES, name, &rec)?;
            Ok(rec)
        })
    }

    /// Refused while anything lives in the namespace, as containerd does.
    pub fn delete_namespace(&self, name: &str) -> Result<()> {
        self.update(|tx| {
            let prefix = key(&[name, ""]);
            for (what, def) in [
                ("images", IMAGES),
                ("containers", CONTAINERS),
                ("leases", LEASES),
                ("content", CONTENT),
            ] {
                if tany(&tx.open_table(def)?, &prefix)? {
                    return Err(MetaError::FailedPrecondition(format!(
                        "namespace {name} must be empty, but it still has {what}"
                    )));
                }
            }
            let mut in_use = false;
            for item in tx.open_table(SNAPSHOTS)?.iter()? {
                let (k, _) = item?;
                in_use |= k.value().split('\0').nth(1) == Some(name);
            }
            if in_use {
                return Err(MetaError::FailedPrecondition(format!(
                    "namespace {name} must be empty, but it still has snapshots"
                )));
            }
            if tx.open_table(NAMESPACES)?.remove(name)?.is_none() {
                return Err(MetaError::NotFound(format!("namespace {name}")));
            }
            Ok(())
        })
    }

    // --- images ---

    pub fn create_image(&self, ns: &str, mut image: Image) -> Result<Image> {
        check_name("image", &image.name)?;
        self.update(|tx| {
            ensure_namespace(tx, ns)?;
            let k = key(&[ns, &image.name]);
            if tget::<Image>(&tx.open_table(IMAGES)?, &k)?.is_some() {
                return Err(MetaError::AlreadyExists(format!("image {}", image.name)));
            }
            let now = SystemTime::now();
            image.created_at = now;
            image.updated_at = now;
            tput(tx, IMAGES, &k, &image)?;
            Ok(image)
        })
    }

    /// Creates or replaces (keeping `created_at`), as an import does.
    pub fn put_image(&self, ns: &str, mut image: Image) -> Result<Image> {
        check_name("image", &image.name)?;
        self.update(|tx| {
            ensure_namespace(tx, ns)?;
            let k = key(&[ns, &image.name]);
            let now = SystemTime::now();
            image.created_at = tget::<Image>(&tx.open_table(IMAGES)?, &k)?
                .map(|old| old.created_at)
                .unwrap_or(now);
            image.updated_at = now;
            tput(tx, IMAGES, &k, &image)?;
            Ok(image)
        })
    }

    pub fn get_image(&self, ns: &str, name: &str) -> Result<Image> {
        self.read_table(IMAGES, |t| tget(t, &key(&[ns, name])))?
            .ok_or_else(|| MetaError::NotFound(format!("image {name}")))
    }

    pub fn list_images(&self, ns: &str) -> Result<Vec<Image>> {
        Ok(self
            .read_table(IMAGES, |t| tscan::<Image>(t, &key(&[ns, ""])))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Applies `f` to the stored image in one transaction (containerd's field-path
    /// updates are expressed by the caller in `f`).
    pub fn update_image(&self, ns: &str, name: &str, f: impl FnOnce(&mut Image)) -> Result<Image> {
        self.update(|tx| {
            let k = key(&[ns, name]);
            let mut img: Image = tget(&tx.open_table(IMAGES)?, &k)?
                .ok_or_else(|| MetaError::NotFound(format!("image {name}")))?;
            f(&mut img);
            if img.name != name {
                return Err(MetaError::InvalidArgument(
                    "image name cannot change".into(),
                ));
            }
            img.updated_at = SystemTime::now();
            tput(tx, IMAGES, &k, &img)?;
            Ok(img)
        })
    }

    pub fn delete_image(&self, ns: &str, name: &str) -> Result<()> {
        self.remove(IMAGES, &key(&[ns, name]), || format!("image {name}"))
    }

    fn remove(&self, def: Def, k: &str, what: impl FnOnce() -> String) -> Result<()> {
        self.update(|tx| {
            if tx.open_table(def)?.remove(k)?.is_none() {
                return Err(MetaError::NotFound(what()));
            }
            Ok(())
        })
    }

    // --- containers ---

    pub fn create_container(&self, ns: &str, mut c: Container) -> Result<Container> {
        check_name("container", &c.id)?;
        if c.runtime.name.is_empty() {
            return Err(MetaError::InvalidArgument(format!(
                "container {}: runtime name is required",
                c.id
            )));
        }
        self.update(|tx| {
            ensure_namespace(tx, ns)?;
            let k = key(&[ns, &c.id]);
            if tget::<Container>(&tx.open_table(CONTAINERS)?, &k)?.is_some() {
                return Err(MetaError::AlreadyExists(format!("container {}", c.id)));
            }
            let now = SystemTime::now();
            c.created_at = now;
            c.updated_at = now;
            tput(tx, CONTAINERS, &k, &c)?;
            Ok(c)
        })
    }

    pub fn get_container(&self, ns: &str, id: &str) -> Result<Container> {
        self.read_table(CONTAINERS, |t| tget(t, &key(&[ns, id])))?
            .ok_or_else(|| MetaError::NotFound(format!("container {id}")))
    }

    pub fn list_containers(&self, ns: &str) -> Result<Vec<Container>> {
        Ok(self
            .read_table(CONTAINERS, |t| tscan::<Container>(t, &key(&[ns, ""])))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub fn update_container(
        &self,
        ns: &str,
        id: &str,
        f: impl FnOnce(&mut Container),
    ) -> Result<Container> {
        self.update(|tx| {
            let k = key(&[ns, id]);
            let mut c: Container = tget(&tx.open_table(CONTAINERS)?, &k)?
                .ok_or_else(|| MetaError::NotFound(format!("container {id}")))?;
            let (created, snapshotter, key_) =
                (c.created_at, c.snapshotter.clone(), c.snapshot_key.clone());
            f(&mut c);
            if c.id != id {
                return Err(MetaError::InvalidArgument(
                    "container id cannot change".into(),
                ));
            }
            // containerd refuses these too: the rootfs cannot move under a container.
            if c.snapshotter != snapshotter || c.snapshot_key != key_ {
                return Err(MetaError::InvalidArgument(format!(
                    "container {id}: snapshotter and snapshot key cannot change"
                )));
            }
            c.created_at = created;
            c.updated_at = SystemTime::now();
            tput(tx, CONTAINERS, &k, &c)?;
            Ok(c)
        })
    }

    pub fn delete_container(&self, ns: &str, id: &str) -> Result<()> {
        self.remove(CONTAINERS, &key(&[ns, id]), || format!("container {id}"))
    }

    // --- leases ---

    pub fn create_lease(&self, ns: &str, id: &str, labels: Labels) -> Result<Lease> {
        check_name("lease", id)?;
        self.update(|tx| {
            ensure_namespace(tx, ns)?;
            let k = key(&[ns, id]);
            if tget::<Lease>(&tx.open_table(LEASES)?, &k)?.is_some() {
                return Err(MetaError::AlreadyExists(format!("lease {id}")));
            }
            let lease = Lease {
                id: id.to_string(),
                labels,
                created_at: SystemTime::now(),
                resources: Vec::new(),
            };
            tput(tx, LEASES, &k, &lease)?;
            Ok(lease)
        })
    }

    pub fn get_lease(&self, ns: &str, id: &str) -> Result<Lease> {
        self.read_table(LEASES, |t| tget(t, &key(&[ns, id])))?
            .ok_or_else(|| MetaError::NotFound(format!("lease {id}")))
    }

    pub fn list_leases(&self, ns: &str) -> Result<Vec<Lease>> {
        Ok(self
            .read_table(LEASES, |t| tscan::<Lease>(t, &key(&[ns, ""])))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub fn delete_lease(&self, ns: &str, id: &str) -> Result<()> {
        self.remove(LEASES, &key(&[ns, id]), || format!("lease {id}"))
    }

    pub fn add_lease_resource(&self, ns: &str, id: &str, r: LeaseResource) -> Result<()> {
        self.update(|tx| {
            let k = key(&[ns, id]);
            let mut lease: Lease = tget(&tx.open_table(LEASES)?, &k)?
                .ok_or_else(|| MetaError::NotFound(format!("lease {id}")))?;
            if !lease.resources.contains(&r) {
                lease.resources.push(r);
                lease.resources.sort();
            }
            tput(tx, LEASES, &k, &lease)
        })
    }

    pub fn delete_lease_resource(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<()> {
        self.update(|tx| {
            let k = key(&[ns, id]);
            let mut lease: Lease = tget(&tx.open_table(LEASES)?, &k)?
                .ok_or_else(|| MetaError::NotFound(format!("lease {id}")))?;
            lease.resources.retain(|x| x != r);
            tput(tx, LEASES, &k, &lease)
        })
    }

    // --- content records ---

    pub fn get_content(&self, ns: &str, digest: &str) -> Result<Option<ContentRecord>> {
        self.read_table(CONTENT, |t| tget(t, &key(&[ns, digest])))
    }

    pub fn list_content(&self, ns: &str) -> Result<Vec<(String, ContentRecord)>> {
        let prefix = key(&[ns, ""]);
        Ok(self
            .read_table(CONTENT, |t| tscan::<ContentRecord>(t, &prefix))?
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect())
    }

    pub fn set_content_labels(&self, ns: &str, digest: &str, labels: Labels) -> Result<()> {
        self.update(|tx| {
            ensure_namespace(tx, ns)?;
            let k = key(&[ns, digest]);
            let now = SystemTime::now();
            let created_at = tget::<ContentRecord>(&tx.open_table(CONTENT)?, &k)?
                .map(|r| r.created_at)
                .unwrap_or(now);
            let rec = ContentRecord {
                labels,
                created_at,
                updated_at: now,
            };
            tput(tx, CONTENT, &k, &rec)
        })
    }

    pub fn remove_content(&self, ns: &str, digest: &str) -> Result<()> {
        self.update(|tx| {
            tx.open_table(CONTENT)?
                .remove(key(&[ns, digest]).as_str())?;
            Ok(())
        })
    }

    /// A content store whose labels live in this database under `ns`.
    pub fn content_store(self: &Arc<Self>, root: &Path, ns: &str) -> Result<content::Store> {
        check_name("namespace", ns)?;
        Ok(content::Store::with_labels(
            root,
            Arc::new(ContentLabels {
                db: Arc::clone(self),
                ns: ns.to_string(),
            }),
        )?)
    }

    // --- snapshots (used by the snapshots crate) ---

    pub fn get_snapshot(&self, snapshotter: &str, ns: &str, k: &str) -> Result<Option<Snapshot>> {
        self.read_table(SNAPSHOTS, |t| tget(t, &key(&[snapshotter, ns, k])))
    }

    pub fn list_snapshots(&self, snapshotter: &str, ns: &str) -> Result<Vec<Snapshot>> {
        Ok(self
            .read_table(SNAPSHOTS, |t| {
                tscan::<Snapshot>(t, &key(&[snapshotter, ns, ""]))
            })?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Ids of every snapshot of `snapshotter` in any namespace (its directories on disk
    /// not in this set are garbage).
    pub fn snapshot_ids(&self, snapshotter: &str) -> Result<std::collections::BTreeSet<u64>> {
        Ok(self
            .read_table(SNAPSHOTS, |t| {
                tscan::<Snapshot>(t, &key(&[snapshotter, ""]))
            })?
            .into_iter()
            .map(|(_, v)| v.id)
            .collect())
    }
}

/// Helpers for a snapshotter's transactions (`Db::update`).
pub mod snapshot_tx {
    use super::*;

    pub fn get(
        tx: &WriteTransaction,
        snapshotter: &str,
        ns: &str,
        k: &str,
    ) -> Result<Option<Snapshot>> {
        tget(&tx.open_table(SNAPSHOTS)?, &key(&[snapshotter, ns, k]))
    }

    pub fn put(tx: &WriteTransaction, snapshotter: &str, ns: &str, s: &Snapshot) -> Result<()> {
        check_name("snapshot key", &s.key)?;
        ensure_namespace(tx, ns)?;
        tput(tx, SNAPSHOTS, &key(&[snapshotter, ns, &s.key]), s)
    }

    pub fn remove(tx: &WriteTransaction, snapshotter: &str, ns: &str, k: &str) -> Result<()> {
        tx.open_table(SNAPSHOTS)?
            .remove(key(&[snapshotter, ns, k]).as_str())?;
        Ok(())
    }

    /// Keys of the snapshots whose parent is `k`.
    pub fn children(
        tx: &WriteTransaction,
        snapshotter: &str,
        ns: &str,
        k: &str,
    ) -> Result<Vec<String>> {
        Ok(
            tscan::<Snapshot>(&tx.open_table(SNAPSHOTS)?, &key(&[snapshotter, ns, ""]))?
                .into_iter()
                .filter(|(_, s)| s.parent.as_deref() == Some(k))
                .map(|(_, s)| s.key)
                .collect(),
        )
    }

    /// A fresh id for a snapshot directory; never reused, even after a crash, since the
    /// counter commits with the record that uses it.
    pub fn next_id(tx: &WriteTransaction, snapshotter: &str) -> Result<u64> {
        let mut t = tx.open_table(COUNTERS)?;
        let name = format!("snapshots/{snapshotter}");
        let next = t.get(name.as_str())?.map(|g| g.value()).unwrap_or(0) + 1;
        t.insert(name.as_str(), next)?;
        Ok(next)
    }
}

#[derive(Debug)]
struct ContentLabels {
    db: Arc<Db>,
    ns: String,
}

impl content::LabelStore for ContentLabels {
    fn get(&self, digest: &content::Digest) -> Result<content::Labels, content::ContentError> {
        self.db
            .get_content(&self.ns, digest.as_str())
            .map(|r| r.map(|r| r.labels).unwrap_or_default())
            .map_err(|e| content::ContentError::Labels(e.to_string()))
    }
    fn set(
        &self,
        digest: &content::Digest,
        labels: &content::Labels,
    ) -> Result<(), content::ContentError> {
        self.db
            .set_content_labels(&self.ns, digest.as_str(), labels.clone())
            .map_err(|e| content::ContentError::Labels(e.to_string()))
    }
    fn remove(&self, digest: &content::Digest) -> Result<(), content::ContentError> {
        self.db
            .remove_content(&self.ns, digest.as_str())
            .map_err(|e| content::ContentError::Labels(e.to_string()))
    }
}
