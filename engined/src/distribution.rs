//! `docker pull`, `docker push` and `docker login` against a registry, with the
//! JSON-lines progress dockerd sends and the CLI renders (one line per layer that
//! it rewrites in place on a terminal). The protocol is the `registry` crate's
//! (oci-client, shared with containerd-lite); blobs go into and out of containerd's
//! content store as they stream ([`crate::images::ImageStore`]).
//!
//! What can fail before anything is sent (a manifest the registry does not know,
//! refused credentials) is an HTTP error, so that `docker run` reports it; what
//! fails later travels inside the stream as `{"errorDetail":{..},"error":..}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use registry::oci_client::errors::OciDistributionError;
use registry::oci_client::secrets::RegistryAuth;
use registry::oci_client::{Client, Reference};
use registry::{AuthConfig, Fetched};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};
use crate::images::{ImageInfo, chain_id, descriptor_of, digest_of};
use crate::reference;
use crate::server::{self, Body, channel_body, query, read_json};

/// Where progress lines go: the response body.
#[derive(Debug, Clone)]
struct Progress {
    tx: mpsc::Sender<Bytes>,
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

impl Progress {
    /// A line that matters (statuses, errors): waits for room. A client that went
    /// away is no reason to stop: the pull or push finishes for the next one.
    async fn send(&self, v: Value) {
        let _ = self.tx.send(line(&v)).await;
    }

    async fn status(&self, s: &str) {
        self.send(json!({ "status": s })).await
    }

    async fn layer(&self, id: &str, s: &str) {
        self.send(json!({ "status": s, "progressDetail": {}, "id": id }))
            .await
    }

    /// A progress update: dropped when the client reads slower than it comes.
    fn bar(&self, id: &str, s: &str, current: u64, total: u64) {
        let v = json!({
            "status": s,
            "progressDetail": { "current": current, "total": total },
            "progress": progress_bar(current, total),
            "id": id,
        });
        let _ = self.tx.try_send(line(&v));
    }

    async fn error(&self, msg: &str) {
        self.send(json!({ "errorDetail": { "message": msg }, "error": msg }))
            .await
    }
}

/// Go's `units.HumanSize`: decimal units, four significant digits.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = n as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let int_digits = if size < 1.0 {
        1
    } else {
        (size.log10().floor() as i32 + 1).max(1)
    };
    let decimals = (4 - int_digits).max(0) as usize;
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

/// Docker's `JSONProgress.String()` at full width: `[=====>    ]  1.2MB/3.4MB`.
pub fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human_size(current));
    }
    let pct = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let numbers = if current > total {
        String::new()
    } else {
        format!("{:>8}/{}", human_size(current), human_size(total))
    };
    format!("[{}>{}] {numbers}", "=".repeat(pct), " ".repeat(50 - pct))
}

/// The 12 hex digits Docker shows for a layer.
fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn diff_ids(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The credentials of `X-Registry-Auth`; a header that does not decode counts as
/// none, as dockerd takes it.
fn auth_header(req: &Request<Incoming>) -> AuthConfig {
    let raw = req
        .headers()
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    AuthConfig::from_header(raw).unwrap_or_else(|e| {
        debug!(error = %e, "ignoring X-Registry-Auth");
        AuthConfig::default()
    })
}

/// How oci-client authenticates for `repo` on `host`; an identity token is traded
/// for an access token of the scope first.
async fn registry_auth(
    auth: &AuthConfig,
    host: &str,
    plain_http: bool,
    repo: &str,
    push: bool,
) -> registry::Result<RegistryAuth> {
    if !auth.identitytoken.is_empty() && auth.registrytoken.is_empty() {
        let actions = if push { "pull,push" } else { "pull" };
        let scope = format!("repository:{repo}:{actions}");
        let token =
            registry::identity_token_exchange(host, plain_http, &auth.identitytoken, &scope)
                .await?;
        return Ok(RegistryAuth::Bearer(token));
    }
    Ok(auth.registry_auth())
}

/// A reference as oci-client takes it (`name` is a full name, as
/// [`reference::normalize`] makes it).
fn parse_ref(name: &str) -> ApiResult<Reference> {
    name.parse()
        .map_err(|e| ApiError::BadRequest(format!("invalid reference format: {name}: {e}")))
}

/// A client for the reference's registry, plain HTTP if it is insecure.
fn client_for(d: &Daemon, r: &Reference) -> (Client, bool) {
    let host = r.registry();
    let plain = registry::is_insecure(host, &d.cfg.insecure_registries);
    (registry::client(host, plain), plain)
}

/// The error of a pull that failed before its stream began, in dockerd's words.
fn pull_error(full: &str, e: registry::Error) -> ApiError {
    let name = reference::familiar(full);
    match e {
        registry::Error::NotFound(m) => {
            ApiError::NotFound(format!("manifest for {name} not found: {m}"))
        }
        registry::Error::Unauthorized(m) => ApiError::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {m}",
            reference::split_tag(&name).0
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

fn oci_err(e: OciDistributionError) -> ApiError {
    ApiError::Internal(registry::Error::from_oci(e).to_string())
}

/// `platform=os/arch[/variant]` of a pull; linux/amd64 when absent.
fn platform(q: &HashMap<String, String>) -> ApiResult<(String, String)> {
    match q
        .get("platform")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        None => Ok(("linux".into(), "amd64".into())),
        Some(p) => {
            let mut it = p.split('/');
            match (it.next(), it.next()) {
                (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
                    Ok((os.to_string(), arch.to_string()))
                }
                _ => Err(ApiError::BadRequest(format!("invalid platform: {p}"))),
            }
        }
    }
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `POST /images/create?fromImage=R&tag=T` (T a tag or a digest; none: every tag).
pub async fn pull(d: Arc<Daemon>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let auth = auth_header(&req);
    let (os, arch) = platform(&q)?;
    let from = q.get("fromImage").map_or("", |s| s.trim()).to_string();
    let tag = q.get("tag").map_or("", |s| s.trim()).to_string();
    if from.is_empty() {
        return Err(ApiError::BadRequest("fromImage must be set".into()));
    }
    let (repo, own_tag) = reference::split_tag(&from);
    let wanted = match (tag.as_str(), own_tag) {
        ("", Some(_)) => Some(from.clone()),
        ("", None) => None,
        (t, _) if t.starts_with("sha256:") => Some(format!("{repo}@{t}")),
        (t, _) => Some(format!("{repo}:{t}")),
    };
    let check = wanted.clone().unwrap_or_else(|| repo.to_string());
    if !reference::is_valid(&check) {
        return Err(ApiError::BadRequest(format!(
            "invalid reference format: {check}"
        )));
    }
    let full_repo = reference::split_tag(&reference::normalize(repo))
        .0
        .to_string();
    let probe = parse_ref(&format!("{full_repo}:latest"))?;
    let (c, plain) = client_for(&d, &probe);
    let ra = registry_auth(&auth, probe.registry(), plain, probe.repository(), false)
        .await
        .map_err(|e| pull_error(&format!("{full_repo}:latest"), e))?;
    let names: Vec<String> = match wanted {
        Some(w) => vec![reference::normalize(&w)],
        None => {
            let tags = c
                .list_tags(&probe, &ra, None, None)
                .await
                .map_err(|e| pull_error(&full_repo, registry::Error::from_oci(e)))?;
            if tags.tags.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "no tags of {} in the registry",
                    reference::familiar(&full_repo)
                )));
            }
            tags.tags
                .iter()
                .map(|t| format!("{full_repo}:{t}"))
                .collect()
        }
    };
    // The first manifest before the 200: an unknown one is a 404 the CLI shows.
    let first_ref = parse_ref(&names[0])?;
    let first = registry::resolve(&c, &first_ref, &ra, &os, &arch)
        .await
        .map_err(|e| pull_error(&names[0], e))?;
    let all_tags = names.len() > 1 || own_tag.is_none() && tag.is_empty();
    // engined reads an index as its linux/amd64 image: for another platform the
    // image is that platform's manifest.
    let whole_index = os == "linux" && arch == "amd64";
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let p = Progress { tx };
    tokio::spawn(async move {
        let mut resolved = Some(first);
        for name in &names {
            let r = match parse_ref(name) {
                Ok(r) => r,
                Err(e) => return p.error(&e.to_string()).await,
            };
            let manifests = match resolved.take() {
                Some(m) => m,
                None => match registry::resolve(&c, &r, &ra, &os, &arch).await {
                    Ok(m) => m,
                    Err(e) => return p.error(&pull_error(name, e).to_string()).await,
                },
            };
            if let Err(e) = pull_one(&d, &c, &r, name, &manifests, whole_index, &p).await {
                return p.error(&e.to_string()).await;
            }
        }
        if all_tags {
            let repo = reference::familiar(&full_repo);
            p.status(&format!("Status: Downloaded newer images for {repo}"))
                .await;
        }
    });
    Ok(stream_response(rx))
}

/// Pulls `name` (a tag defaults to `latest`) for the linux/amd64 platform with
/// anonymous or `auth` credentials, sending the progress lines a pull stream has
/// to `tx`: the builder's FROM of an image that is not here.
pub async fn pull_for_build(
    d: &Arc<Daemon>,
    name: &str,
    auth: &AuthConfig,
    tx: mpsc::Sender<Bytes>,
) -> ApiResult<()> {
    let full = reference::normalize(name);
    if !reference::is_valid(&full) {
        return Err(ApiError::BadRequest(format!(
            "invalid reference format: {name}"
        )));
    }
    let r = parse_ref(&full)?;
    let (c, plain) = client_for(d, &r);
    let ra = registry_auth(auth, r.registry(), plain, r.repository(), false)
        .await
        .map_err(|e| pull_error(&full, e))?;
    let manifests = registry::resolve(&c, &r, &ra, "linux", "amd64")
        .await
        .map_err(|e| pull_error(&full, e))?;
    pull_one(d, &c, &r, &full, &manifests, true, &Progress { tx }).await
}

/// One tag (or digest) of a pull, streaming its progress.
async fn pull_one(
    d: &Arc<Daemon>,
    c: &Client,
    r: &Reference,
    full: &str,
    (root, manifest): &(Fetched, Fetched),
    whole_index: bool,
    p: &Progress,
) -> ApiResult<()> {
    let familiar = reference::familiar(full);
    let shown = r.digest().or(r.tag()).unwrap_or("latest");
    p.send(json!({ "status": format!("Pulling from {}", r.repository()), "id": shown }))
        .await;
    let m: Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| ApiError::Internal(format!("manifest {}: {e}", manifest.digest)))?;
    let config = descriptor_of(&m["config"]);
    if config.digest.is_empty() {
        return Err(ApiError::Internal(format!(
            "manifest {} has no config",
            manifest.digest
        )));
    }
    let layers: Vec<Descriptor> = m["layers"]
        .as_array()
        .map(|l| l.iter().map(descriptor_of).collect())
        .unwrap_or_default();
    let up_to_date = d
        .images
        .lookup(full)
        .await
        .is_some_and(|i| i.id == config.digest && i.names.iter().any(|n| n == full));
    if !up_to_date {
        let lease = d.images.pull_lease().await?;
        let target = if whole_index { root } else { manifest };
        let pulled =
            pull_leased(d, c, r, full, target, manifest, &config, &layers, &lease, p).await;
        d.images.end_lease(lease).await;
        let info = pulled?;
        info!(image = %full, id = %info.id, "pulled");
    }
    p.status(&format!("Digest: {}", root.digest)).await;
    p.status(&if up_to_date {
        format!("Status: Image is up to date for {familiar}")
    } else {
        format!("Status: Downloaded newer image for {familiar}")
    })
    .await;
    d.events
        .image("pull", &familiar, Some(reference::split_tag(full).0));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn pull_leased(
    d: &Arc<Daemon>,
    c: &Client,
    r: &Reference,
    full: &str,
    root: &Fetched,
    manifest: &Fetched,
    config: &Descriptor,
    layers: &[Descriptor],
    lease: &str,
    p: &Progress,
) -> ApiResult<ImageInfo> {
    for l in layers {
        p.layer(&short(&l.digest), "Pulling fs layer").await;
    }
    let mut config_bytes = Vec::new();
    c.pull_blob(r, config.digest.as_str(), &mut config_bytes)
        .await
        .map_err(oci_err)?;
    if digest_of(&config_bytes) != config.digest {
        return Err(ApiError::Internal(format!(
            "config {}: digest mismatch",
            config.digest
        )));
    }
    let config_v: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| ApiError::Internal(format!("config {}: {e}", config.digest)))?;
    let diff_ids = diff_ids(&config_v);
    if diff_ids.len() != layers.len() {
        return Err(ApiError::Internal(format!(
            "image config lists {} layers, the manifest {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    let mut fetched = vec![false; layers.len()];
    for (i, l) in layers.iter().enumerate() {
        let id = short(&l.digest);
        if d.images.has_blob(&l.digest).await? {
            p.layer(&id, "Already exists").await;
            continue;
        }
        download(d, c, r, l, &diff_ids[i], lease, p).await?;
        p.layer(&id, "Verifying Checksum").await;
        p.layer(&id, "Download complete").await;
        fetched[i] = true;
    }
    // The labels that tie the tree together for containerd's garbage collector.
    let chain = chain_id(&diff_ids);
    let mut config_labels = HashMap::new();
    if !chain.is_empty() {
        config_labels.insert(
            format!("containerd.io/gc.ref.snapshot.{}", d.ctrd.snapshotter),
            chain,
        );
    }
    d.images
        .put_blob(&config_bytes, config_labels, lease)
        .await?;
    let mut manifest_labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        config.digest.clone(),
    )]);
    for (i, l) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    d.images
        .put_blob(&manifest.bytes, manifest_labels, lease)
        .await?;
    if root.digest != manifest.digest {
        let index: Value = serde_json::from_slice(&root.bytes)
            .map_err(|e| ApiError::Internal(format!("index {}: {e}", root.digest)))?;
        let mut labels = HashMap::new();
        for (i, m) in index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(dg) = m["digest"].as_str() {
                labels.insert(
                    format!("containerd.io/gc.ref.content.m.{i}"),
                    dg.to_string(),
                );
            }
        }
        d.images.put_blob(&root.bytes, labels, lease).await?;
    }
    for i in 0..layers.len() {
        d.images
            .unpack_layers(&layers[..=i], &diff_ids[..=i], lease)
            .await?;
        if fetched[i] {
            p.layer(&short(&layers[i].digest), "Pull complete").await;
        }
    }
    let target = Descriptor {
        media_type: root.media_type.clone(),
        digest: root.digest.clone(),
        size: root.bytes.len() as i64,
        ..Default::default()
    };
    d.images.record_pulled(full, target).await
}

/// Streams one layer from the registry into the content store, reporting progress.
async fn download(
    d: &Daemon,
    c: &Client,
    r: &Reference,
    layer: &Descriptor,
    diff_id: &str,
    lease: &str,
    p: &Progress,
) -> ApiResult<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut waiting = false;
    loop {
        match download_once(d, c, r, layer, diff_id, lease, p).await {
            // Another pull is writing the same blob: it is ours once that one ends.
            Err(ApiError::Containerd { source, .. })
                if source.code() == Code::Unavailable && Instant::now() < deadline =>
            {
                if !waiting {
                    p.layer(&short(&layer.digest), "Waiting").await;
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                if d.images.has_blob(&layer.digest).await? {
                    return Ok(());
                }
            }
            other => return other,
        }
    }
}

/// How long a pull waits for another one that writes the same layer.
const LOCK_WAIT: Duration = Duration::from_secs(600);

async fn download_once(
    d: &Daemon,
    c: &Client,
    r: &Reference,
    layer: &Descriptor,
    diff_id: &str,
    lease: &str,
    p: &Progress,
) -> ApiResult<()> {
    let id = short(&layer.digest);
    let total = u64::try_from(layer.size).unwrap_or(0);
    let blob = c
        .pull_blob_stream(r, layer.digest.as_str())
        .await
        .map_err(oci_err)?;
    let (p2, id2) = (p.clone(), id.clone());
    let mut current = 0u64;
    let mut last: Option<Instant> = None;
    let chunks = blob.stream.map(move |chunk| {
        if let Ok(b) = &chunk {
            current += b.len() as u64;
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
            if due || current >= total {
                last = Some(Instant::now());
                p2.bar(&id2, "Downloading", current, total);
            }
        }
        chunk
    });
    let labels = HashMap::from([(
        "containerd.io/uncompressed".to_string(),
        diff_id.to_string(),
    )]);
    d.images
        .write_stream(&layer.digest, layer.size, labels, lease, chunks)
        .await
}

/// `POST /images/{name}/push?tag=T` (no tag: every tag of the repository).
pub async fn push(d: Arc<Daemon>, req: Request<Incoming>, name: &str) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let auth = auth_header(&req);
    let tag = q.get("tag").map_or("", |s| s.trim()).to_string();
    let (repo, own_tag) = reference::split_tag(name);
    let full_repo = reference::split_tag(&reference::normalize(repo))
        .0
        .to_string();
    let wanted = match (tag.as_str(), own_tag) {
        ("", Some(_)) => Some(reference::normalize(name)),
        ("", None) => None,
        (t, _) => Some(reference::normalize(&format!("{repo}:{t}"))),
    };
    let missing = || {
        ApiError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            reference::familiar(wanted.as_deref().unwrap_or(&full_repo))
        ))
    };
    let targets: Vec<(String, ImageInfo)> = match &wanted {
        Some(full) => {
            let info = d
                .images
                .lookup(full)
                .await
                .filter(|i| i.names.iter().any(|n| n == full))
                .ok_or_else(missing)?;
            vec![(full.clone(), info)]
        }
        None => d.images.tagged_in(&full_repo).await,
    };
    if targets.is_empty() {
        return Err(missing());
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let p = Progress { tx };
    tokio::spawn(async move {
        p.status(&format!(
            "The push refers to repository [{}]",
            reference::familiar(&full_repo)
        ))
        .await;
        for (full, info) in &targets {
            if let Err(e) = push_one(&d, &auth, full, info, &p).await {
                return p.error(&e.to_string()).await;
            }
        }
    });
    Ok(stream_response(rx))
}

async fn push_one(
    d: &Daemon,
    auth: &AuthConfig,
    full: &str,
    info: &ImageInfo,
    p: &Progress,
) -> ApiResult<()> {
    let r = parse_ref(full)?;
    let (c, plain) = client_for(d, &r);
    let ra = registry_auth(auth, r.registry(), plain, r.repository(), true)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    c.store_auth_if_needed(r.resolve_registry(), &ra).await;
    let diffs = diff_ids(&info.config);
    let ids: Vec<String> = info
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| short(diffs.get(i).unwrap_or(&l.digest)))
        .collect();
    // Docker lists the top layer first.
    for id in ids.iter().rev() {
        p.layer(id, "Preparing").await;
    }
    for (l, id) in info.layers.iter().zip(&ids).rev() {
        if c.blob_exists(&r, &l.digest).await.map_err(oci_err)? {
            p.layer(id, "Layer already exists").await;
            continue;
        }
        upload(d, &c, &r, l, id, p).await?;
        p.layer(id, "Pushed").await;
    }
    if !c.blob_exists(&r, &info.id).await.map_err(oci_err)? {
        let config = d.images.read_blob(&info.id).await?;
        c.push_blob(&r, config, &info.id).await.map_err(oci_err)?;
    }
    let manifest = d.images.read_blob(&info.manifest.digest).await?;
    let media_type = if info.manifest.media_type.is_empty() {
        registry::media_type_of(&manifest).map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        info.manifest.media_type.clone()
    };
    let content_type: HeaderValue = media_type
        .parse()
        .map_err(|_| ApiError::Internal(format!("media type {media_type:?}")))?;
    let size = manifest.len();
    let digest = digest_of(&manifest);
    c.push_manifest_raw(&r, manifest, content_type)
        .await
        .map_err(oci_err)?;
    let tag = r.tag().unwrap_or("latest");
    p.status(&format!("{tag}: digest: {digest} size: {size}"))
        .await;
    p.send(json!({
        "progressDetail": {},
        "aux": { "Tag": tag, "Digest": digest, "Size": size },
    }))
    .await;
    info!(image = %full, %digest, "pushed");
    d.events.image(
        "push",
        &reference::familiar(full),
        Some(reference::split_tag(full).0),
    );
    Ok(())
}

/// Streams one layer from the content store to the registry, reporting progress.
async fn upload(
    d: &Daemon,
    c: &Client,
    r: &Reference,
    layer: &Descriptor,
    id: &str,
    p: &Progress,
) -> ApiResult<()> {
    let total = u64::try_from(layer.size).unwrap_or(0);
    let chunks = d.images.blob_chunks(&layer.digest).await?;
    let (p2, id2) = (p.clone(), id.to_string());
    let mut current = 0u64;
    let mut last: Option<Instant> = None;
    let stream = chunks.map(move |chunk| {
        let chunk = chunk.map_err(|m| OciDistributionError::GenericError(Some(m)))?;
        current += chunk.len() as u64;
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due || current >= total {
            last = Some(Instant::now());
            p2.bar(&id2, "Pushing", current, total);
        }
        Ok(chunk)
    });
    c.push_blob_stream(r, stream, &layer.digest, Some(total))
        .await
        .map_err(oci_err)?;
    Ok(())
}

/// `HOST[:PORT]` of a login's `serveraddress` (`https://index.docker.io/v1/` is
/// Docker Hub).
fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// `POST /auth`: checks the credentials against the registry.
pub async fn login(d: &Daemon, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let auth: AuthConfig = read_json(req)
        .await?
        .ok_or_else(|| ApiError::BadRequest("the login needs a body".into()))?;
    let host = login_host(&auth.serveraddress);
    let Some((user, password)) = auth.credentials() else {
        return Err(ApiError::BadRequest(
            "the login needs a username and a password".into(),
        ));
    };
    let plain = registry::is_insecure(&host, &d.cfg.insecure_registries);
    match registry::login(&host, &user, &password, plain).await {
        Ok(ok) => {
            info!(registry = %host, user = %user, "login succeeded");
            Ok(server::json(
                StatusCode::OK,
                &json!({
                    "Status": "Login Succeeded",
                    "IdentityToken": ok.identity_token.unwrap_or_default(),
                }),
            ))
        }
        Err(registry::Error::Unauthorized(m)) => {
            info!(registry = %host, user = %user, "login refused");
            Ok(server::json(
                StatusCode::UNAUTHORIZED,
                &json!({ "message": m }),
            ))
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bars_read_like_docker() {
        assert_eq!(human_size(216), "216B");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(2_000), "2kB");
        assert_eq!(human_size(772_788), "772.8kB");
        assert_eq!(
            progress_bar(216, 216),
            format!("[{}>]     216B/216B", "=".repeat(50))
        );
        assert_eq!(
            progress_bar(0, 100),
            format!("[>{}]       0B/100B", " ".repeat(50))
        );
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(login_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
