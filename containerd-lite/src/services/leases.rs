use containerd_grpc::containerd::services::leases::v1::*;
use tonic::{Request, Response, Status};

use super::{Shared, blocking, ns};
use crate::convert::{to_btree, to_hash, ts};
use crate::filters::{Adaptor, Filter, label_field};

#[derive(Debug)]
pub struct LeasesService(pub Shared);

fn to_api(l: &metadata::Lease) -> Lease {
    Lease {
        id: l.id.clone(),
        created_at: ts(l.created_at),
        labels: to_hash(&l.labels),
    }
}

impl Adaptor for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" => Some(self.id.clone()),
            "labels" => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

fn resource(r: Option<Resource>) -> Result<metadata::LeaseResource, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("resource is required"))?;
    let known =
        r.r#type == "content" || r.r#type == "ingests" || r.r#type.starts_with("snapshots/");
    if r.id.is_empty() || !known {
        return Err(Status::invalid_argument(format!(
            "resource {:?} of type {:?}: want an id and a type of content, ingests or snapshots/<snapshotter>",
            r.id, r.r#type
        )));
    }
    Ok(metadata::LeaseResource {
        id: r.id,
        kind: r.r#type,
    })
}

fn random_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("lease-{nanos:x}-{}", std::process::id())
}

#[tonic::async_trait]
impl leases_server::Leases for LeasesService {
    async fn create(
        &self,
        req: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let id = if r.id.is_empty() { random_id() } else { r.id };
        let d = self.0.clone();
        let lease = blocking(move || Ok(d.db.create_lease(&ns, &id, to_btree(r.labels))?)).await?;
        Ok(Response::new(CreateResponse {
            lease: Some(to_api(&lease)),
        }))
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let d = self.0.clone();
        blocking(move || {
            d.db.delete_lease(&ns, &r.id)?;
            // What it held is now only kept by other references.
            d.collect_garbage()?;
            Ok(())
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ns = ns(&req)?;
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        let d = self.0.clone();
        let all = blocking(move || Ok(d.db.list_leases(&ns)?)).await?;
        Ok(Response::new(ListResponse {
            leases: all
                .iter()
                .map(to_api)
                .filter(|l| filter.matches(l))
                .collect(),
        }))
    }

    async fn add_resource(&self, req: Request<AddResourceRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let res = resource(r.resource)?;
        let d = self.0.clone();
        blocking(move || Ok(d.db.add_lease_resource(&ns, &r.id, res)?)).await?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        req: Request<DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let res = resource(r.resource)?;
        let d = self.0.clone();
        blocking(move || Ok(d.db.delete_lease_resource(&ns, &r.id, &res)?)).await?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        req: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let ns = ns(&req)?;
        let id = req.into_inner().id;
        let d = self.0.clone();
        let lease = blocking(move || Ok(d.db.get_lease(&ns, &id)?)).await?;
        Ok(Response::new(ListResourcesResponse {
            resources: lease
                .resources
                .into_iter()
                .map(|r| Resource {
                    id: r.id,
                    r#type: r.kind,
                })
                .collect(),
        }))
    }
}
