use containerd_grpc::containerd::events::{
    ContainerCreate, ContainerDelete, ContainerUpdate, container_create,
};
use containerd_grpc::containerd::services::containers::v1::*;
use tonic::{Request, Response, Status};

use super::{BoxStream, Shared, blocking, ns};
use crate::convert::{any_from_api, any_to_api, to_btree, to_hash, ts, update_labels};
use crate::filters::{Adaptor, Filter, label_field};

#[derive(Debug)]
pub struct ContainersService(pub Shared);

pub fn to_api(c: &metadata::Container) -> Container {
    Container {
        id: c.id.clone(),
        labels: to_hash(&c.labels),
        image: c.image.clone(),
        runtime: Some(container::Runtime {
            name: c.runtime.name.clone(),
            options: c.runtime.options.as_ref().map(any_to_api),
        }),
        spec: c.spec.as_ref().map(any_to_api),
        snapshotter: c.snapshotter.clone(),
        snapshot_key: c.snapshot_key.clone(),
        created_at: ts(c.created_at),
        updated_at: ts(c.updated_at),
        extensions: c
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), any_to_api(v)))
            .collect(),
    }
}

fn from_api(c: Container) -> metadata::Container {
    let runtime = c.runtime.unwrap_or_default();
    metadata::Container {
        id: c.id,
        labels: to_btree(c.labels),
        image: c.image,
        runtime: metadata::Runtime {
            name: runtime.name,
            options: runtime.options.map(any_from_api),
        },
        spec: c.spec.map(any_from_api),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        sandbox: String::new(),
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_from_api(v)))
            .collect(),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    }
}

impl Adaptor for Container {
    fn field(&self, path: &[String]) -> Option<String> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["id"] => Some(self.id.clone()),
            ["image"] => Some(self.image.clone()),
            ["runtime", "name"] => self.runtime.as_ref().map(|r| r.name.clone()),
            ["snapshotter"] => Some(self.snapshotter.clone()),
            ["labels", ..] => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

impl ContainersService {
    async fn list_filtered(
        &self,
        ns: String,
        filters: Vec<String>,
    ) -> Result<Vec<Container>, Status> {
        let filter = Filter::parse_all(&filters)?;
        let d = self.0.clone();
        let all = blocking(move || Ok(d.db.list_containers(&ns)?)).await?;
        Ok(all
            .iter()
            .map(to_api)
            .filter(|c| filter.matches(c))
            .collect())
    }
}

#[tonic::async_trait]
impl containers_server::Containers for ContainersService {
    async fn get(
        &self,
        req: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let ns = ns(&req)?;
        let id = req.into_inner().id;
        let d = self.0.clone();
        let c = blocking(move || Ok(d.db.get_container(&ns, &id)?)).await?;
        Ok(Response::new(GetContainerResponse {
            container: Some(to_api(&c)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let ns = ns(&req)?;
        let containers = self.list_filtered(ns, req.into_inner().filters).await?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn list_stream(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<BoxStream<ListContainerMessage>>, Status> {
        let ns = ns(&req)?;
        let containers = self.list_filtered(ns, req.into_inner().filters).await?;
        let items = containers
            .into_iter()
            .map(|c| Ok(ListContainerMessage { container: Some(c) }));
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn create(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let ns = ns(&req)?;
        let c = req
            .into_inner()
            .container
            .ok_or_else(|| Status::invalid_argument("container is required"))?;
        let d = self.0.clone();
        let n = ns.clone();
        let created = blocking(move || Ok(d.db.create_container(&n, from_api(c))?)).await?;
        self.0.events.publish(
            &ns,
            "/containers/create",
            &ContainerCreate {
                id: created.id.clone(),
                image: created.image.clone(),
                runtime: Some(container_create::Runtime {
                    name: created.runtime.name.clone(),
                    options: created.runtime.options.as_ref().map(any_to_api),
                }),
            },
        );
        Ok(Response::new(CreateContainerResponse {
            container: Some(to_api(&created)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let ns = ns(&req)?;
        let req = req.into_inner();
        let c = req
            .container
            .ok_or_else(|| Status::invalid_argument("container is required"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        const FIELDS: [&str; 6] = [
            "image",
            "spec",
            "runtime",
            "snapshotkey",
            "snapshot_key",
            "extensions",
        ];
        if let Some(p) = paths.iter().find(|p| {
            !(FIELDS.contains(&p.as_str())
                || p.as_str() == "labels"
                || p.starts_with("labels.")
                || p.starts_with("extensions."))
        }) {
            return Err(Status::invalid_argument(format!(
                "cannot update {p:?} field on container {}",
                c.id
            )));
        }
        let new = from_api(c);
        let d = self.0.clone();
        let n = ns.clone();
        let updated = blocking(move || {
            let id = new.id.clone();
            let updated = d.db.update_container(&n, &id, |cur| {
                if paths.is_empty() {
                    // Everything mutable; snapshotter and key are checked by the db.
                    let (created, sn, key) = (
                        cur.created_at,
                        cur.snapshotter.clone(),
                        cur.snapshot_key.clone(),
                    );
                    *cur = new.clone();
                    cur.created_at = created;
                    if new.snapshotter.is_empty() {
                        cur.snapshotter = sn;
                    }
                    if new.snapshot_key.is_empty() {
                        cur.snapshot_key = key;
                    }
                    return;
                }
                for p in update_labels(&mut cur.labels, &new.labels, &paths) {
                    match p.as_str() {
                        "image" => cur.image = new.image.clone(),
                        "spec" => cur.spec = new.spec.clone(),
                        "runtime" => cur.runtime = new.runtime.clone(),
                        "snapshotkey" | "snapshot_key" => {
                            cur.snapshot_key = new.snapshot_key.clone()
                        }
                        "extensions" => cur.extensions = new.extensions.clone(),
                        other => {
                            if let Some(k) = other.strip_prefix("extensions.") {
                                match new.extensions.get(k) {
                                    Some(v) => {
                                        cur.extensions.insert(k.to_string(), v.clone());
                                    }
                                    None => {
                                        cur.extensions.remove(k);
                                    }
                                }
                            }
                        }
                    }
                }
            })?;
            Ok(updated)
        })
        .await?;
        self.0.events.publish(
            &ns,
            "/containers/update",
            &ContainerUpdate {
                id: updated.id.clone(),
                image: updated.image.clone(),
                labels: to_hash(&updated.labels),
                snapshot_key: updated.snapshot_key.clone(),
            },
        );
        Ok(Response::new(UpdateContainerResponse {
            container: Some(to_api(&updated)),
        }))
    }

    async fn delete(&self, req: Request<DeleteContainerRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let id = req.into_inner().id;
        let d = self.0.clone();
        let (n, i) = (ns.clone(), id.clone());
        blocking(move || {
            d.db.delete_container(&n, &i)?;
            // Its snapshot is no longer a root.
            d.collect_garbage()?;
            Ok(())
        })
        .await?;
        self.0
            .events
            .publish(&ns, "/containers/delete", &ContainerDelete { id });
        Ok(Response::new(()))
    }
}
