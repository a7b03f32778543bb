//! The connection to containerd (real containerd 1.6 or containerd-lite): one tonic
//! channel, every request tagged with our namespace (and, while importing, a lease so
//! that containerd's garbage collector leaves half-made images alone).

use std::path::Path;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    events_client::EventsClient, images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::tonic::{self, Request, metadata::MetadataValue, transport::Channel};

/// `containerd.runc.v1.Options`, the runc shim's runtime options; only the fields we
/// set are declared (protobuf skips the others).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuncOptions {
    #[prost(string, tag = "6")]
    pub binary_name: String,
    #[prost(string, tag = "7")]
    pub root: String,
}

pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
pub const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
pub const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

#[derive(Debug, Clone)]
pub struct Ctrd {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
    pub snapshotter: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to containerd at {path}: {source}")]
    Transport {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("invalid containerd namespace {0:?}")]
    Namespace(String),
}

impl Ctrd {
    pub async fn connect(
        path: &Path,
        namespace: &str,
        snapshotter: &str,
    ) -> Result<Self, ConnectError> {
        let channel =
            containerd_client::connect(path)
                .await
                .map_err(|source| ConnectError::Transport {
                    path: path.display().to_string(),
                    source,
                })?;
        let namespace = namespace
            .parse()
            .map_err(|_| ConnectError::Namespace(namespace.to_string()))?;
        Ok(Self {
            channel,
            namespace,
            snapshotter: snapshotter.to_string(),
        })
    }

    pub fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        r
    }

    /// A request that also carries `containerd-lease: <lease>`.
    pub fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = lease.parse() {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }
    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
    pub fn version(&self) -> VersionClient<Channel> {
        VersionClient::new(self.channel.clone())
    }
}
