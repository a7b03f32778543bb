//! Plain types and helpers that cross crate boundaries. No async runtime and no
//! unsafe code here, so every layer (including the single-threaded `ocirun`) can use it.
#![forbid(unsafe_code)]

pub mod atomic;
pub mod id;
pub mod time;

pub use atomic::atomic_write;
pub use id::{ContainerId, InvalidId};
pub use time::rfc3339_nanos;

/// The broad class of an error, shared by all layers so that each maps to gRPC codes
/// and HTTP statuses in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    FailedPrecondition,
    Unavailable,
    Internal,
}

/// Implemented by every crate's error type.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
}
