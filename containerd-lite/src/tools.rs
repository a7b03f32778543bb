//! The subcommands that are not the daemon: offline import/export on a root (the
//! database is single-writer, so with the daemon running use `ctr images import`),
//! and `publish`, which forwards an event to a running daemon as containerd's
//! `publish` does for shims.
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use containerd_grpc::containerd::services::events::v1::{
    Envelope, ForwardRequest, events_client::EventsClient,
};
use containerd_grpc::prost::Message;
use containerd_grpc::prost_types::Any;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Daemon;
use crate::error::{LiteError, Result, io_err};
use crate::services::NAMESPACE_HEADER;

/// Imports a `docker save` or OCI-layout tar into namespace `ns`, unpacking into
/// `snapshotter` when given. Returns the image names.
pub fn import_file(
    d: &Daemon,
    ns: &str,
    file: &Path,
    snapshotter: Option<&str>,
) -> Result<Vec<String>> {
    let store = d.content(ns)?;
    let f = std::fs::File::open(file).map_err(io_err(file.display().to_string()))?;
    let images = unpack::import_archive(BufReader::new(f), &store, &d.db, ns)?;
    if let Some(sn) = snapshotter {
        let sn = d.snapshotter(sn)?;
        for img in &images {
            unpack::unpack_image(&d.db, &store, &sn, ns, &img.name)?;
        }
    }
    Ok(images.into_iter().map(|i| i.name).collect())
}

/// Writes images of namespace `ns` to an OCI-layout tar.
pub fn export_file(d: &Daemon, ns: &str, names: &[String], out: &Path) -> Result<()> {
    let store = d.content(ns)?;
    let f = std::fs::File::create(out).map_err(io_err(out.display().to_string()))?;
    unpack::export_oci(&store, &d.db, ns, names, BufWriter::new(f))?;
    Ok(())
}

/// A gRPC channel to a daemon's Unix socket.
pub async fn connect(address: &Path) -> Result<Channel> {
    let path = address.to_path_buf();
    // The URI is required by the API but unused: the connector ignores it.
    Endpoint::try_from("http://localhost")
        .map_err(|e| LiteError::InvalidArgument(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| LiteError::Unavailable(format!("connect {}: {e}", address.display())))
}

/// Reads a protobuf `Any` (the event) from `input` and forwards it, enveloped, to the
/// daemon at `address`.
pub async fn publish(
    address: &Path,
    namespace: &str,
    topic: &str,
    mut input: impl Read,
) -> Result<()> {
    let mut buf = Vec::new();
    input
        .read_to_end(&mut buf)
        .map_err(io_err("read event from stdin"))?;
    let event = Any::decode(buf.as_slice())
        .map_err(|e| LiteError::InvalidArgument(format!("stdin is not a protobuf Any: {e}")))?;
    let mut client = EventsClient::new(connect(address).await?);
    let mut req = tonic::Request::new(ForwardRequest {
        envelope: Some(Envelope {
            timestamp: crate::convert::now(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            event: Some(event),
        }),
    });
    req.metadata_mut().insert(
        NAMESPACE_HEADER,
        namespace
            .parse()
            .map_err(|_| LiteError::InvalidArgument(format!("namespace {namespace:?}")))?,
    );
    client
        .forward(req)
        .await
        .map_err(|s| LiteError::Unavailable(format!("forward: {}", s.message())))?;
    Ok(())
}
