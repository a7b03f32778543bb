//! Errors of the API, each with the HTTP status Docker gives it; the body is always
//! `{"message": ...}` as `application/json` (the CLI prints raw bodies otherwise).

use containerd_client::tonic::{Code, Status};
use hyper::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// 304: the operation had nothing to do (stop of a stopped container).
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    Internal(String),
    #[error("{context}: {status}", status = .source.message())]
    Containerd { context: String, source: Status },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotModified => StatusCode::NOT_MODIFIED,
            Self::Internal(_) | Self::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Containerd { source, .. } => match source.code() {
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
                Code::InvalidArgument => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    pub fn no_such_container(name: &str) -> Self {
        Self::NotFound(format!("No such container: {name}"))
    }
}

/// Adds context to containerd and io errors.
pub trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ApiError>;
}

impl<T> Context<T> for Result<T, Status> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|source| ApiError::Containerd {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|source| ApiError::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, jsonlog::LogError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::Internal(format!("{}: {e}", context())))
    }
}

impl<T> Context<T> for Result<T, nix::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::Io {
            context: context(),
            source: std::io::Error::from(e),
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
