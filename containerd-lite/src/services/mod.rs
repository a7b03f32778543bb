//! The gRPC services. Each holds the shared [`Daemon`]; storage calls (which fsync)
//! run on tokio's blocking pool so they never stall the reactor.
pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod version;

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::{DEFAULT_NAMESPACE, Daemon, LiteError};

pub const NAMESPACE_HEADER: &str = "containerd-namespace";
pub const LEASE_HEADER: &str = "containerd-lease";

/// The request's namespace, validated as containerd does (a DNS-label-like name).
pub fn namespace_of(md: &MetadataMap) -> Result<String, Status> {
    let ns = match md.get(NAMESPACE_HEADER) {
        Some(v) => v
            .to_str()
            .map_err(|_| Status::invalid_argument("namespace header is not ASCII"))?
            .to_string(),
        None => DEFAULT_NAMESPACE.to_string(),
    };
    validate_namespace(&ns)?;
    Ok(ns)
}

pub fn validate_namespace(ns: &str) -> Result<(), Status> {
    let ok = !ns.is_empty()
        && ns.len() <= 76
        && ns.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "namespace {ns:?}: invalid name (letters, digits, '-', '_' and '.'-separated labels)"
        )))
    }
}

pub fn ns<T>(req: &Request<T>) -> Result<String, Status> {
    namespace_of(req.metadata())
}

pub fn lease_of<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Runs storage work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LiteError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(Status::from)
}

/// Adds a resource to the request's lease, if it has one (containerd does this for
/// everything created under a lease).
pub fn add_to_lease(
    d: &Daemon,
    ns: &str,
    lease: Option<&str>,
    kind: &str,
    id: &str,
) -> Result<(), LiteError> {
    if let Some(lease) = lease {
        d.db.add_lease_resource(
            ns,
            lease,
            metadata::LeaseResource {
                id: id.to_string(),
                kind: kind.to_string(),
            },
        )?;
    }
    Ok(())
}

pub type Shared = Arc<Daemon>;

pub type BoxStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;
