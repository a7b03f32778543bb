use containerd_grpc::containerd::services::version::v1::{VersionResponse, version_server};
use tonic::{Request, Response, Status};

/// What `ctr version` prints as the server version: the containerd API level we
/// speak, then our own version.
pub const VERSION: &str = concat!("1.6.0-lite+", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Default)]
pub struct VersionService;

#[tonic::async_trait]
impl version_server::Version for VersionService {
    async fn version(&self, _req: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: VERSION.to_string(),
            revision: "containerd-lite".to_string(),
        }))
    }
}
