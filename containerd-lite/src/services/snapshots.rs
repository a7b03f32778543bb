use containerd_grpc::containerd::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use containerd_grpc::containerd::services::snapshots::v1::*;
use tonic::{Request, Response, Status};

use super::{BoxStream, Shared, add_to_lease, blocking, lease_of, ns};
use crate::LiteError;
use crate::convert::{mount_to_api, to_btree, to_hash, ts, update_labels};
use crate::filters::{Adaptor, Filter, label_field};

#[derive(Debug)]
pub struct SnapshotsService(pub Shared);

fn info_to_api(i: snapshots::Info) -> Info {
    Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: match i.kind {
            snapshots::Kind::View => Kind::View,
            snapshots::Kind::Active => Kind::Active,
            snapshots::Kind::Committed => Kind::Committed,
        } as i32,
        created_at: ts(i.created_at),
        updated_at: ts(i.updated_at),
        labels: to_hash(&i.labels),
    }
}

impl Adaptor for Info {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" => Some(self.name.clone()),
            "parent" => Some(self.parent.clone()),
            "kind" => Kind::try_from(self.kind)
                .ok()
                .map(|k| k.as_str_name().to_lowercase()),
            "labels" => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

impl SnapshotsService {
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        ns: String,
        lease: Option<String>,
        snapshotter: String,
        key: String,
        parent: String,
        labels: std::collections::HashMap<String, String>,
        view: bool,
    ) -> Result<Vec<containerd_grpc::containerd::types::Mount>, Status> {
        let d = self.0.clone();
        let (n, k, p) = (ns.clone(), key.clone(), parent.clone());
        let sname = snapshotter.clone();
        let mounts = blocking(move || {
            let sn = d.snapshotter(&sname)?;
            let labels = to_btree(labels);
            let parent = (!p.is_empty()).then_some(p.as_str());
            // Leased first, so a collection running meanwhile keeps it.
            add_to_lease(
                &d,
                &n,
                lease.as_deref(),
                &format!("snapshots/{}", sn.name()),
                &k,
            )?;
            let mounts = if view {
                sn.view(&n, &k, parent, labels)?
            } else {
                sn.prepare(&n, &k, parent, labels)?
            };
            Ok(mounts)
        })
        .await?;
        self.0.events.publish(
            &ns,
            "/snapshot/prepare",
            &SnapshotPrepare {
                key,
                parent,
                snapshotter,
            },
        );
        Ok(mounts.iter().map(mount_to_api).collect())
    }
}

#[tonic::async_trait]
impl snapshots_server::Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        req: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let ns = ns(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let mounts = self
            .create(ns, lease, r.snapshotter, r.key, r.parent, r.labels, false)
            .await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        req: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let ns = ns(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let mounts = self
            .create(ns, lease, r.snapshotter, r.key, r.parent, r.labels, true)
            .await?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        req: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let d = self.0.clone();
        let mounts =
            blocking(move || Ok(d.snapshotter(&r.snapshotter)?.mounts(&ns, &r.key)?)).await?;
        Ok(Response::new(MountsResponse {
            mounts: mounts.iter().map(mount_to_api).collect(),
        }))
    }

    async fn commit(&self, req: Request<CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let d = self.0.clone();
        let n = ns.clone();
        let (name, key, sname) = (r.name.clone(), r.key.clone(), r.snapshotter.clone());
        blocking(move || {
            let sn = d.snapshotter(&r.snapshotter)?;
            add_to_lease(
                &d,
                &n,
                lease.as_deref(),
                &format!("snapshots/{}", sn.name()),
                &r.name,
            )?;
            sn.commit(&n, &r.name, &r.key, to_btree(r.labels))?;
            Ok(())
        })
        .await?;
        self.0.events.publish(
            &ns,
            "/snapshot/commit",
            &SnapshotCommit {
                key,
                name,
                snapshotter: sname,
            },
        );
        Ok(Response::new(()))
    }

    async fn remove(&self, req: Request<RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let d = self.0.clone();
        let n = ns.clone();
        let (key, sname) = (r.key.clone(), r.snapshotter.clone());
        blocking(move || Ok(d.snapshotter(&r.snapshotter)?.remove(&n, &r.key)?)).await?;
        self.0.events.publish(
            &ns,
            "/snapshot/remove",
            &SnapshotRemove {
                key,
                snapshotter: sname,
            },
        );
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let d = self.0.clone();
        let info = blocking(move || Ok(d.snapshotter(&r.snapshotter)?.stat(&ns, &r.key)?)).await?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info_to_api(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("info is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let d = self.0.clone();
        let updated = blocking(move || {
            let sn = d.snapshotter(&r.snapshotter)?;
            let mut labels = sn.stat(&ns, &info.name)?.labels;
            let rest = update_labels(&mut labels, &to_btree(info.labels), &paths);
            if let Some(p) = rest.first() {
                return Err(LiteError::InvalidArgument(format!(
                    "cannot update {p:?} field on snapshot {}",
                    info.name
                )));
            }
            Ok(sn.update_labels(&ns, &info.name, labels)?)
        })
        .await?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info_to_api(updated)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<BoxStream<ListSnapshotsResponse>>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let filter = Filter::parse_all(&r.filters)?;
        let d = self.0.clone();
        let all = blocking(move || Ok(d.snapshotter(&r.snapshotter)?.list(&ns)?)).await?;
        let infos: Vec<Info> = all
            .into_iter()
            .map(info_to_api)
            .filter(|i| filter.matches(i))
            .collect();
        let chunks: Vec<Result<ListSnapshotsResponse, Status>> = infos
            .chunks(100)
            .map(|c| Ok(ListSnapshotsResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn usage(&self, req: Request<UsageRequest>) -> Result<Response<UsageResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let d = self.0.clone();
        let u = blocking(move || Ok(d.snapshotter(&r.snapshotter)?.usage(&ns, &r.key)?)).await?;
        Ok(Response::new(UsageResponse {
            size: i64::try_from(u.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, req: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        let d = self.0.clone();
        blocking(move || {
            d.snapshotter(&r.snapshotter)?.cleanup()?;
            Ok(())
        })
        .await?;
        Ok(Response::new(()))
    }
}
