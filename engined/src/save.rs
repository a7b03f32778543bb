//! `docker save`: images as one tar in Docker 25's hybrid layout, which both kinds
//! of loader read: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`
//! with the blobs exactly as the content store holds them) plus Docker's
//! `manifest.json` (whose `Config`/`Layers` paths point into `blobs/`) and
//! `repositories`. The tar is written as it is sent: headers come from the sizes the
//! content store reports, layer data is relayed chunk by chunk from containerd.

use std::collections::{BTreeMap, HashSet};

use bytes::{Bytes, BytesMut};
use containerd_client::services::v1::ReadContentRequest;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::ctrd::Ctrd;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::images::{self, ImageInfo, MT_OCI_INDEX};
use crate::reference;
use crate::server::{Body, percent_decode};

/// Every value of a repeated query parameter (`names=a&names=b`), decoded.
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .collect()
}

/// What one tar entry holds.
#[derive(Debug)]
enum Entry {
    Dir(String),
    File(String, Bytes),
    /// A blob relayed from the content store: path, digest, size.
    Blob(String, String, u64),
}

/// One image to save and the names (full, containerd form) it is saved under.
#[derive(Debug)]
struct Selected {
    info: ImageInfo,
    names: Vec<String>,
}

/// Resolves the names as `docker save` does: a repository without a tag means every
/// tag of it, an id means the image without names; the same image named twice is
/// saved once with both names.
async fn select(d: &Daemon, names: &[String]) -> ApiResult<Vec<Selected>> {
    let mut out: Vec<Selected> = Vec::new();
    let mut add = |info: ImageInfo, name: Option<String>| {
        let pos = match out.iter().position(|s| s.info.id == info.id) {
            Some(p) => p,
            None => {
                out.push(Selected {
                    info,
                    names: Vec::new(),
                });
                out.len() - 1
            }
        };
        if let Some(n) = name
            && !out[pos].names.contains(&n)
        {
            out[pos].names.push(n);
        }
    };
    for name in names {
        let not_found = || ApiError::NotFound(format!("No such image: {name}"));
        let full = reference::normalize(name);
        let (repo, tag) = reference::split_tag(name);
        if tag.is_none() && reference::is_valid(repo) {
            let tagged = d.images.tagged_in(reference::split_tag(&full).0).await;
            if !tagged.is_empty() {
                for (n, info) in tagged {
                    add(info, Some(n));
                }
                continue;
            }
        }
        let info = d.images.lookup(name).await.ok_or_else(not_found)?;
        let by_name = info.names.contains(&full) && !full.contains('@');
        add(info, by_name.then_some(full));
    }
    Ok(out)
}

fn blob_path(digest: &str) -> String {
    let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    format!("blobs/{alg}/{hex}")
}

/// Plans the archive (reading manifests and configs, checking that every layer is in
/// the content store) so that nothing can fail for want of data once the 200 is out.
async fn plan(d: &Daemon, selected: &[Selected]) -> ApiResult<Vec<Entry>> {
    let mut blobs: Vec<Entry> = Vec::new();
    let mut seen = HashSet::new();
    let mut index_manifests = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in selected {
        let info = &s.info;
        let manifest_bytes = d.images.read_blob(&info.manifest.digest).await?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| ApiError::Internal(format!("manifest {}: {e}", info.manifest.digest)))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or(&info.id)
            .to_string();
        let config_bytes = d.images.read_blob(&config_digest).await?;
        let layers: Vec<_> = manifest["layers"]
            .as_array()
            .map(|l| l.iter().map(images::descriptor_of).collect())
            .unwrap_or_default();
        for (digest, data) in [
            (info.manifest.digest.clone(), manifest_bytes.clone()),
            (config_digest.clone(), config_bytes),
        ] {
            if seen.insert(digest.clone()) {
                blobs.push(Entry::File(blob_path(&digest), Bytes::from(data)));
            }
        }
        for l in &layers {
            if !seen.insert(l.digest.clone()) {
                continue;
            }
            let size = d.images.blob_size(&l.digest).await?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "layer {} of image {} is not in the content store",
                    l.digest,
                    info.short_id()
                ))
            })?;
            blobs.push(Entry::Blob(
                blob_path(&l.digest),
                l.digest.clone(),
                size.max(0) as u64,
            ));
        }
        let desc = json!({
            "mediaType": if info.manifest.media_type.is_empty() {
                manifest["mediaType"].as_str().unwrap_or(images::MT_OCI_MANIFEST).to_string()
            } else {
                info.manifest.media_type.clone()
            },
            "digest": info.manifest.digest,
            "size": manifest_bytes.len(),
        });
        if s.names.is_empty() {
            index_manifests.push(desc.clone());
        }
        let mut repo_tags = Vec::new();
        for full in &s.names {
            let (repo, tag) = reference::split_tag(full);
            let tag = tag.unwrap_or("latest");
            let mut d = desc.clone();
            d["annotations"] = json!({
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": tag,
            });
            index_manifests.push(d);
            repo_tags.push(reference::familiar(full));
            // Docker's legacy loaders followed this to the top layer's directory;
            // today's loaders read manifest.json instead.
            if let Some(top) = layers.last() {
                repositories
                    .entry(reference::familiar(repo))
                    .or_default()
                    .insert(
                        tag.to_string(),
                        top.digest.trim_start_matches("sha256:").to_string(),
                    );
            }
        }
        docker_manifest.push(json!({
            "Config": blob_path(&config_digest),
            "RepoTags": if repo_tags.is_empty() { Value::Null } else { json!(repo_tags) },
            "Layers": layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    let encode = |v: &Value| -> ApiResult<Bytes> {
        serde_json::to_vec(v)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("encode: {e}")))
    };
    let mut entries = vec![
        Entry::Dir("blobs/".into()),
        Entry::Dir("blobs/sha256/".into()),
    ];
    entries.extend(blobs);
    entries.push(Entry::File(
        "index.json".into(),
        encode(&json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": index_manifests,
        }))?,
    ));
    entries.push(Entry::File(
        "manifest.json".into(),
        encode(&json!(docker_manifest))?,
    ));
    entries.push(Entry::File(
        "oci-layout".into(),
        Bytes::from_static(br#"{"imageLayoutVersion":"1.0.0"}"#),
    ));
    if !repositories.is_empty() {
        entries.push(Entry::File(
            "repositories".into(),
            encode(&json!(repositories))?,
        ));
    }
    Ok(entries)
}

/// `GET /images/get?names=...` and `GET /images/{name}/get`.
pub async fn save(d: &Daemon, names: &[String]) -> ApiResult<Response<Body>> {
    if names.is_empty() {
        return Err(ApiError::BadRequest("no image names given".into()));
    }
    let selected = select(d, names).await?;
    let entries = plan(d, &selected).await?;
    // A few chunks in flight per client: memory stays bounded whatever the image size.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let ctrd = d.ctrd.clone();
    tokio::spawn(async move {
        match write_tar(&ctrd, entries, &tx).await {
            Ok(()) => {}
            Err(Abort::ClientGone) => debug!("save: the client went away"),
            Err(Abort::Failed(e)) => {
                warn!(error = %e, "save failed mid-stream");
                // The client sees a broken transfer, not a short but valid tar.
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map(Frame::data)),
    );
    let mut r = Response::new(BodyExt::boxed(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

#[derive(Debug)]
enum Abort {
    ClientGone,
    Failed(std::io::Error),
}

async fn send(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, b: Bytes) -> Result<(), Abort> {
    tx.send(Ok(b)).await.map_err(|_| Abort::ClientGone)
}

fn failed(msg: String) -> Abort {
    Abort::Failed(std::io::Error::other(msg))
}

/// A ustar header: root-owned, mtime 0, so the same images give the same bytes.
fn header(path: &str, size: u64, dir: bool) -> Result<[u8; 512], Abort> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| failed(format!("tar path {path}: {e}")))?;
    h.set_size(size);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    Ok(*h.as_bytes())
}

fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

async fn write_tar(
    ctrd: &Ctrd,
    entries: Vec<Entry>,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), Abort> {
    for e in entries {
        match e {
            Entry::Dir(path) => {
                send(tx, Bytes::copy_from_slice(&header(&path, 0, true)?)).await?;
            }
            Entry::File(path, data) => {
                let size = data.len() as u64;
                let mut b = BytesMut::with_capacity(512 + data.len() + 512);
                b.extend_from_slice(&header(&path, size, false)?);
                b.extend_from_slice(&data);
                b.extend_from_slice(&[0u8; 512][..padding(size)]);
                send(tx, b.freeze()).await?;
            }
            Entry::Blob(path, digest, size) => {
                send(tx, Bytes::copy_from_slice(&header(&path, size, false)?)).await?;
                let mut stream = ctrd
                    .content()
                    .read(ctrd.req(ReadContentRequest {
                        digest: digest.clone(),
                        offset: 0,
                        size: 0,
                    }))
                    .await
                    .map_err(|s| failed(format!("read {digest}: {}", s.message())))?
                    .into_inner();
                let mut sent = 0u64;
                while let Some(chunk) = stream
                    .message()
                    .await
                    .map_err(|s| failed(format!("read {digest}: {}", s.message())))?
                {
                    sent += chunk.data.len() as u64;
                    if sent > size {
                        return Err(failed(format!("{digest} is longer than its {size} bytes")));
                    }
                    send(tx, Bytes::from(chunk.data)).await?;
                }
                if sent != size {
                    return Err(failed(format!(
                        "{digest}: the content store sent {sent} of {size} bytes"
                    )));
                }
                let pad = padding(size);
                if pad > 0 {
                    send(tx, Bytes::from(vec![0u8; pad])).await?;
                }
            }
        }
    }
    // The end-of-archive marker: two zero blocks.
    send(tx, Bytes::from(vec![0u8; 1024])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_values() {
        let q = Some("names=busybox&names=me%2Fapp%3Av1&quiet=1&names=");
        assert_eq!(
            query_values(q, "names"),
            vec!["busybox".to_string(), "me/app:v1".into(), String::new()]
        );
        assert!(query_values(None, "names").is_empty());
        assert_eq!(
            query_values(Some("changes=CMD+%5B%22a%22%5D"), "changes"),
            vec![r#"CMD ["a"]"#.to_string()]
        );
    }

    #[test]
    fn tar_headers_are_valid_ustar() {
        let h = header("blobs/sha256/abc", 1000, false).unwrap();
        let parsed = tar::Header::from_byte_slice(&h);
        assert_eq!(parsed.path().unwrap().to_str(), Some("blobs/sha256/abc"));
        assert_eq!(parsed.size().unwrap(), 1000);
        assert_eq!(parsed.entry_type(), tar::EntryType::Regular);
        assert_eq!(padding(1000), 24);
        assert_eq!(padding(1024), 0);
        assert_eq!(padding(0), 0);
    }
}
