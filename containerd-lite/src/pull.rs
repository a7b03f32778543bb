//! Pulling images from (and pushing them to) an OCI distribution registry with
//! `oci-client`: the library side of `ctr images pull`, for embedders (engined).
//!
//! A pull fetches the root manifest (index or manifest), the host platform's
//! manifest, its config and layers into the namespace's content store under a
//! temporary lease, labels the tree for garbage collection as containerd does,
//! records the image and optionally unpacks it into a snapshotter.
use std::collections::BTreeSet;
use std::sync::Arc;

use content::{ContentError, Digest, Labels};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use unpack::oci;

use crate::Daemon;
use crate::error::{LiteError, Result};

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Talk plain HTTP to the reference's registry (e.g. `127.0.0.1:5000`).
    pub plain_http: bool,
    /// Unpack into this snapshotter; `None` leaves the image packed.
    pub unpack: Option<String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            plain_http: false,
            unpack: Some(crate::DEFAULT_SNAPSHOTTER.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The containerd image name (fully qualified, e.g. `docker.io/library/busybox:latest`).
    pub name: String,
    pub target: metadata::Descriptor,
    /// The top snapshot's chain ID when unpacked.
    pub chain_id: Option<String>,
}

fn reg_err(e: impl std::fmt::Display) -> LiteError {
    LiteError::Registry(e.to_string())
}

impl From<registry::Error> for LiteError {
    fn from(e: registry::Error) -> Self {
        match e {
            registry::Error::NotFound(m) => LiteError::NotFound(m),
            other => LiteError::Registry(other.to_string()),
        }
    }
}

fn client(reference: &Reference, plain_http: bool) -> Client {
    registry::client(reference.registry(), plain_http)
}

/// The index entry for this host (or the only entry without a platform).
fn pick_manifest(index: &[u8]) -> Result<(String, String, i64)> {
    let e = registry::pick_platform(index, "linux", registry::host_arch())?;
    Ok((e.digest, e.media_type, e.size))
}

fn write_small(d: &Daemon, ns: &str, digest: &Digest, data: &[u8], labels: &Labels) -> Result<()> {
    let store = d.content(ns)?;
    store.write_blob(digest, data, labels)?;
    Ok(())
}

/// Streams one blob from the registry into the content store, unless the namespace
/// already has it.
async fn fetch_blob(
    d: &Arc<Daemon>,
    ns: &str,
    c: &Client,
    reference: &Reference,
    desc: &OciDescriptor,
) -> Result<()> {
    let digest = Digest::parse(&desc.digest)?;
    {
        let (d, ns, dg) = (d.clone(), ns.to_string(), digest.clone());
        let have = tokio::task::spawn_blocking(move || -> Result<bool> {
            Ok(d.db.get_content(&ns, dg.as_str())?.is_some() && d.content(&ns)?.exists(&dg))
        })
        .await
        .map_err(reg_err)??;
        if have {
            return Ok(());
        }
    }
    let size = u64::try_from(desc.size).unwrap_or(0);
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(8);
    let (d2, ns2, dg) = (d.clone(), ns.to_string(), digest.clone());
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let store = d2.content(&ns2)?;
        let mut w = store.writer(&format!("{ns2}/pull-{dg}"), size)?;
        w.truncate(0)?;
        while let Some(chunk) = rx.blocking_recv() {
            w.write(&chunk)?;
        }
        match w.commit(size, Some(&dg), &Labels::new()) {
            Ok(_) => Ok(()),
            Err(ContentError::AlreadyExists(_)) => {
                Ok(d2.db.set_content_labels(&ns2, dg.as_str(), Labels::new())?)
            }
            Err(e) => Err(e.into()),
        }
    });
    let mut stream = c.pull_blob_stream(reference, desc).await.map_err(reg_err)?;
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(reg_err)?;
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(reg_err)?
}

/// Pulls `reference` into namespace `ns`.
pub async fn pull(
    d: &Arc<Daemon>,
    ns: &str,
    reference: &str,
    auth: &RegistryAuth,
    opts: &PullOptions,
) -> Result<Pulled> {
    let span = tracing::info_span!("pull", ns, reference);
    let _e = span.enter();
    let r: Reference = reference
        .parse()
        .map_err(|e| LiteError::InvalidArgument(format!("reference {reference:?}: {e}")))?;
    let name = r.whole();
    let c = client(&r, opts.plain_http);
    let lease = format!("pull-{}", unique());
    {
        let (d, ns, lease) = (d.clone(), ns.to_string(), lease.clone());
        tokio::task::spawn_blocking(move || d.db.create_lease(&ns, &lease, Labels::new()))
            .await
            .map_err(reg_err)??;
    }
    let result = pull_leased(d, ns, &r, &name, &c, auth, opts, &lease).await;
    let (d2, ns2) = (d.clone(), ns.to_string());
    let _ = tokio::task::spawn_blocking(move || d2.db.delete_lease(&ns2, &lease)).await;
    result
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}-{}", std::process::id())
}

#[allow(clippy::too_many_arguments)]
async fn pull_leased(
    d: &Arc<Daemon>,
    ns: &str,
    r: &Reference,
    name: &str,
    c: &Client,
    auth: &RegistryAuth,
    opts: &PullOptions,
    lease: &str,
) -> Result<Pulled> {
    let lease_add = |digest: &str| -> Result<()> {
        d.db.add_lease_resource(
            ns,
            lease,
            metadata::LeaseResource {
                id: digest.to_string(),
                kind: "content".into(),
            },
        )?;
        Ok(())
    };
    let (root, child) = registry::resolve(c, r, auth, "linux", registry::host_arch()).await?;
    let root_mt = root.media_type.clone();
    let root_dg = Digest::parse(&root.digest)?;
    let root_bytes = root.bytes;
    lease_add(root_dg.as_str())?;
    let manifest_dg = Digest::parse(&child.digest)?;
    if manifest_dg != root_dg {
        lease_add(manifest_dg.as_str())?;
    }
    let manifest_bytes = child.bytes;
    let manifest: oci::Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| LiteError::Registry(format!("manifest {manifest_dg}: {e}")))?;
    let mut blobs: Vec<OciDescriptor> = Vec::new();
    for desc in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        lease_add(&desc.digest)?;
        blobs.push(OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            ..Default::default()
        });
    }
    for b in &blobs {
        fetch_blob(d, ns, c, r, b).await?;
    }
    // Labels that keep the tree alive once the image exists, then the image.
    let mut manifest_labels = Labels::new();
    manifest_labels.insert(
        "containerd.io/gc.ref.content.config".into(),
        manifest.config.digest.clone(),
    );
    for (i, l) in manifest.layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    let target = metadata::Descriptor {
        media_type: root_mt.clone(),
        digest: root_dg.to_string(),
        size: root_bytes.len() as i64,
        annotations: Default::default(),
    };
    let (d2, ns2, name2) = (d.clone(), ns.to_string(), name.to_string());
    let unpack_into = opts.unpack.clone();
    let index = oci::is_index(&root_mt).then(|| root_bytes.to_vec());
    let chain_id = tokio::task::spawn_blocking(move || -> Result<Option<String>> {
        write_small(&d2, &ns2, &manifest_dg, &manifest_bytes, &manifest_labels)?;
        if let Some(index) = index {
            let v: Value = serde_json::from_slice(&index).map_err(reg_err)?;
            let mut l = Labels::new();
            for (i, m) in v
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(dg) = m.get("digest").and_then(Value::as_str) {
                    l.insert(
                        format!("containerd.io/gc.ref.content.m.{i}"),
                        dg.to_string(),
                    );
                }
            }
            write_small(&d2, &ns2, &root_dg, &index, &l)?;
        }
        d2.db.put_image(
            &ns2,
            metadata::Image {
                name: name2.clone(),
                labels: Labels::new(),
                target,
                created_at: std::time::UNIX_EPOCH,
                updated_at: std::time::UNIX_EPOCH,
            },
        )?;
        match unpack_into {
            Some(sn) => {
                let sn = d2.snapshotter(&sn)?;
                let store = d2.content(&ns2)?;
                Ok(Some(unpack::unpack_image(
                    &d2.db, &store, &sn, &ns2, &name2,
                )?))
            }
            None => Ok(None),
        }
    })
    .await
    .map_err(reg_err)??;
    let target = d.db.get_image(ns, name)?.target;
    tracing::info!(image = name, "pulled");
    Ok(Pulled {
        name: name.to_string(),
        target,
        chain_id,
    })
}

/// A manifest's media type and bytes, and its (digest, bytes) blobs.
type PushSet = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Pushes image `name` of namespace `ns` to `reference`: its host-platform manifest,
/// config and layers (an index is not pushed, only the manifest this host runs).
pub async fn push(
    d: &Arc<Daemon>,
    ns: &str,
    name: &str,
    reference: &str,
    auth: &RegistryAuth,
    plain_http: bool,
) -> Result<String> {
    let r: Reference = reference
        .parse()
        .map_err(|e| LiteError::InvalidArgument(format!("reference {reference:?}: {e}")))?;
    let c = client(&r, plain_http);
    c.store_auth_if_needed(r.resolve_registry(), auth).await;
    let (d2, ns2, name2) = (d.clone(), ns.to_string(), name.to_string());
    let (manifest_mt, manifest_bytes, blobs) =
        tokio::task::spawn_blocking(move || -> Result<PushSet> {
            let store = d2.content(&ns2)?;
            let img = d2.db.get_image(&ns2, &name2)?;
            let mut mt = img.target.media_type.clone();
            let mut dg = Digest::parse(&img.target.digest)?;
            let mut bytes = store.read_all(&dg)?;
            if oci::is_index(&mt) {
                let (cdg, cmt, _) = pick_manifest(&bytes)?;
                dg = Digest::parse(&cdg)?;
                mt = cmt;
                bytes = store.read_all(&dg)?;
            }
            let m: oci::Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| LiteError::InvalidArgument(format!("manifest {dg}: {e}")))?;
            let mut blobs = Vec::new();
            let mut seen = BTreeSet::new();
            for desc in std::iter::once(&m.config).chain(m.layers.iter()) {
                if seen.insert(desc.digest.clone()) {
                    blobs.push((
                        desc.digest.clone(),
                        store.read_all(&Digest::parse(&desc.digest)?)?,
                    ));
                }
            }
            Ok((mt, bytes, blobs))
        })
        .await
        .map_err(reg_err)??;
    for (digest, data) in blobs {
        c.push_blob(&r, data, &digest).await.map_err(reg_err)?;
    }
    let ct = manifest_mt
        .parse()
        .map_err(|_| LiteError::InvalidArgument(format!("media type {manifest_mt:?}")))?;
    c.push_manifest_raw(&r, manifest_bytes, ct)
        .await
        .map_err(reg_err)
}
