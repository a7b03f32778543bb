use std::path::PathBuf;

/// Everything the shim can fail at; each maps to a ttrpc status code that
/// containerd turns back into its errdefs (NotFound, FailedPrecondition, ...).
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} is not implemented")]
    Unimplemented(&'static str),
    #[error("{binary} {action} failed: {message}")]
    Runtime {
        binary: String,
        action: String,
        message: String,
    },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("decoding {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: protobuf::Error,
    },
}

pub type Result<T> = std::result::Result<T, ShimError>;

impl ShimError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShimError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        ShimError::Sys {
            what,
            source: source.into(),
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        use ttrpc::Code;
        let code = match &e {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) | ShimError::Decode { .. } => Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Runtime { .. } | ShimError::Io { .. } | ShimError::Sys { .. } => {
                Code::UNKNOWN
            }
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}
