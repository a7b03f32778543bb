//! Image import from `docker save` tars and OCI image-layout tars.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use content::{ContentError, Digest, Labels, Store};
use metadata::{Db, Image};

use crate::oci::{self, Descriptor, DockerArchiveEntry, Index, Manifest};
use crate::{UnpackError, io_err};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    pub name: String,
    pub target: metadata::Descriptor,
}

const SMALL_FILES: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];

/// Imports every image in the tar `r` (format detected from its files) into `store`
/// (which must carry the namespace's labels, see `Db::content_store`) and `db`.
pub fn import_archive(
    r: impl Read,
    store: &Store,
    db: &Db,
    ns: &str,
) -> Result<Vec<ImportedImage>, UnpackError> {
    let _span = tracing::info_span!("import", ns).entered();
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut by_path: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut new_blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut archive = tar::Archive::new(r);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, entry) in archive.entries().map_err(io_err("image tar"))?.enumerate() {
        let mut entry = entry.map_err(io_err("image tar entry"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(io_err("image tar entry path"))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if SMALL_FILES.contains(&path.as_str()) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(io_err(path.clone()))?;
            small.insert(path, buf);
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .map(|hex| Digest::parse(&format!("sha256:{hex}")))
            .transpose()?;
        let size = entry.header().size().map_err(io_err(path.clone()))?;
        if let Some(d) = &expected
            && store.exists(d)
        {
            store.merge_labels(d, &Labels::new())?;
            by_path.insert(path, (d.clone(), size));
            continue;
        }
        let mut w = store.writer(&format!("import-{stamp}-{i}"), size)?;
        w.truncate(0)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(io_err(path.clone()))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        let digest = w.digest();
        match w.commit(size, expected.as_ref(), &Labels::new()) {
            Ok(_) => {
                new_blobs.insert(digest.clone());
            }
            Err(ContentError::AlreadyExists(_)) => store.merge_labels(&digest, &Labels::new())?,
            Err(e) => return Err(e.into()),
        }
        by_path.insert(path, (digest, size));
    }

    let mut referenced = BTreeSet::new();
    // An archive with both (ours, `ctr images export`, `docker save` since Docker 25)
    // is read as the OCI layout, as containerd does: its manifests keep their digests.
    let images = if let Some(idx) = small.get("index.json") {
        import_oci(idx, store, db, ns, &mut referenced)?
    } else if let Some(m) = small.get("manifest.json") {
        import_docker(m, &by_path, store, db, ns, &mut referenced)?
    } else {
        return Err(UnpackError::Invalid(
            "neither manifest.json (docker save) nor index.json (OCI layout) in the archive".into(),
        ));
    };
    // Files of the archive no manifest points at (docker's legacy `<id>/json`, ...).
    for d in new_blobs.difference(&referenced) {
        store.delete(d)?;
    }
    Ok(images)
}

fn layer_media_type(store: &Store, d: &Digest) -> Result<&'static str, UnpackError> {
    let r = store.reader(d)?;
    let mut head = [0u8; 4];
    let n = r.read_at(&mut head, 0).map_err(io_err(d.to_string()))?;
    Ok(match crate::Compression::detect(&head[..n]) {
        crate::Compression::Gzip => oci::DOCKER_LAYER_GZIP,
        crate::Compression::Zstd => oci::OCI_LAYER_ZSTD,
        crate::Compression::None => oci::DOCKER_LAYER,
    })
}

fn import_docker(
    manifest_json: &[u8],
    by_path: &HashMap<String, (Digest, u64)>,
    store: &Store,
    db: &Db,
    ns: &str,
    referenced: &mut BTreeSet<Digest>,
) -> Result<Vec<ImportedImage>, UnpackError> {
    let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| UnpackError::Invalid(format!("manifest.json: {e}")))?;
    let lookup = |p: &str| {
        by_path
            .get(p)
            .cloned()
            .ok_or_else(|| UnpackError::NotFound(format!("{p} (named in manifest.json)")))
    };
    let mut out = Vec::new();
    for e in entries {
        let (config, config_size) = lookup(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (d, size) = lookup(l)?;
            layers.push(Descriptor {
                media_type: layer_media_type(store, &d)?.to_string(),
                digest: d.to_string(),
                size: size as i64,
                annotations: BTreeMap::new(),
                platform: None,
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: oci::DOCKER_CONFIG.to_string(),
                digest: config.to_string(),
                size: config_size as i64,
                annotations: BTreeMap::new(),
                platform: None,
            },
            layers,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| UnpackError::Invalid(format!("manifest: {e}")))?;
        let md = Digest::of(&bytes);
        store.write_blob(&md, &bytes, &Labels::new())?;
        let target = Descriptor {
            media_type: oci::DOCKER_MANIFEST.to_string(),
            digest: md.to_string(),
            size: bytes.len() as i64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        label_tree(store, &target, referenced)?;
        let names: Vec<String> = match &e.repo_tags {
            Some(tags) if !tags.is_empty() => tags.iter().map(|t| oci::normalize_name(t)).collect(),
            _ => vec![format!("import@{md}")],
        };
        for name in names {
            out.push(put_image(db, ns, &name, &target)?);
        }
    }
    Ok(out)
}

fn import_oci(
    index_json: &[u8],
    store: &Store,
    db: &Db,
    ns: &str,
    referenced: &mut BTreeSet<Digest>,
) -> Result<Vec<ImportedImage>, UnpackError> {
    let index: Index = serde_json::from_slice(index_json)
        .map_err(|e| UnpackError::Invalid(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        label_tree(store, desc, referenced)?;
        let name = desc
            .annotations
            .get(oci::ANNOTATION_IMAGE_NAME)
            .cloned()
            .or_else(|| {
                desc.annotations
                    .get(oci::ANNOTATION_REF_NAME)
                    // A bare tag ("latest") names no repository; a full one does.
                    .filter(|r| r.contains('/') || r.contains(':'))
                    .map(|r| oci::normalize_name(r))
            })
            .unwrap_or_else(|| format!("import@{}", desc.digest));
        let mut target = desc.clone();
        target.platform = None;
        out.push(put_image(db, ns, &name, &target)?);
    }
    Ok(out)
}

fn put_image(
    db: &Db,
    ns: &str,
    name: &str,
    target: &Descriptor,
) -> Result<ImportedImage, UnpackError> {
    let img = db.put_image(
        ns,
        Image {
            name: name.to_string(),
            labels: metadata::Labels::new(),
            target: target.into(),
            created_at: UNIX_EPOCH,
            updated_at: UNIX_EPOCH,
        },
    )?;
    tracing::info!(name, digest = %target.digest, "image imported");
    Ok(ImportedImage {
        name: img.name,
        target: img.target,
    })
}

/// Labels every index and manifest below `desc` with its children, as containerd's
/// `SetChildrenLabels` does (`containerd.io/gc.ref.content.m.<i>` for an index's
/// manifests, `.config` and `.l.<i>` for a manifest's), so garbage collection keeps
/// the whole tree while the image exists. Records every digest met in `seen`.
pub fn label_tree(
    store: &Store,
    desc: &Descriptor,
    seen: &mut BTreeSet<Digest>,
) -> Result<(), UnpackError> {
    let d = Digest::parse(&desc.digest)?;
    seen.insert(d.clone());
    let mut labels = Labels::new();
    if oci::is_index(&desc.media_type) {
        let index: Index = serde_json::from_slice(&store.read_all(&d)?)
            .map_err(|e| UnpackError::Invalid(format!("index {d}: {e}")))?;
        for (i, m) in index.manifests.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.m.{i}"),
                m.digest.clone(),
            );
            label_tree(store, m, seen)?;
        }
    } else if oci::is_manifest(&desc.media_type) {
        let m: Manifest = serde_json::from_slice(&store.read_all(&d)?)
            .map_err(|e| UnpackError::Invalid(format!("manifest {d}: {e}")))?;
        labels.insert(
            "containerd.io/gc.ref.content.config".into(),
            m.config.digest.clone(),
        );
        seen.insert(Digest::parse(&m.config.digest)?);
        for (i, l) in m.layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
            seen.insert(Digest::parse(&l.digest)?);
        }
    } else {
        return Ok(());
    }
    store.merge_labels(&d, &labels)?;
    Ok(())
}
