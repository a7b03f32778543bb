use containerd_grpc::containerd::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use containerd_grpc::containerd::services::namespaces::v1::*;
use tonic::{Request, Response, Status};

use super::{Shared, blocking, validate_namespace};
use crate::convert::{to_btree, to_hash, update_labels};
use crate::filters::{Adaptor, Filter, label_field};

#[derive(Debug)]
pub struct NamespacesService(pub Shared);

fn to_api(n: metadata::Namespace) -> Namespace {
    Namespace {
        labels: to_hash(&n.labels),
        name: n.name,
    }
}

impl Adaptor for Namespace {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" => Some(self.name.clone()),
            "labels" => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl namespaces_server::Namespaces for NamespacesService {
    async fn get(
        &self,
        req: Request<GetNamespaceRequest>,
    ) -> Result<Response<GetNamespaceResponse>, Status> {
        let d = self.0.clone();
        let name = req.into_inner().name;
        let n = blocking(move || Ok(d.db.get_namespace(&name)?)).await?;
        Ok(Response::new(GetNamespaceResponse {
            namespace: Some(to_api(n)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListNamespacesRequest>,
    ) -> Result<Response<ListNamespacesResponse>, Status> {
        let filter = Filter::parse_all(&[req.into_inner().filter])?;
        let d = self.0.clone();
        let all = blocking(move || Ok(d.db.list_namespaces()?)).await?;
        Ok(Response::new(ListNamespacesResponse {
            namespaces: all
                .into_iter()
                .map(to_api)
                .filter(|n| filter.matches(n))
                .collect(),
        }))
    }

    async fn create(
        &self,
        req: Request<CreateNamespaceRequest>,
    ) -> Result<Response<CreateNamespaceResponse>, Status> {
        let n = req
            .into_inner()
            .namespace
            .ok_or_else(|| Status::invalid_argument("namespace is required"))?;
        validate_namespace(&n.name)?;
        let d = self.0.clone();
        let created =
            blocking(move || Ok(d.db.create_namespace(&n.name, to_btree(n.labels))?)).await?;
        self.0.events.publish(
            &created.name,
            "/namespaces/create",
            &NamespaceCreate {
                name: created.name.clone(),
                labels: to_hash(&created.labels),
            },
        );
        Ok(Response::new(CreateNamespaceResponse {
            namespace: Some(to_api(created)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateNamespaceRequest>,
    ) -> Result<Response<UpdateNamespaceResponse>, Status> {
        let req = req.into_inner();
        let n = req
            .namespace
            .ok_or_else(|| Status::invalid_argument("namespace is required"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let d = self.0.clone();
        let updated = blocking(move || {
            let mut labels = match d.db.get_namespace(&n.name) {
                Ok(cur) => cur.labels,
                Err(metadata::MetaError::NotFound(_)) => Default::default(),
                Err(e) => return Err(e.into()),
            };
            let rest = update_labels(&mut labels, &to_btree(n.labels), &paths);
            if let Some(p) = rest.first() {
                return Err(crate::LiteError::InvalidArgument(format!(
                    "cannot update {p:?} field on namespace {}",
                    n.name
                )));
            }
            Ok(d.db.set_namespace_labels(&n.name, labels)?)
        })
        .await?;
        self.0.events.publish(
            &updated.name,
            "/namespaces/update",
            &NamespaceUpdate {
                name: updated.name.clone(),
                labels: to_hash(&updated.labels),
            },
        );
        Ok(Response::new(UpdateNamespaceResponse {
            namespace: Some(to_api(updated)),
        }))
    }

    async fn delete(&self, req: Request<DeleteNamespaceRequest>) -> Result<Response<()>, Status> {
        let name = req.into_inner().name;
        let d = self.0.clone();
        let n = name.clone();
        blocking(move || Ok(d.db.delete_namespace(&n)?)).await?;
        self.0.events.publish(
            &name,
            "/namespaces/delete",
            &NamespaceDelete { name: name.clone() },
        );
        Ok(Response::new(()))
    }
}
