//! Images: kept in containerd (content store + images service + unpacked snapshots),
//! with a small in-memory index (id → config, names) so that `docker images` and
//! container creation need no round trips.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, DeleteImageRequest, Image, InfoRequest, ListImagesRequest,
    ReadContentRequest, UpdateImageRequest, WriteAction, WriteContentRequest,
};
use containerd_client::services::v1::{CreateRequest as LeaseCreate, DeleteRequest as LeaseDelete};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use tracing::{debug, instrument};

use crate::ctrd::Ctrd;
use crate::error::{ApiError, ApiResult, Context};
use crate::reference;

mod remote;

pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The containerd name of an image without a tag (as Docker's containerd image store
/// names them), so that containerd keeps it and a restarted engined finds it again.
pub const DANGLING_PREFIX: &str = "moby-dangling@";

/// What engined knows about one image (one config digest).
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:<config digest>`: Docker's image id.
    pub id: String,
    /// containerd names (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    pub target: Descriptor,
    /// The linux/amd64 manifest (`target` itself unless that is an index).
    pub manifest: Descriptor,
    /// The manifest's layers, bottom first.
    pub layers: Vec<Descriptor>,
    pub config: Value,
    pub chain_id: String,
    /// Sum of the layer sizes.
    pub size: i64,
}

impl ImageInfo {
    pub fn created(&self) -> String {
        self.config["created"].as_str().unwrap_or("").to_string()
    }

    pub fn created_unix(&self) -> i64 {
        jsonlog::parse_rfc3339_nanos(&self.created()).map_or(0, |n| (n / 1_000_000_000) as i64)
    }

    pub fn repo_tags(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| !n.contains('@') && !n.starts_with(DANGLING_PREFIX))
            .map(|n| reference::familiar(n))
            .collect()
    }

    pub fn short_id(&self) -> &str {
        let hex = self.id.trim_start_matches("sha256:");
        &hex[..12.min(hex.len())]
    }
}

#[derive(Debug, Default)]
struct Index {
    by_id: BTreeMap<String, ImageInfo>,
    /// containerd name → image id.
    names: HashMap<String, String>,
}

#[derive(Debug)]
pub struct ImageStore {
    ctrd: Ctrd,
    index: RwLock<Index>,
    tmp: PathBuf,
}

/// sha256 digest of some bytes.
pub fn digest_of(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The chain id of a stack of layer diff ids (the name of its snapshot).
pub fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = String::new();
    for d in diff_ids {
        chain = if chain.is_empty() {
            d.clone()
        } else {
            digest_of(format!("{chain} {d}").as_bytes())
        };
    }
    chain
}

fn diff_ids_of(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A descriptor from its JSON form in a manifest or index.
pub fn descriptor_of(v: &Value) -> Descriptor {
    Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
        digest: v["digest"].as_str().unwrap_or("").to_string(),
        size: v["size"].as_i64().unwrap_or(0),
        ..Default::default()
    }
}

/// Content `Write` messages carry at most this much data.
const WRITE_CHUNK: usize = 1 << 20;
/// How long a write waits for another writer of the same blob to finish.
const LOCKED_INGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// One message of a content `Write`; the one with labels is the commit.
fn write_request(
    r#ref: &str,
    digest: &str,
    total: i64,
    offset: i64,
    data: Vec<u8>,
    commit_labels: Option<HashMap<String, String>>,
) -> WriteContentRequest {
    let commit = commit_labels.is_some();
    WriteContentRequest {
        action: if commit {
            WriteAction::Commit as i32
        } else {
            WriteAction::Write as i32
        },
        r#ref: r#ref.to_string(),
        total,
        expected: if commit {
            digest.to_string()
        } else {
            String::new()
        },
        offset,
        data,
        labels: commit_labels.unwrap_or_default(),
    }
}

/// Where a streamed content write is: the file (until its last chunk is read), the
/// offset, and the commit labels (taken by the last chunk).
struct WriteState {
    file: Option<tokio::fs::File>,
    offset: i64,
    labels: Option<HashMap<String, String>>,
}

/// A layer blob on disk and its descriptor.
#[derive(Debug)]
struct LayerFile {
    path: PathBuf,
    desc: Descriptor,
}

/// One image found in a `docker load` archive.
#[derive(Debug)]
struct Loadable {
    names: Vec<String>,
    config: PathBuf,
    layers: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    pub fn new(ctrd: Ctrd, tmp: PathBuf) -> Self {
        Self {
            ctrd,
            index: RwLock::new(Index::default()),
            tmp,
        }
    }

    /// Reads every image of our namespace from containerd into the index.
    pub async fn refresh(&self) -> ApiResult<()> {
        let list = self
            .ctrd
            .images()
            .list(self.ctrd.req(ListImagesRequest::default()))
            .await
            .ctx(|| "list images".into())?
            .into_inner()
            .images;
        let mut index = Index::default();
        for img in list {
            match self.describe(&img).await {
                Ok(info) => add_to_index(&mut index, &img.name, info),
                Err(e) => debug!(image = %img.name, error = %e, "skipping image"),
            }
        }
        *self.index.write().await = index;
        Ok(())
    }

    /// A whole blob from the content store (manifests and configs: small ones).
    pub async fn read_blob(&self, digest: &str) -> ApiResult<Vec<u8>> {
        let mut stream = self
            .ctrd
            .content()
            .read(self.ctrd.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .ctx(|| format!("read {digest}"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.ctx(|| format!("read {digest}"))? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Resolves an image record (manifest or index) to its config.
    async fn describe(&self, img: &Image) -> ApiResult<ImageInfo> {
        let target = img
            .target
            .clone()
            .ok_or_else(|| ApiError::Internal(format!("image {} has no target", img.name)))?;
        let mut manifest_desc = target.clone();
        let mut manifest: Value;
        loop {
            let data = self.read_blob(&manifest_desc.digest).await?;
            manifest = serde_json::from_slice(&data)
                .map_err(|e| ApiError::Internal(format!("manifest {}: {e}", target.digest)))?;
            let mt = manifest["mediaType"]
                .as_str()
                .unwrap_or(&manifest_desc.media_type);
            if mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST || manifest.get("manifests").is_some() {
                let pick = manifest["manifests"]
                    .as_array()
                    .and_then(|m| {
                        m.iter()
                            .find(|d| {
                                d["platform"]["architecture"] == "amd64"
                                    && d["platform"]["os"] == "linux"
                            })
                            .or_else(|| m.first())
                    })
                    .ok_or_else(|| ApiError::Internal("empty image index".into()))?;
                manifest_desc = descriptor_of(pick);
                continue;
            }
            break;
        }
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| ApiError::Internal("manifest without config".into()))?
            .to_string();
        let config: Value = serde_json::from_slice(&self.read_blob(&config_digest).await?)
            .map_err(|e| ApiError::Internal(format!("config {config_digest}: {e}")))?;
        let layers: Vec<Descriptor> = manifest["layers"]
            .as_array()
            .map(|l| l.iter().map(descriptor_of).collect())
            .unwrap_or_default();
        let size = layers.iter().map(|d| d.size).sum();
        let chain = chain_id(&diff_ids_of(&config));
        Ok(ImageInfo {
            id: config_digest,
            names: vec![img.name.clone()],
            target,
            manifest: manifest_desc,
            layers,
            config,
            chain_id: chain,
            size,
        })
    }

    /// Finds an image by name (as typed), full or short id.
    pub async fn lookup(&self, name: &str) -> Option<ImageInfo> {
        let index = self.index.read().await;
        if let Some(id) = index.names.get(&reference::normalize(name)) {
            return index.by_id.get(id).cloned();
        }
        let hex = name.trim_start_matches("sha256:");
        if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = index
                .by_id
                .values()
                .filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex));
            if let (Some(one), None) = (found.next(), found.next()) {
                return Some(one.clone());
            }
        }
        None
    }

    pub async fn list(&self) -> Vec<ImageInfo> {
        self.index.read().await.by_id.values().cloned().collect()
    }

    /// `docker tag`: another name for the same target.
    #[instrument(skip(self))]
    pub async fn tag(&self, source: &str, new_name: &str) -> ApiResult<()> {
        let info = self
            .lookup(source)
            .await
            .ok_or_else(|| ApiError::NotFound(format!("No such image: {source}")))?;
        if !reference::is_valid(new_name) {
            return Err(ApiError::BadRequest(format!(
                "invalid reference format: {new_name}"
            )));
        }
        let full = reference::normalize(new_name);
        self.put_image(&full, info.target.clone()).await?;
        let id = info.id.clone();
        {
            let mut index = self.index.write().await;
            let mut info = info;
            info.names = vec![full.clone()];
            add_to_index(&mut index, &full, info);
        }
        self.drop_dangling(&id).await;
        Ok(())
    }

    /// The images tagged in one repository (`docker.io/library/busybox`), as
    /// (full name, image) pairs sorted by name: what `docker save busybox` saves.
    pub async fn tagged_in(&self, repo: &str) -> Vec<(String, ImageInfo)> {
        let index = self.index.read().await;
        let mut out: Vec<(String, ImageInfo)> = index
            .names
            .iter()
            .filter(|(n, _)| !n.contains('@') && reference::split_tag(n).0 == repo)
            .filter_map(|(n, id)| index.by_id.get(id).map(|i| (n.clone(), i.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn put_image(&self, name: &str, target: Descriptor) -> ApiResult<()> {
        let image = Image {
            name: name.to_string(),
            target: Some(target),
            ..Default::default()
        };
        let created = self
            .ctrd
            .images()
            .create(self.ctrd.req(CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            }))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                self.ctrd
                    .images()
                    .update(self.ctrd.req(UpdateImageRequest {
                        image: Some(image),
                        ..Default::default()
                    }))
                    .await
                    .ctx(|| format!("update image {name}"))?;
                Ok(())
            }
            Err(s) => Err(s).ctx(|| format!("create image {name}")),
        }
    }

    /// `docker rmi`: removes one name, or every name of an image given by id.
    /// Returns the `[{"Untagged"}, {"Deleted"}]` items.
    #[instrument(skip(self, in_use))]
    pub async fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: impl Fn(&str) -> Option<String>,
    ) -> ApiResult<Vec<Value>> {
        let info = self
            .lookup(name)
            .await
            .ok_or_else(|| ApiError::NotFound(format!("No such image: {name}")))?;
        let by_name = self
            .index
            .read()
            .await
            .names
            .contains_key(&reference::normalize(name));
        let targets: Vec<String> = if by_name {
            vec![reference::normalize(name)]
        } else {
            info.names.clone()
        };
        let last_name = !by_name || info.names.len() == 1;
        if last_name
            && !force
            && let Some(container) = in_use(&info.id)
        {
            return Err(ApiError::Conflict(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                &container[..12.min(container.len())],
                info.short_id()
            )));
        }
        if !by_name && info.names.len() > 1 && !force {
            return Err(ApiError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                info.short_id()
            )));
        }
        let mut out = Vec::new();
        for t in &targets {
            self.ctrd
                .images()
                .delete(self.ctrd.req(DeleteImageRequest {
                    name: t.clone(),
                    sync: false,
                    ..Default::default()
                }))
                .await
                .ctx(|| format!("delete image {t}"))?;
            if !t.starts_with(DANGLING_PREFIX) {
                out.push(serde_json::json!({ "Untagged": reference::familiar(t) }));
            }
        }
        let mut index = self.index.write().await;
        for t in &targets {
            index.names.remove(t);
        }
        let gone = if let Some(i) = index.by_id.get_mut(&info.id) {
            i.names.retain(|n| !targets.contains(n));
            i.names.is_empty()
        } else {
            false
        };
        if gone {
            index.by_id.remove(&info.id);
            out.push(serde_json::json!({ "Deleted": info.id }));
        }
        Ok(out)
    }

    /// `docker load`: imports every image of a docker-archive or OCI-layout tar
    /// (already spooled to `tar_path`) and returns the names (or ids) loaded.
    #[instrument(skip_all)]
    pub async fn load(&self, tar_path: &Path) -> ApiResult<Vec<String>> {
        let dir = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(&self.tmp)
            .ctx(|| format!("create a directory in {}", self.tmp.display()))?;
        let root = dir.path().to_path_buf();
        let tar_path = tar_path.to_path_buf();
        let loadables = tokio::task::spawn_blocking(move || extract_and_scan(&tar_path, &root))
            .await
            .map_err(|e| ApiError::Internal(format!("load: {e}")))??;
        let lease = self.create_lease("load").await?;
        let result = self.load_all(&loadables, &lease).await;
        self.delete_lease(lease).await;
        drop(dir);
        result
    }

    /// A lease that keeps what an import writes from containerd's garbage collector
    /// until the image record refers to it; it expires by itself if we die meanwhile.
    async fn create_lease(&self, what: &str) -> ApiResult<String> {
        let lease = format!("engined-{what}-{}", crate::util::random_hex(8));
        self.ctrd
            .leases()
            .create(self.ctrd.req(LeaseCreate {
                id: lease.clone(),
                labels: HashMap::from([(
                    "containerd.io/gc.expire".to_string(),
                    common::rfc3339_nanos(SystemTime::now() + std::time::Duration::from_secs(3600)),
                )]),
            }))
            .await
            .ctx(|| "create lease".into())?;
        Ok(lease)
    }

    async fn delete_lease(&self, lease: String) {
        let _ = self
            .ctrd
            .leases()
            .delete(self.ctrd.req(LeaseDelete {
                id: lease,
                sync: false,
            }))
            .await;
    }

    async fn load_all(&self, loadables: &[Loadable], lease: &str) -> ApiResult<Vec<String>> {
        let mut loaded = Vec::new();
        for l in loadables {
            let config_bytes = tokio::fs::read(&l.config)
                .await
                .ctx(|| format!("read {}", l.config.display()))?;
            let config: Value = serde_json::from_slice(&config_bytes)
                .map_err(|e| ApiError::BadRequest(format!("invalid image config: {e}")))?;
            let diff_ids = diff_ids_of(&config);
            if diff_ids.len() != l.layers.len() {
                return Err(ApiError::BadRequest(format!(
                    "image config lists {} layers, the archive {}",
                    diff_ids.len(),
                    l.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for path in &l.layers {
                let p = path.clone();
                let (digest, size, gzip) = tokio::task::spawn_blocking(move || hash_file(&p))
                    .await
                    .map_err(|e| ApiError::Internal(format!("hash: {e}")))??;
                let media_type = if gzip {
                    MT_DOCKER_LAYER_GZIP
                } else {
                    MT_DOCKER_LAYER
                };
                layers.push(LayerFile {
                    path: path.clone(),
                    desc: Descriptor {
                        media_type: media_type.into(),
                        digest,
                        size,
                        ..Default::default()
                    },
                });
            }
            let names: Vec<String> = l.names.iter().map(|n| reference::normalize(n)).collect();
            let info = self
                .store_image(&config_bytes, config, &layers, &names, lease)
                .await?;
            if names.is_empty() {
                loaded.push(format!("Loaded image ID: {}", info.id));
            }
            for full in &names {
                loaded.push(format!("Loaded image: {}", reference::familiar(full)));
            }
        }
        Ok(loaded)
    }

    /// `docker import`: a one-layer image from an uncompressed layer tar on disk
    /// (`digest` is both its blob digest and its diff id) and its config.
    #[instrument(skip(self, config_bytes, config))]
    pub async fn import(
        &self,
        config_bytes: &[u8],
        config: Value,
        layer: &Path,
        digest: &str,
        size: i64,
        names: &[String],
    ) -> ApiResult<ImageInfo> {
        let layers = [LayerFile {
            path: layer.to_path_buf(),
            desc: Descriptor {
                media_type: MT_DOCKER_LAYER.into(),
                digest: digest.to_string(),
                size,
                ..Default::default()
            },
        }];
        let lease = self.create_lease("import").await?;
        let result = self
            .store_image(config_bytes, config, &layers, names, &lease)
            .await;
        self.delete_lease(lease).await;
        result
    }

    /// `docker commit`: an image made of `parents` (layers already in the content
    /// store) and, unless the container changed nothing, one new uncompressed layer
    /// on disk (`digest` is its blob digest and diff id).
    #[instrument(skip(self, config_bytes, config, parents))]
    pub async fn commit(
        &self,
        config_bytes: &[u8],
        config: Value,
        parents: &[Descriptor],
        layer: Option<(&Path, &str, i64)>,
        names: &[String],
    ) -> ApiResult<ImageInfo> {
        let mut layers: Vec<LayerFile> = parents
            .iter()
            .map(|d| LayerFile {
                // Never opened: a blob the store has already is not written again.
                path: PathBuf::new(),
                desc: d.clone(),
            })
            .collect();
        for l in &layers {
            if !self.exists(&l.desc.digest).await? {
                return Err(ApiError::Internal(format!(
                    "layer {} of the container's image is no longer in the content store",
                    l.desc.digest
                )));
            }
        }
        if let Some((path, digest, size)) = layer {
            layers.push(LayerFile {
                path: path.to_path_buf(),
                desc: Descriptor {
                    media_type: MT_DOCKER_LAYER.into(),
                    digest: digest.to_string(),
                    size,
                    ..Default::default()
                },
            });
        }
        let lease = self.create_lease("commit").await?;
        let result = self
            .store_image(config_bytes, config, &layers, names, &lease)
            .await;
        self.delete_lease(lease).await;
        result
    }

    /// Puts an image into containerd as its own tools would: the layer blobs, the
    /// config and a Docker v2 manifest in the content store (with the labels that tie
    /// them together for the garbage collector), the unpacked snapshots, and one image
    /// record per name (a dangling one when there is none). `names` are full names.
    async fn store_image(
        &self,
        config_bytes: &[u8],
        config: Value,
        layers: &[LayerFile],
        names: &[String],
        lease: &str,
    ) -> ApiResult<ImageInfo> {
        let diff_ids = diff_ids_of(&config);
        if diff_ids.len() != layers.len() {
            return Err(ApiError::BadRequest(format!(
                "image config lists {} layers, the image has {}",
                diff_ids.len(),
                layers.len()
            )));
        }
        let config_digest = digest_of(config_bytes);
        let chain = chain_id(&diff_ids);
        for (l, diff_id) in layers.iter().zip(&diff_ids) {
            let labels = HashMap::from([("containerd.io/uncompressed".into(), diff_id.clone())]);
            self.write_content(&l.path, &l.desc.digest, l.desc.size, labels, lease)
                .await?;
        }
        let mut cfg_labels = HashMap::new();
        if !chain.is_empty() {
            cfg_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.ctrd.snapshotter),
                chain.clone(),
            );
        }
        self.write_bytes(config_bytes, &config_digest, cfg_labels, lease)
            .await?;
        let layer_descs: Vec<Descriptor> = layers.iter().map(|l| l.desc.clone()).collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": { "mediaType": MT_DOCKER_CONFIG, "digest": config_digest, "size": config_bytes.len() },
            "layers": layer_descs.iter().map(|d| serde_json::json!({
                "mediaType": d.media_type, "digest": d.digest, "size": d.size
            })).collect::<Vec<_>>()
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ApiError::Internal(format!("encode manifest: {e}")))?;
        let manifest_digest = digest_of(&manifest_bytes);
        let mut m_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            config_digest.clone(),
        )]);
        for (i, d) in layer_descs.iter().enumerate() {
            m_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                d.digest.clone(),
            );
        }
        self.write_bytes(&manifest_bytes, &manifest_digest, m_labels, lease)
            .await?;
        self.unpack(&layer_descs, &diff_ids, lease).await?;
        let target = Descriptor {
            media_type: MT_DOCKER_MANIFEST.into(),
            digest: manifest_digest.clone(),
            size: manifest_bytes.len() as i64,
            ..Default::default()
        };
        let size = layer_descs.iter().map(|d| d.size).sum();
        let info = ImageInfo {
            id: config_digest,
            names: Vec::new(),
            target: target.clone(),
            manifest: target.clone(),
            layers: layer_descs,
            config,
            chain_id: chain,
            size,
        };
        let known_name = self
            .index
            .read()
            .await
            .by_id
            .get(&info.id)
            .is_some_and(|i| !i.names.is_empty());
        let names: Vec<String> = if !names.is_empty() {
            names.to_vec()
        } else if known_name {
            // Already reachable under some name: nothing to add.
            Vec::new()
        } else {
            vec![format!("{DANGLING_PREFIX}{manifest_digest}")]
        };
        for full in &names {
            self.put_image(full, target.clone()).await?;
            let mut index = self.index.write().await;
            let mut i = info.clone();
            i.names = vec![full.clone()];
            add_to_index(&mut index, full, i);
        }
        if !names.iter().any(|n| n.starts_with(DANGLING_PREFIX)) {
            self.drop_dangling(&info.id).await;
        }
        let index = self.index.read().await;
        Ok(index.by_id.get(&info.id).cloned().unwrap_or(info))
    }

    /// Removes the dangling record of an image that has just been given a name.
    async fn drop_dangling(&self, id: &str) {
        let dangling: Vec<String> = match self.index.read().await.by_id.get(id) {
            Some(i) if i.names.len() > 1 => i
                .names
                .iter()
                .filter(|n| n.starts_with(DANGLING_PREFIX))
                .cloned()
                .collect(),
            _ => return,
        };
        for name in dangling {
            let deleted = self
                .ctrd
                .images()
                .delete(self.ctrd.req(DeleteImageRequest {
                    name: name.clone(),
                    sync: false,
                    ..Default::default()
                }))
                .await;
            match deleted {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => {
                    debug!(image = %name, error = %s.message(), "cannot drop the dangling record");
                    continue;
                }
            }
            let mut index = self.index.write().await;
            index.names.remove(&name);
            if let Some(i) = index.by_id.get_mut(id) {
                i.names.retain(|n| *n != name);
            }
        }
    }

    /// The size of a blob in the content store, `None` if it is not there.
    pub async fn blob_size(&self, digest: &str) -> ApiResult<Option<i64>> {
        match self
            .ctrd
            .content()
            .info(self.ctrd.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(r) => Ok(Some(r.into_inner().info.map_or(0, |i| i.size))),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s).ctx(|| format!("stat content {digest}")),
        }
    }

    async fn exists(&self, digest: &str) -> ApiResult<bool> {
        Ok(self.blob_size(digest).await?.is_some())
    }

    async fn write_bytes(
        &self,
        data: &[u8],
        digest: &str,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> ApiResult<()> {
        // Another writer of the same blob (a parallel pull of one image) holds the
        // ingest: the blob is ours once that writer commits, or we write it if it gave up.
        let deadline = std::time::Instant::now() + LOCKED_INGEST_WAIT;
        loop {
            if self.exists(digest).await? {
                return Ok(());
            }
            match self.write_bytes_once(data, digest, &labels, lease).await {
                Err(ApiError::Containerd { source, .. })
                    if source.code() == Code::Unavailable
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn write_bytes_once(
        &self,
        data: &[u8],
        digest: &str,
        labels: &HashMap<String, String>,
        lease: &str,
    ) -> ApiResult<()> {
        let total = data.len() as i64;
        let r#ref = format!("engined-{digest}");
        let mut reqs = Vec::new();
        let mut offset = 0i64;
        let mut chunks = data.chunks(WRITE_CHUNK).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            reqs.push(write_request(
                &r#ref,
                digest,
                total,
                offset,
                chunk.to_vec(),
                last.then(|| labels.clone()),
            ));
            offset += chunk.len() as i64;
        }
        if reqs.is_empty() {
            reqs.push(write_request(
                &r#ref,
                digest,
                total,
                0,
                Vec::new(),
                Some(labels.clone()),
            ));
        }
        self.send_write(futures_util::stream::iter(reqs), digest, lease)
            .await
    }

    /// Streams a file to the content store a chunk at a time, so that a big layer is
    /// never held in memory.
    async fn write_content(
        &self,
        path: &Path,
        digest: &str,
        size: i64,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> ApiResult<()> {
        use tokio::io::AsyncReadExt;
        if self.exists(digest).await? {
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .ctx(|| format!("open {}", path.display()))?;
        let failure: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let r#ref = format!("engined-{digest}");
        let state = WriteState {
            file: Some(file),
            offset: 0,
            labels: Some(labels),
        };
        let (digest_s, fail) = (digest.to_string(), failure.clone());
        let stream = futures_util::stream::unfold(state, move |mut st| {
            let (r#ref, digest, fail) = (r#ref.clone(), digest_s.clone(), fail.clone());
            async move {
                let mut file = st.file.take()?;
                let mut buf = vec![0u8; WRITE_CHUNK];
                let mut n = 0;
                while n < buf.len() {
                    match file.read(&mut buf[n..]).await {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => {
                            *fail.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                            return None;
                        }
                    }
                }
                buf.truncate(n);
                let offset = st.offset;
                st.offset += n as i64;
                let last = n == 0 || st.offset >= size;
                if n < WRITE_CHUNK && !last {
                    // The file is shorter than the size we hashed: it changed under us.
                    *fail.lock().unwrap_or_else(PoisonError::into_inner) = Some(
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank"),
                    );
                    return None;
                }
                let labels = if last { st.labels.take() } else { None };
                let req = write_request(&r#ref, &digest, size, offset, buf, labels);
                if !last {
                    st.file = Some(file);
                }
                Some((req, st))
            }
        });
        let written = self.send_write(stream, digest, lease).await;
        if let Some(e) = failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(ApiError::Io {
                context: format!("read {}", path.display()),
                source: e,
            });
        }
        written
    }

    /// Sends one content `Write` (a ref's writes ending with a commit that checks
    /// the expected digest and size).
    async fn send_write(
        &self,
        stream: impl futures_util::Stream<Item = WriteContentRequest> + Send + 'static,
        digest: &str,
        lease: &str,
    ) -> ApiResult<()> {
        let mut resp = match self
            .ctrd
            .content()
            .write(self.ctrd.leased(stream, lease))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(s).ctx(|| format!("write {digest}")),
        };
        loop {
            match resp.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
                Err(s) => return Err(s).ctx(|| format!("write {digest}")),
            }
        }
    }

    /// Applies each layer on top of its parent snapshot, committing the result under
    /// its chain id, the way containerd's unpacker does; existing ones are reused.
    async fn unpack(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
        lease: &str,
    ) -> ApiResult<()> {
        let sn = self.ctrd.snapshotter.clone();
        let mut parent = String::new();
        for (i, layer) in layers.iter().enumerate() {
            let chain = chain_id(&diff_ids[..=i]);
            let exists = self
                .ctrd
                .snapshots()
                .stat(self.ctrd.req(StatSnapshotRequest {
                    snapshotter: sn.clone(),
                    key: chain.clone(),
                }))
                .await;
            if exists.is_ok() {
                parent = chain;
                continue;
            }
            let key = format!("extract-{} {chain}", crate::util::random_hex(6));
            let mounts = self
                .ctrd
                .snapshots()
                .prepare(self.ctrd.leased(
                    PrepareSnapshotRequest {
                        snapshotter: sn.clone(),
                        key: key.clone(),
                        parent: parent.clone(),
                        labels: HashMap::from([(
                            "containerd.io/snapshot.ref".to_string(),
                            chain.clone(),
                        )]),
                    },
                    lease,
                ))
                .await
                .ctx(|| format!("prepare snapshot for layer {}", layer.digest))?
                .into_inner()
                .mounts;
            let applied = self
                .ctrd
                .diff()
                .apply(self.ctrd.leased(
                    ApplyRequest {
                        diff: Some(layer.clone()),
                        mounts,
                        ..Default::default()
                    },
                    lease,
                ))
                .await
                .ctx(|| format!("apply layer {}", layer.digest));
            if let Err(e) = applied {
                let _ = self
                    .ctrd
                    .snapshots()
                    .remove(self.ctrd.req(RemoveSnapshotRequest {
                        snapshotter: sn.clone(),
                        key,
                    }))
                    .await;
                return Err(e);
            }
            let committed = self
                .ctrd
                .snapshots()
                .commit(self.ctrd.leased(
                    CommitSnapshotRequest {
                        snapshotter: sn.clone(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::from([(
                            "containerd.io/snapshot.ref".to_string(),
                            chain.clone(),
                        )]),
                    },
                    lease,
                ))
                .await;
            match committed {
                Ok(_) => {}
                // Another load committed the same layer meanwhile.
                Err(s) if s.code() == Code::AlreadyExists => {
                    let _ = self
                        .ctrd
                        .snapshots()
                        .remove(self.ctrd.req(RemoveSnapshotRequest {
                            snapshotter: sn.clone(),
                            key,
                        }))
                        .await;
                }
                Err(s) => return Err(s).ctx(|| format!("commit snapshot {chain}")),
            }
            parent = chain;
        }
        Ok(())
    }
}

fn add_to_index(index: &mut Index, name: &str, info: ImageInfo) {
    if let Some(old) = index.names.insert(name.to_string(), info.id.clone())
        && old != info.id
        && let Some(o) = index.by_id.get_mut(&old)
    {
        o.names.retain(|n| n != name);
        if o.names.is_empty() {
            index.by_id.remove(&old);
        }
    }
    let entry = index
        .by_id
        .entry(info.id.clone())
        .or_insert_with(|| ImageInfo {
            names: Vec::new(),
            ..info.clone()
        });
    if !entry.names.iter().any(|n| n == name) {
        entry.names.push(name.to_string());
        entry.names.sort();
    }
}

/// `GET /images/{name}/history`: newest first, as Docker lists it; the top row
/// carries the image id and tags, each row that made a layer carries its size.
pub fn history(info: &ImageInfo) -> Vec<Value> {
    let mut layers = info.layers.iter();
    let mut rows: Vec<Value> = match info.config["history"].as_array() {
        Some(h) if !h.is_empty() => h
            .iter()
            .map(|h| {
                let size = if h["empty_layer"].as_bool().unwrap_or(false) {
                    0
                } else {
                    layers.next().map_or(0, |l| l.size)
                };
                serde_json::json!({
                    "Id": "<missing>",
                    "Created": crate::util::unix_of(h["created"].as_str().unwrap_or("")),
                    "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                    "Tags": null,
                    "Size": size,
                    "Comment": h["comment"].as_str().unwrap_or(""),
                })
            })
            .collect(),
        // No history recorded: one row per layer, all at the image's creation time.
        _ => layers
            .map(|l| {
                serde_json::json!({
                    "Id": "<missing>", "Created": info.created_unix(), "CreatedBy": "",
                    "Tags": null, "Size": l.size, "Comment": "",
                })
            })
            .collect(),
    };
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["Id"] = Value::String(info.id.clone());
        let tags = info.repo_tags();
        if !tags.is_empty() {
            top["Tags"] = serde_json::json!(tags);
        }
    }
    rows
}

/// sha256 digest and size of a file, and whether it is gzip-compressed.
fn hash_file(path: &Path) -> ApiResult<(String, i64, bool)> {
    let mut f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0i64;
    let mut head = [0u8; 2];
    loop {
        let n = f
            .read(&mut buf)
            .ctx(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        if size == 0 && n >= 2 {
            head = [buf[0], buf[1]];
        }
        size += n as i64;
        h.update(&buf[..n]);
    }
    let mut s = String::from("sha256:");
    for b in h.finalize() {
        s.push_str(&format!("{b:02x}"));
    }
    Ok((s, size, head == [0x1f, 0x8b]))
}

/// Unpacks the archive (entries cannot escape `root`) and finds its images: from
/// `index.json` (OCI layout) when present, otherwise from `manifest.json`.
fn extract_and_scan(tar_path: &Path, root: &Path) -> ApiResult<Vec<Loadable>> {
    let f = std::fs::File::open(tar_path).ctx(|| format!("open {}", tar_path.display()))?;
    let mut ar = tar::Archive::new(f);
    for entry in ar
        .entries()
        .map_err(|e| ApiError::BadRequest(format!("invalid tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| ApiError::BadRequest(format!("invalid tar: {e}")))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        entry
            .unpack_in(root)
            .map_err(|e| ApiError::BadRequest(format!("invalid tar entry: {e}")))?;
    }
    let blob = |digest: &str| -> PathBuf {
        let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        root.join("blobs").join(alg).join(hex)
    };
    let read_json = |p: &Path| -> ApiResult<Value> {
        let data =
            std::fs::read(p).map_err(|e| ApiError::BadRequest(format!("{}: {e}", p.display())))?;
        serde_json::from_slice(&data)
            .map_err(|e| ApiError::BadRequest(format!("{}: {e}", p.display())))
    };
    let index_path = root.join("index.json");
    if index_path.exists() {
        let index = read_json(&index_path)?;
        let mut out = Vec::new();
        let mut stack: Vec<(Value, Vec<String>)> = index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d, Vec::new()))
            .collect();
        while let Some((desc, inherited)) = stack.pop() {
            let mut names = inherited.clone();
            if let Some(n) = desc["annotations"]["io.containerd.image.name"].as_str() {
                names.push(n.to_string());
            } else if let Some(n) =
                desc["annotations"]["org.opencontainers.image.ref.name"].as_str()
                && n.contains(['/', ':'])
            {
                names.push(n.to_string());
            }
            let digest = desc["digest"].as_str().unwrap_or("");
            let m = read_json(&blob(digest))?;
            if let Some(list) = m["manifests"].as_array() {
                let pick = list
                    .iter()
                    .find(|d| {
                        d["platform"]["architecture"] == "amd64" && d["platform"]["os"] == "linux"
                    })
                    .or_else(|| list.first());
                if let Some(p) = pick {
                    stack.push((p.clone(), names));
                }
                continue;
            }
            let config = blob(m["config"]["digest"].as_str().unwrap_or(""));
            let layers = m["layers"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|d| blob(d["digest"].as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Loadable {
                names,
                config,
                layers,
            });
        }
        return Ok(out);
    }
    let manifest_path = root.join("manifest.json");
    if !manifest_path.exists() {
        return Err(ApiError::BadRequest(
            "invalid archive: neither index.json nor manifest.json found".into(),
        ));
    }
    let manifests: Vec<ArchiveManifest> = serde_json::from_value(read_json(&manifest_path)?)
        .map_err(|e| ApiError::BadRequest(format!("manifest.json: {e}")))?;
    let safe = |rel: &str| -> ApiResult<PathBuf> {
        let p = Path::new(rel);
        if p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(ApiError::BadRequest(format!(
                "invalid path in manifest: {rel}"
            )));
        }
        Ok(root.join(p))
    };
    manifests
        .into_iter()
        .map(|m| {
            Ok(Loadable {
                names: m.repo_tags.unwrap_or_default(),
                config: safe(&m.config)?,
                layers: m
                    .layers
                    .iter()
                    .map(|l| safe(l))
                    .collect::<ApiResult<Vec<_>>>()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        assert_eq!(chain_id(std::slice::from_ref(&a)), a);
        assert_eq!(
            chain_id(&[a.clone(), b.clone()]),
            digest_of(b"sha256:aaaa sha256:bbbb")
        );
    }
}
