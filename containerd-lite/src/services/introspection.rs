use containerd_grpc::containerd::services::introspection::v1::*;
use containerd_grpc::containerd::types::Platform;
use containerd_grpc::google::rpc;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::filters::{Adaptor, Filter};

#[derive(Debug)]
pub struct IntrospectionService(pub Shared);

impl Adaptor for Plugin {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "type" => Some(self.r#type.clone()),
            "id" => Some(self.id.clone()),
            _ => None,
        }
    }
}

fn plugin(ty: &str, id: &str, requires: &[&str]) -> Plugin {
    Plugin {
        r#type: ty.to_string(),
        id: id.to_string(),
        requires: requires.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: String::new(),
    }
}

impl IntrospectionService {
    /// What this daemon serves, named as containerd names its plugins.
    fn plugins(&self) -> Vec<Plugin> {
        const GRPC: &str = "io.containerd.grpc.v1";
        let mut out = vec![
            plugin("io.containerd.content.v1", "content", &[]),
            plugin(
                "io.containerd.metadata.v1",
                "redb",
                &["io.containerd.content.v1", "io.containerd.snapshotter.v1"],
            ),
            plugin(
                "io.containerd.gc.v1",
                "scheduler",
                &["io.containerd.metadata.v1"],
            ),
            plugin(
                "io.containerd.differ.v1",
                "walking",
                &["io.containerd.metadata.v1"],
            ),
            plugin(
                "io.containerd.lease.v1",
                "manager",
                &["io.containerd.metadata.v1"],
            ),
            plugin("io.containerd.event.v1", "exchange", &[]),
        ];
        for name in self.0.snapshotters.keys() {
            let mut p = plugin("io.containerd.snapshotter.v1", name, &[]);
            p.platforms = vec![host_platform()];
            p.exports.insert(
                "root".into(),
                self.0
                    .root
                    .join(format!("io.containerd.snapshotter.v1.{name}"))
                    .display()
                    .to_string(),
            );
            out.push(p);
        }
        for id in [
            "containers",
            "content",
            "diff",
            "events",
            "images",
            "introspection",
            "leases",
            "namespaces",
            "snapshots",
            "version",
        ] {
            out.push(plugin(GRPC, id, &["io.containerd.metadata.v1"]));
        }
        let mut tasks = plugin(GRPC, "tasks", &["io.containerd.runtime.v2"]);
        tasks.init_err = Some(rpc::Status {
            code: tonic::Code::Unimplemented as i32,
            message: "tasks are not implemented yet (they need the shim v2 integration)".into(),
            details: Vec::new(),
        });
        out.push(tasks);
        out
    }
}

#[tonic::async_trait]
impl introspection_server::Introspection for IntrospectionService {
    async fn plugins(
        &self,
        req: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        Ok(Response::new(PluginsResponse {
            plugins: self
                .plugins()
                .into_iter()
                .filter(|p| filter.matches(p))
                .collect(),
        }))
    }

    async fn server(&self, _req: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(ServerResponse {
            uuid: self.0.uuid.clone(),
        }))
    }
}
