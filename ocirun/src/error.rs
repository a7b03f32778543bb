use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An error raised inside a container process (bootstrap or init) and carried back to
/// the parent over the channel, so the caller sees which setup stage failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct ChildError {
    pub stage: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    AlreadyExists(String),
    #[error(transparent)]
    InvalidId(#[from] common::InvalidId),
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("cannot {op} container {id}: it is {status}")]
    WrongState {
        op: &'static str,
        id: String,
        status: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error("container init: {0}")]
    Child(#[from] ChildError),
    #[error("channel to the container process: {0}")]
    Channel(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{kind} hook #{index} {path}: {reason}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    #[error("{0}")]
    Other(String),
    /// Any failure of `exec`: runc reports these as `exec failed: ...` with exit code
    /// 255, which is what callers that wrap runc see (containerd and dockerd map the
    /// message, not the code).
    #[error("exec failed")]
    ExecFailed(#[source] Box<OciError>),
}

pub type Result<T> = std::result::Result<T, OciError>;

impl OciError {
    /// The exit code ocirun ends with when a command fails with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            OciError::ExecFailed(_) => 255,
            _ => 1,
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        OciError::Sys {
            op: op.into(),
            source,
        }
    }
}

impl common::HasKind for OciError {
    fn kind(&self) -> common::ErrorKind {
        use common::ErrorKind as K;
        match self {
            OciError::NotFound(_) => K::NotFound,
            OciError::AlreadyExists(_) => K::AlreadyExists,
            OciError::InvalidId(_)
            | OciError::Bundle { .. }
            | OciError::Config { .. }
            | OciError::InvalidConfig(_)
            | OciError::InvalidSignal(_) => K::InvalidArgument,
            OciError::WrongState { .. } => K::FailedPrecondition,
            OciError::Unsupported(_) => K::FailedPrecondition,
            OciError::ExecFailed(e) => e.kind(),
            _ => K::Internal,
        }
    }
}
