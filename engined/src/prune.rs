//! `POST /containers/prune`, `POST /images/prune` and `GET /system/df`, with the
//! byte counts Docker gives: a container's size is its snapshot's own usage, an
//! image's the sum of its layers, shared where another image has the same layer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bollard_stubs::models::{ContainerSummary, ImageSummary};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tracing::warn;

use crate::daemon::Daemon;
use crate::error::ApiResult;
use crate::filters::Filters;
use crate::images::ImageInfo;
use crate::server::{Body, json, query};

fn filters(req: &Request<Incoming>) -> ApiResult<Filters> {
    Filters::parse(query(req).get("filters").map(String::as_str))
}

fn image_labels(i: &ImageInfo) -> HashMap<String, String> {
    i.config["config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /containers/prune?filters={"until":..,"label":..}`: every container that
/// is not running, with the bytes its writable layer held.
pub async fn containers(d: &Arc<Daemon>, req: &Request<Incoming>) -> ApiResult<Response<Body>> {
    let f = filters(req)?;
    f.only(&["until", "label", "label!"])?;
    let until = f.until()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0i64;
    for c in d.all() {
        let rec = c.record();
        if c.running() || rec.state.status == "restarting" {
            continue;
        }
        if until.is_some_and(|u| crate::util::unix_of(&rec.created) >= u)
            || !f.labels_match(&rec.config.labels.clone().unwrap_or_default())
        {
            continue;
        }
        let (rw, _) = d.sizes(&c).await;
        match d.remove(&c, false).await {
            Ok(()) => {
                reclaimed += rw;
                deleted.push(c.id.clone());
            }
            Err(e) => warn!(container_id = %c.id, error = %e, "prune skipped a container"),
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({ "ContainersDeleted": deleted, "SpaceReclaimed": reclaimed }),
    ))
}

/// The layers (digest → size) of some images.
fn layer_sizes<'a>(images: impl Iterator<Item = &'a ImageInfo>) -> HashMap<String, i64> {
    images
        .flat_map(|i| i.layers.iter().map(|l| (l.digest.clone(), l.size)))
        .collect()
}

/// `POST /images/prune?filters={"dangling":{"false":true},"until":..,"label":..}`:
/// untagged images (every image with `dangling=false`) that no container uses.
pub async fn images(d: &Arc<Daemon>, req: &Request<Incoming>) -> ApiResult<Response<Body>> {
    let f = filters(req)?;
    f.only(&["dangling", "until", "label", "label!"])?;
    let dangling_only = f.boolean("dangling")?.unwrap_or(true);
    let until = f.until()?;
    let all = d.images.list().await;
    let mut items: Vec<Value> = Vec::new();
    let mut gone: HashSet<String> = HashSet::new();
    for i in &all {
        if dangling_only && !i.repo_tags().is_empty() {
            continue;
        }
        if d.image_user(&i.id).is_some()
            || until.is_some_and(|u| i.created_unix() >= u)
            || !f.labels_match(&image_labels(i))
        {
            continue;
        }
        match d.images.remove(&i.id, true, |_| None).await {
            Ok(mut out) => {
                items.append(&mut out);
                gone.insert(i.id.clone());
            }
            Err(e) => warn!(image = %i.id, error = %e, "prune skipped an image"),
        }
    }
    let kept = layer_sizes(all.iter().filter(|i| !gone.contains(&i.id)));
    let reclaimed: i64 = layer_sizes(all.iter().filter(|i| gone.contains(&i.id)))
        .iter()
        .filter(|(digest, _)| !kept.contains_key(*digest))
        .map(|(_, size)| size)
        .sum();
    let deleted = if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    };
    Ok(json(
        StatusCode::OK,
        &json!({ "ImagesDeleted": deleted, "SpaceReclaimed": reclaimed }),
    ))
}

/// `GET /system/df`.
pub async fn df(d: &Arc<Daemon>) -> ApiResult<Response<Body>> {
    let images = d.images.list().await;
    let containers = d.all();
    let mut uses: HashMap<String, i64> = HashMap::new();
    for c in &containers {
        *uses.entry(c.record().image_id).or_default() += 1;
    }
    let mut layer_users: HashMap<&str, usize> = HashMap::new();
    for i in &images {
        let mut seen = HashSet::new();
        for l in &i.layers {
            if seen.insert(l.digest.as_str()) {
                *layer_users.entry(l.digest.as_str()).or_default() += 1;
            }
        }
    }
    let layers_size: i64 = layer_sizes(images.iter()).values().sum();
    let mut image_rows: Vec<ImageSummary> = images
        .iter()
        .map(|i| ImageSummary {
            id: i.id.clone(),
            parent_id: String::new(),
            repo_tags: i.repo_tags(),
            repo_digests: vec![],
            created: i.created_unix(),
            size: i.size,
            shared_size: i
                .layers
                .iter()
                .filter(|l| layer_users.get(l.digest.as_str()).copied().unwrap_or(0) > 1)
                .map(|l| l.size)
                .sum(),
            labels: image_labels(i),
            containers: uses.get(&i.id).copied().unwrap_or(0),
            ..Default::default()
        })
        .collect();
    image_rows.sort_by_key(|i| std::cmp::Reverse(i.created));
    let mut container_rows = Vec::new();
    for c in &containers {
        let (rw, root) = d.sizes(c).await;
        let r = c.record();
        let (state, status) = crate::api::status_text(c);
        let mut command = vec![r.path.clone()];
        command.extend(r.args.iter().cloned());
        container_rows.push(ContainerSummary {
            id: Some(r.id.clone()),
            names: Some(vec![format!("/{}", r.name)]),
            image: Some(r.image.clone()),
            image_id: Some(r.image_id.clone()),
            command: Some(command.join(" ")),
            created: Some(crate::util::unix_of(&r.created)),
            state: serde_json::from_value(json!(state)).ok(),
            status: Some(status),
            size_rw: Some(rw),
            size_root_fs: Some(root),
            labels: r.config.labels.clone(),
            mounts: Some(crate::volumes::mount_points(d, &r)),
            ..Default::default()
        });
    }
    container_rows.sort_by_key(|c| std::cmp::Reverse(c.created));
    Ok(json(
        StatusCode::OK,
        &json!({
            "LayersSize": layers_size,
            "Images": image_rows,
            "Containers": container_rows,
            "Volumes": crate::volumes::usage_bodies(d),
            "BuildCache": [],
            "BuilderSize": 0,
        }),
    ))
}
