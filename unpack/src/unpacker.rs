//! Unpacking an image's layers into snapshots chained by chain ID.
use std::time::{SystemTime, UNIX_EPOCH};

use content::{Digest, Labels, Store};
use metadata::Db;
use snapshots::Snapshotter;

use crate::UnpackError;
use crate::apply::{ApplyOptions, apply_layer};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};

const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
const UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// `chainID(L0) = diffID(L0)`, `chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()).to_string(),
        };
        out.push(next);
    }
    out
}

fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    digest: &str,
) -> Result<T, UnpackError> {
    let d = Digest::parse(digest)?;
    serde_json::from_slice(&store.read_all(&d)?)
        .map_err(|e| UnpackError::Invalid(format!("{d}: {e}")))
}

/// The image's manifest for this host, descending through an index if need be.
pub fn resolve_manifest(store: &Store, target: &Descriptor) -> Result<Manifest, UnpackError> {
    if oci::is_manifest(&target.media_type) {
        return read_json(store, &target.digest);
    }
    if !oci::is_index(&target.media_type) {
        return Err(UnpackError::Invalid(format!(
            "image target has media type {}",
            target.media_type
        )));
    }
    let index: Index = read_json(store, &target.digest)?;
    let (os, arch) = host_platform();
    let pick = index
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .or_else(|| index.manifests.iter().find(|m| m.platform.is_none()))
        .ok_or_else(|| {
            UnpackError::NotFound(format!("a {os}/{arch} manifest in {}", target.digest))
        })?;
    resolve_manifest(store, pick)
}

/// Unpacks image `name` of namespace `ns` into `sn`, skipping layers whose chain ID is
/// already there, and returns the top chain ID (the parent for a container's rootfs).
pub fn unpack_image(
    db: &Db,
    store: &Store,
    sn: &Snapshotter,
    ns: &str,
    name: &str,
) -> Result<String, UnpackError> {
    let _span = tracing::info_span!("unpack", ns, image = name, snapshotter = sn.name()).entered();
    let image = db.get_image(ns, name)?;
    let manifest = resolve_manifest(store, &(&image.target).into())?;
    let config: ImageConfig = read_json(store, &manifest.config.digest)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(UnpackError::Invalid(format!(
            "config has {} diff IDs for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let chain = chain_ids(&config.rootfs.diff_ids);
    let mut parent: Option<String> = None;
    for (i, layer) in manifest.layers.iter().enumerate() {
        let chain_id = &chain[i];
        if sn.stat(ns, chain_id).is_err() {
            apply_one(
                store,
                sn,
                ns,
                layer,
                &config.rootfs.diff_ids[i],
                chain_id,
                parent.as_deref(),
            )?;
        }
        parent = Some(chain_id.clone());
    }
    let top = parent.unwrap_or_default();
    if !top.is_empty() {
        // What keeps the unpacked snapshots alive for garbage collection.
        let mut l = Labels::new();
        l.insert(
            format!("containerd.io/gc.ref.snapshot.{}", sn.name()),
            top.clone(),
        );
        store.merge_labels(&Digest::parse(&manifest.config.digest)?, &l)?;
    }
    Ok(top)
}

fn apply_one(
    store: &Store,
    sn: &Snapshotter,
    ns: &str,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    parent: Option<&str>,
) -> Result<(), UnpackError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("extract-{nanos}-{} {chain_id}", std::process::id());
    let mut labels = metadata::Labels::new();
    labels.insert(SNAPSHOT_REF.into(), chain_id.to_string());
    sn.prepare(ns, &key, parent, labels.clone())?;
    let result = (|| {
        let (dir, whiteouts) = sn.apply_dir(ns, &key)?;
        let blob = Digest::parse(&layer.digest)?;
        let reader = store.reader(&blob)?;
        let applied = apply_layer(reader.into_file(), &dir, ApplyOptions::new(whiteouts))?;
        if applied.diff_id.as_str() != diff_id {
            return Err(UnpackError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.to_string(),
                got: applied.diff_id.to_string(),
            });
        }
        let mut l = Labels::new();
        l.insert(UNCOMPRESSED.into(), diff_id.to_string());
        store.merge_labels(&blob, &l)?;
        sn.commit(ns, chain_id, &key, labels)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = sn.remove(ns, &key);
        // Another unpack committed the same chain ID first: that is success.
        if let UnpackError::Snapshot(snapshots::SnapshotError::AlreadyExists(_)) = e {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}
