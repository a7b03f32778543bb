use containerd_grpc::containerd::services::images::v1::*;
use tonic::{Request, Response, Status};

use super::{Shared, blocking, ns};
use crate::convert::{
    descriptor_from_api, descriptor_to_api, to_btree, to_hash, ts, update_labels,
};
use crate::filters::{Adaptor, Filter, label_field};

#[derive(Debug)]
pub struct ImagesService(pub Shared);

pub fn to_api(i: &metadata::Image) -> Image {
    Image {
        name: i.name.clone(),
        labels: to_hash(&i.labels),
        target: Some(descriptor_to_api(&i.target)),
        created_at: ts(i.created_at),
        updated_at: ts(i.updated_at),
    }
}

fn from_api(i: Image) -> Result<metadata::Image, Status> {
    if i.name.is_empty() {
        return Err(Status::invalid_argument("image name is required"));
    }
    let target = i
        .target
        .ok_or_else(|| Status::invalid_argument(format!("image {}: target is required", i.name)))?;
    if target.digest.is_empty() || target.media_type.is_empty() {
        return Err(Status::invalid_argument(format!(
            "image {}: target needs a digest and a media type",
            i.name
        )));
    }
    Ok(metadata::Image {
        name: i.name,
        labels: to_btree(i.labels),
        target: descriptor_from_api(target),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    })
}

impl Adaptor for Image {
    fn field(&self, path: &[String]) -> Option<String> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let t = self.target.as_ref();
        match p.as_slice() {
            ["name"] => Some(self.name.clone()),
            ["target", "digest"] => t.map(|t| t.digest.clone()),
            ["target", "mediatype"] | ["target", "media_type"] => t.map(|t| t.media_type.clone()),
            ["labels", ..] => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl images_server::Images for ImagesService {
    async fn get(
        &self,
        req: Request<GetImageRequest>,
    ) -> Result<Response<GetImageResponse>, Status> {
        let ns = ns(&req)?;
        let name = req.into_inner().name;
        let d = self.0.clone();
        let img = blocking(move || Ok(d.db.get_image(&ns, &name)?)).await?;
        Ok(Response::new(GetImageResponse {
            image: Some(to_api(&img)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let ns = ns(&req)?;
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        let d = self.0.clone();
        let all = blocking(move || Ok(d.db.list_images(&ns)?)).await?;
        Ok(Response::new(ListImagesResponse {
            images: all
                .iter()
                .map(to_api)
                .filter(|i| filter.matches(i))
                .collect(),
        }))
    }

    async fn create(
        &self,
        req: Request<CreateImageRequest>,
    ) -> Result<Response<CreateImageResponse>, Status> {
        let ns = ns(&req)?;
        let img = from_api(
            req.into_inner()
                .image
                .ok_or_else(|| Status::invalid_argument("image is required"))?,
        )?;
        let d = self.0.clone();
        let n = ns.clone();
        let created = blocking(move || Ok(d.db.create_image(&n, img)?)).await?;
        self.0.events.publish(
            &ns,
            "/images/create",
            &ImageCreate {
                name: created.name.clone(),
                labels: to_hash(&created.labels),
            },
        );
        Ok(Response::new(CreateImageResponse {
            image: Some(to_api(&created)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateImageRequest>,
    ) -> Result<Response<UpdateImageResponse>, Status> {
        let ns = ns(&req)?;
        let req = req.into_inner();
        let img = req
            .image
            .ok_or_else(|| Status::invalid_argument("image is required"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        for p in &paths {
            let ok = p == "labels"
                || p.starts_with("labels.")
                || p == "target"
                || p == "annotations"
                || p.starts_with("annotations.");
            if !ok {
                return Err(Status::invalid_argument(format!(
                    "cannot update {p:?} field on image {}",
                    img.name
                )));
            }
        }
        let name = img.name.clone();
        let new_labels = to_btree(img.labels.clone());
        let new_target = img.target.clone().map(descriptor_from_api);
        if paths.is_empty() || paths.iter().any(|p| p == "target") {
            // A replaced target must be complete.
            from_api(img)?;
        }
        let d = self.0.clone();
        let n = ns.clone();
        let updated = blocking(move || {
            Ok(d.db.update_image(&n, &name, |cur| {
                update_labels(&mut cur.labels, &new_labels, &paths);
                if let Some(t) = &new_target {
                    if paths.is_empty() || paths.iter().any(|p| p == "target") {
                        cur.target = t.clone();
                    } else if paths.iter().any(|p| p == "annotations") {
                        cur.target.annotations = t.annotations.clone();
                    } else {
                        for p in &paths {
                            if let Some(k) = p.strip_prefix("annotations.") {
                                match t.annotations.get(k) {
                                    Some(v) => {
                                        cur.target.annotations.insert(k.to_string(), v.clone());
                                    }
                                    None => {
                                        cur.target.annotations.remove(k);
                                    }
                                }
                            }
                        }
                    }
                }
            })?)
        })
        .await?;
        self.0.events.publish(
            &ns,
            "/images/update",
            &ImageUpdate {
                name: updated.name.clone(),
                labels: to_hash(&updated.labels),
            },
        );
        Ok(Response::new(UpdateImageResponse {
            image: Some(to_api(&updated)),
        }))
    }

    async fn delete(&self, req: Request<DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let name = req.into_inner().name;
        let d = self.0.clone();
        let (n, nm) = (ns.clone(), name.clone());
        // Collected before answering even without `sync`: it is cheap at our scale
        // and a client that lists content next sees the result.
        blocking(move || {
            d.db.delete_image(&n, &nm)?;
            let report = d.collect_garbage()?;
            tracing::info!(image = %nm, blobs = report.content.len(), snapshots = report.snapshots.len(), "image deleted");
            Ok(())
        })
        .await?;
        self.0
            .events
            .publish(&ns, "/images/delete", &ImageDelete { name });
        Ok(Response::new(()))
    }
}
