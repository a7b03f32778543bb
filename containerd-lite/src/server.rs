//! Serving the API on a Unix socket until a signal (or the future passed in) ends it.
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use containerd_grpc::containerd::services::{
    containers::v1::containers_server::ContainersServer,
    content::v1::content_server::ContentServer, diff::v1::diff_server::DiffServer,
    events::v1::events_server::EventsServer, images::v1::images_server::ImagesServer,
    introspection::v1::introspection_server::IntrospectionServer,
    leases::v1::leases_server::LeasesServer, namespaces::v1::namespaces_server::NamespacesServer,
    snapshots::v1::snapshots_server::SnapshotsServer, tasks::v1::tasks_server::TasksServer,
    version::v1::version_server::VersionServer,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::Daemon;
use crate::error::{LiteError, Result, io_err};
use crate::services::{
    containers::ContainersService, content::ContentService, diff::DiffService,
    events::EventsService, images::ImagesService, introspection::IntrospectionService,
    leases::LeasesService, namespaces::NamespacesService, snapshots::SnapshotsService,
    tasks::TasksService, version::VersionService,
};

/// containerd's limit, so clients that send large messages to it work here too.
const MAX_MESSAGE: usize = 16 << 20;

/// Binds `address` (replacing a stale socket: a live server on it is refused).
pub fn bind(address: &Path) -> Result<UnixListener> {
    if let Some(dir) = address.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir.display().to_string()))?;
    }
    if address.exists() {
        if std::os::unix::net::UnixStream::connect(address).is_ok() {
            return Err(LiteError::Unavailable(format!(
                "{} is in use by a running server",
                address.display()
            )));
        }
        std::fs::remove_file(address).map_err(io_err(address.display().to_string()))?;
    }
    UnixListener::bind(address).map_err(io_err(format!("bind {}", address.display())))
}

pub async fn serve(
    daemon: Arc<Daemon>,
    tasks: Arc<crate::runtime::TaskManager>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    macro_rules! svc {
        ($server:ident, $inner:expr) => {
            $server::new($inner)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        };
    }
    let d = daemon;
    tonic::transport::Server::builder()
        .add_service(svc!(VersionServer, VersionService))
        .add_service(svc!(NamespacesServer, NamespacesService(d.clone())))
        .add_service(svc!(ContainersServer, ContainersService(d.clone())))
        .add_service(svc!(ContentServer, ContentService(d.clone())))
        .add_service(svc!(ImagesServer, ImagesService(d.clone())))
        .add_service(svc!(SnapshotsServer, SnapshotsService(d.clone())))
        .add_service(svc!(LeasesServer, LeasesService(d.clone())))
        .add_service(svc!(DiffServer, DiffService(d.clone())))
        .add_service(svc!(IntrospectionServer, IntrospectionService(d.clone())))
        .add_service(svc!(EventsServer, EventsService(d.clone())))
        .add_service(svc!(
            TasksServer,
            TasksService {
                daemon: d.clone(),
                tasks
            }
        ))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| LiteError::Unavailable(format!("grpc server: {e}")))
}
