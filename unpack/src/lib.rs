//! Turning image tars into content, image records and unpacked snapshots, and back.
//!
//! - [`apply`]: applies one layer (plain, gzip or zstd tar) onto a directory with OCI
//!   whiteouts, refusing anything that would write outside it.
//! - [`import`]: `docker save` tars and OCI image-layout tars into the content store
//!   and image records, labelled for garbage collection as containerd labels them.
//! - [`unpack_image`]: layers into snapshots chained by chain ID.
//! - [`export`]: images to an OCI image-layout tar.
#![forbid(unsafe_code)]

pub mod apply;
pub mod compression;
pub mod export;
pub mod import;
pub mod oci;
pub mod unpacker;

use common::{ErrorKind, HasKind};

pub use apply::{Applied, ApplyOptions, apply_layer};
pub use compression::{Compression, decompress};
pub use export::export_oci;
pub use import::{ImportedImage, import_archive, label_tree};
pub use unpacker::{chain_ids, resolve_manifest, unpack_image};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A layer entry that would land outside the target directory.
    #[error("layer entry {entry:?} refused: {reason}")]
    Escape { entry: String, reason: String },
    #[error("layer entry {0:?} refused: device nodes are not allowed here")]
    Device(String),
    #[error("invalid archive: {0}")]
    Invalid(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("layer {layer}: diff ID {got} does not match the config's {expected}")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        got: String,
    },
    #[error(transparent)]
    Content(#[from] content::ContentError),
    #[error(transparent)]
    Meta(#[from] metadata::MetaError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HasKind for UnpackError {
    fn kind(&self) -> ErrorKind {
        match self {
            UnpackError::Escape { .. } | UnpackError::Device(_) | UnpackError::Invalid(_) => {
                ErrorKind::InvalidArgument
            }
            UnpackError::NotFound(_) => ErrorKind::NotFound,
            UnpackError::DiffIdMismatch { .. } => ErrorKind::FailedPrecondition,
            UnpackError::Content(e) => e.kind(),
            UnpackError::Meta(e) => e.kind(),
            UnpackError::Snapshot(e) => e.kind(),
            UnpackError::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> UnpackError {
    let context = context.into();
    move |source| UnpackError::Io { context, source }
}
