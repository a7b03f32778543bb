//! Errors of the daemon, and their gRPC status codes (containerd's errdefs mapping).
use common::{ErrorKind, HasKind};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum LiteError {
    #[error(transparent)]
    Meta(#[from] metadata::MetaError),
    #[error(transparent)]
    Content(#[from] content::ContentError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("config {path}: {detail}")]
    Config { path: String, detail: String },
    #[error("registry: {0}")]
    Registry(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = LiteError> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LiteError {
    let context = context.into();
    move |source| LiteError::Io { context, source }
}

impl HasKind for LiteError {
    fn kind(&self) -> ErrorKind {
        match self {
            LiteError::Meta(e) => e.kind(),
            LiteError::Content(e) => e.kind(),
            LiteError::Snapshot(e) => e.kind(),
            LiteError::Unpack(e) => e.kind(),
            LiteError::InvalidArgument(_) | LiteError::Config { .. } => ErrorKind::InvalidArgument,
            LiteError::NotFound(_) => ErrorKind::NotFound,
            LiteError::Unavailable(_) => ErrorKind::Unavailable,
            LiteError::Registry(_) | LiteError::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub(crate) fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<LiteError> for Status {
    fn from(e: LiteError) -> Status {
        Status::new(code(e.kind()), e.to_string())
    }
}
