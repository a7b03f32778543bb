//! containerd-lite: a daemon speaking a wire-compatible subset of containerd 1.6's
//! gRPC API over a Unix socket, backed by the workspace's storage crates:
//!
//! - `content`: blobs under `<root>/io.containerd.content.v1.content`, laid out as
//!   containerd's (so its tools and ours read the same tree);
//! - `metadata`: namespaces, images, containers, leases, snapshot and content records
//!   in one redb database, `<root>/io.containerd.metadata.v1.redb/meta.redb`;
//! - `snapshots`: `overlayfs` (when the root can mount it) and `native`, each under
//!   `<root>/io.containerd.snapshotter.v1.<name>`;
//! - `unpack`: layer application for Diff.Apply, and import/export/unpack helpers.
//!
//! Namespaces come from the `containerd-namespace` request header ("default" when
//! absent); a `containerd-lease` header adds what a request creates to that lease, as
//! containerd does, so garbage collection leaves a client's half-built image alone.
#![forbid(unsafe_code)]

pub mod config;
pub mod convert;
pub mod error;
pub mod events;
pub mod filters;
pub mod pull;
pub mod runtime;
pub mod server;
pub mod services;
pub mod tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metadata::Db;
use snapshots::{Driver, Snapshotter};

pub use config::Config;
pub use error::{LiteError, Result};

/// What every service shares.
#[derive(Debug)]
pub struct Daemon {
    pub root: PathBuf,
    pub state: PathBuf,
    pub db: Arc<Db>,
    pub content_root: PathBuf,
    pub snapshotters: BTreeMap<String, Arc<Snapshotter>>,
    pub events: events::Exchange,
    pub uuid: String,
    /// Serialises garbage collection with the operations that must not interleave
    /// with its sweep (Diff.Apply writing into a fresh snapshot, imports).
    pub gc_lock: tokio::sync::RwLock<()>,
}

pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

impl Daemon {
    /// Opens (creating) the stores under `root`.
    pub fn open(root: &Path, state: &Path) -> Result<Arc<Daemon>> {
        let _span = tracing::info_span!("daemon.open", root = %root.display()).entered();
        for d in [root, state] {
            std::fs::create_dir_all(d).map_err(error::io_err(d.display().to_string()))?;
        }
        let db = Db::open(&root.join("io.containerd.metadata.v1.redb/meta.redb"))?;
        let content_root = root.join("io.containerd.content.v1.content");
        // Creates the directories once, so request paths never race on them.
        content::Store::open(&content_root)?;
        let mut snapshotters = BTreeMap::new();
        let overlay_root = root.join("io.containerd.snapshotter.v1.overlayfs");
        if Snapshotter::overlay_supported(&overlay_root) {
            let sn = Snapshotter::new(Driver::Overlay, &overlay_root, Arc::clone(&db))?;
            snapshotters.insert("overlayfs".to_string(), Arc::new(sn));
        } else {
            tracing::warn!("overlayfs cannot be mounted under the root: only native snapshots");
        }
        let native_root = root.join("io.containerd.snapshotter.v1.native");
        let sn = Snapshotter::new(Driver::Native, &native_root, Arc::clone(&db))?;
        snapshotters.insert("native".to_string(), Arc::new(sn));
        let uuid = load_uuid(root)?;
        let daemon = Daemon {
            root: root.to_path_buf(),
            state: state.to_path_buf(),
            db,
            content_root,
            snapshotters,
            events: events::Exchange::new(),
            uuid,
            gc_lock: tokio::sync::RwLock::new(()),
        };
        // A crash can leave directories without records (and the reverse is what GC
        // is for): clean both at start-up.
        daemon.collect_garbage()?;
        Ok(Arc::new(daemon))
    }

    /// A content store whose labels (and presence) are those of namespace `ns`.
    pub fn content(&self, ns: &str) -> Result<content::Store> {
        Ok(self.db.content_store(&self.content_root, ns)?)
    }

    pub fn snapshotter(&self, name: &str) -> Result<Arc<Snapshotter>> {
        let name = if name.is_empty() {
            DEFAULT_SNAPSHOTTER
        } else {
            name
        };
        self.snapshotters.get(name).cloned().ok_or_else(|| {
            LiteError::NotFound(format!(
                "snapshotter {name} not loaded (available: {})",
                self.snapshotters
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Mark and sweep over all namespaces, then removes snapshot directories whose
    /// records went. Blocking: call from a blocking context.
    pub fn collect_garbage(&self) -> Result<metadata::GcReport> {
        let store = content::Store::open(&self.content_root)?;
        let report = self.db.garbage_collect(Some(&store))?;
        for sn in self.snapshotters.values() {
            sn.cleanup()?;
        }
        Ok(report)
    }
}

/// The server's identity, kept across restarts (Introspection.Server).
fn load_uuid(root: &Path) -> Result<String> {
    let path = root.join("uuid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 36 {
            return Ok(s.to_string());
        }
    }
    let mut b = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom").map_err(error::io_err("/dev/urandom"))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(error::io_err("/dev/urandom"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    common::atomic_write(&path, uuid.as_bytes(), 0o644)
        .map_err(error::io_err(path.display().to_string()))?;
    Ok(uuid)
}
