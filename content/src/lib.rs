//! A content-addressed blob store laid out on disk as containerd's local store:
//!
//! ```text
//! <root>/blobs/sha256/<hex>          committed, read-only blobs
//! <root>/ingest/<sha256(ref)>/data   bytes written so far for an ingest ref
//!                            /ref, /startedat, /updatedat, /total
//! ```
//!
//! Writes go through an ingest named by a client-chosen ref, so an interrupted upload
//! resumes where it stopped (reopening the ref continues at the size of `data`). A
//! commit verifies size and digest, fsyncs, and renames into `blobs/` atomically, so a
//! crash leaves either no blob or a complete one. Labels are not kept here but in a
//! [`LabelStore`] (the metadata database), as containerd keeps them in its bolt DB.
#![forbid(unsafe_code)]

mod digest;
mod writer;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::{ErrorKind, HasKind};

pub use digest::Digest;
pub use writer::Writer;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content {0}: not found")]
    NotFound(String),
    #[error("content {0}: already exists")]
    AlreadyExists(String),
    /// Another writer holds the ref (containerd answers `Unavailable`).
    #[error("ref {0} locked: another writer is active")]
    Locked(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("labels: {0}")]
    Labels(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl HasKind for ContentError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContentError::NotFound(_) => ErrorKind::NotFound,
            ContentError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            ContentError::Locked(_) => ErrorKind::Unavailable,
            ContentError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ContentError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            ContentError::Labels(_) | ContentError::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ContentError {
    let context = context.into();
    move |source| ContentError::Io { context, source }
}

/// Where labels of blobs live. The metadata crate implements it over its database.
pub trait LabelStore: Send + Sync {
    fn get(&self, digest: &Digest) -> Result<Labels, ContentError>;
    fn set(&self, digest: &Digest, labels: &Labels) -> Result<(), ContentError>;
    fn remove(&self, digest: &Digest) -> Result<(), ContentError>;
}

/// Labels kept in memory only, for a store used without a database.
#[derive(Debug, Default)]
pub struct MemoryLabels(Mutex<BTreeMap<Digest, Labels>>);

impl LabelStore for MemoryLabels {
    fn get(&self, digest: &Digest) -> Result<Labels, ContentError> {
        let map = self
            .0
            .lock()
            .map_err(|_| ContentError::Labels("poisoned".into()))?;
        Ok(map.get(digest).cloned().unwrap_or_default())
    }
    fn set(&self, digest: &Digest, labels: &Labels) -> Result<(), ContentError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| ContentError::Labels("poisoned".into()))?;
        map.insert(digest.clone(), labels.clone());
        Ok(())
    }
    fn remove(&self, digest: &Digest) -> Result<(), ContentError> {
        let mut map = self
            .0
            .lock()
            .map_err(|_| ContentError::Labels("poisoned".into()))?;
        map.remove(digest);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: Digest,
    pub size: u64,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub labels: Labels,
}

/// The state of an ingest, as containerd's `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub reference: String,
    pub offset: u64,
    /// 0 when the writer did not announce a size.
    pub total: u64,
    pub started_at: SystemTime,
    pub updated_at: SystemTime,
}

pub struct Store {
    root: PathBuf,
    labels: Arc<dyn LabelStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Store {
    /// Opens (creating the directories) a store with in-memory labels.
    pub fn open(root: &Path) -> Result<Store, ContentError> {
        Store::with_labels(root, Arc::new(MemoryLabels::default()))
    }

    pub fn with_labels(root: &Path, labels: Arc<dyn LabelStore>) -> Result<Store, ContentError> {
        for d in ["blobs/sha256", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(p.display().to_string()))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            labels,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub(crate) fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.root
            .join("ingest")
            .join(Digest::of(reference.as_bytes()).hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn info(&self, digest: &Digest) -> Result<Info, ContentError> {
        let path = self.blob_path(digest);
        let md = match fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(digest.to_string()));
            }
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        };
        let modified = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(Info {
            digest: digest.clone(),
            size: md.len(),
            created_at: md.created().unwrap_or(modified),
            updated_at: modified,
            labels: self.labels.get(digest)?,
        })
    }

    /// Every committed blob, in digest order.
    pub fn list(&self) -> Result<Vec<Info>, ContentError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(dir.display().to_string()))? {
            let entry = entry.map_err(io_err(dir.display().to_string()))?;
            let name = entry.file_name();
            // Skip anything that is not a blob name (e.g. a temp file from a crash).
            let Ok(d) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                continue;
            };
            match self.info(&d) {
                Ok(info) => out.push(info),
                // Deleted between read_dir and stat.
                Err(ContentError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    pub fn reader(&self, digest: &Digest) -> Result<Reader, ContentError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(digest.to_string())
            } else {
                io_err(path.display().to_string())(e)
            }
        })?;
        let size = file
            .metadata()
            .map_err(io_err(path.display().to_string()))?
            .len();
        Ok(Reader { file, size })
    }

    pub fn read_all(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let r = self.reader(digest)?;
        let mut buf = vec![0u8; usize::try_from(r.size).unwrap_or(usize::MAX)];
        r.read_exact_at(&mut buf, 0)
            .map_err(io_err(format!("read {digest}")))?;
        Ok(buf)
    }

    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(digest.to_string()));
            }
            Err(e) => return Err(io_err(path.display().to_string())(e)),
        }
        self.labels.remove(digest)
    }

    /// Replaces the labels named in `fieldpaths` (`labels.KEY` or `labels`), or all of
    /// them when `fieldpaths` is empty, as containerd's Update does.
    pub fn update(
        &self,
        digest: &Digest,
        labels: &Labels,
        fieldpaths: &[String],
    ) -> Result<Info, ContentError> {
        let mut info = self.info(digest)?;
        if fieldpaths.is_empty() {
            info.labels = labels.clone();
        } else {
            for fp in fieldpaths {
                if fp == "labels" {
                    info.labels = labels.clone();
                } else if let Some(key) = fp.strip_prefix("labels.") {
                    match labels.get(key) {
                        Some(v) => info.labels.insert(key.to_string(), v.clone()),
                        None => info.labels.remove(key),
                    };
                } else {
                    return Err(ContentError::InvalidArgument(format!(
                        "cannot update {fp:?} on content {digest}"
                    )));
                }
            }
        }
        self.labels.set(digest, &info.labels)?;
        Ok(info)
    }

    pub fn status(&self, reference: &str) -> Result<Status, ContentError> {
        writer::read_status(&self.ingest_dir(reference)).map_err(|e| match e {
            ContentError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ContentError::NotFound(format!("ingest {reference}"))
            }
            e => e,
        })
    }

    pub fn list_statuses(&self) -> Result<Vec<Status>, ContentError> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(dir.display().to_string()))? {
            let entry = entry.map_err(io_err(dir.display().to_string()))?;
            // An ingest half-created or removed under us has no readable status.
            if let Ok(st) = writer::read_status(&entry.path()) {
                out.push(st);
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Opens the ingest `reference`, creating it or resuming it at its current size.
    /// Fails with [`ContentError::Locked`] while another writer holds it.
    pub fn writer(&self, reference: &str, total: u64) -> Result<Writer<'_>, ContentError> {
        Writer::open(self, reference, total)
    }

    /// Removes an ingest. A ref still held by a writer is refused.
    pub fn abort(&self, reference: &str) -> Result<(), ContentError> {
        let dir = self.ingest_dir(reference);
        if !dir.exists() {
            return Err(ContentError::NotFound(format!("ingest {reference}")));
        }
        // Taking the lock proves no writer is active; dropping it after removal is fine.
        let _lock = writer::lock_ingest(&dir, reference)?;
        fs::remove_dir_all(&dir).map_err(io_err(dir.display().to_string()))
    }

    /// Writes a whole blob in one go (used by importers), verifying its digest.
    /// Returns Ok also when the blob already existed.
    pub fn write_blob(
        &self,
        expected: &Digest,
        data: &[u8],
        labels: &Labels,
    ) -> Result<(), ContentError> {
        if self.exists(expected) {
            return self.merge_labels(expected, labels);
        }
        let reference = format!("write-blob-{expected}");
        let mut w = self.writer(&reference, data.len() as u64)?;
        let result = w
            .truncate(0)
            .and_then(|()| w.write(data))
            .and_then(|()| w.commit(data.len() as u64, Some(expected), labels));
        match result {
            Ok(_) | Err(ContentError::AlreadyExists(_)) => Ok(()),
            Err(e) => {
                // Nobody will resume a one-shot write: drop the bad bytes.
                let _ = self.abort(&reference);
                Err(e)
            }
        }
    }

    pub fn merge_labels(&self, digest: &Digest, labels: &Labels) -> Result<(), ContentError> {
        let mut current = self.labels.get(digest)?;
        current.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.labels.set(digest, &current)
    }

    pub(crate) fn label_store(&self) -> &dyn LabelStore {
        self.labels.as_ref()
    }
}

/// Random access to a committed blob (containerd's `ReaderAt`).
#[derive(Debug)]
pub struct Reader {
    file: File,
    size: u64,
}

impl Reader {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// The blob as a sequential stream from offset 0.
    pub fn into_file(self) -> File {
        self.file
    }
}
