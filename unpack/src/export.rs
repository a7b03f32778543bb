//! Export of images to an OCI image-layout tar that is also a `docker save` archive.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use content::{Digest, Store};
use metadata::Db;

use crate::oci::{self, Descriptor, Index, Manifest};
use crate::{UnpackError, io_err};

fn collect(
    store: &Store,
    desc: &Descriptor,
    out: &mut BTreeSet<Digest>,
) -> Result<(), UnpackError> {
    let d = Digest::parse(&desc.digest)?;
    if !out.insert(d.clone()) {
        return Ok(());
    }
    if oci::is_index(&desc.media_type) {
        let idx: Index = serde_json::from_slice(&store.read_all(&d)?)
            .map_err(|e| UnpackError::Invalid(format!("{d}: {e}")))?;
        for m in &idx.manifests {
            collect(store, m, out)?;
        }
    } else if oci::is_manifest(&desc.media_type) {
        let m: Manifest = serde_json::from_slice(&store.read_all(&d)?)
            .map_err(|e| UnpackError::Invalid(format!("{d}: {e}")))?;
        out.insert(Digest::parse(&m.config.digest)?);
        for l in &m.layers {
            out.insert(Digest::parse(&l.digest)?);
        }
    }
    Ok(())
}

fn append(
    t: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    data: impl std::io::Read,
) -> Result<(), UnpackError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o444);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    t.append_data(&mut h, path, data)
        .map_err(io_err(path.to_string()))
}

/// `docker.io/library/busybox:latest` -> `busybox:latest`, `docker.io/u/x:1` -> `u/x:1`:
/// the familiar form `docker save` writes in RepoTags. None for a name without a tag
/// (digest-only names cannot be tags).
fn repo_tag(name: &str) -> Option<String> {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || !last.contains(':') {
        return None;
    }
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    Some(short.to_string())
}

/// One `manifest.json` entry per distinct host-platform manifest, with the tags of
/// every exported name that resolves to it.
fn docker_entries(
    store: &Store,
    targets: &[(String, Descriptor)],
) -> Result<Vec<serde_json::Value>, UnpackError> {
    let blob = |digest: &str| -> Result<String, UnpackError> {
        Ok(format!("blobs/sha256/{}", Digest::parse(digest)?.hex()))
    };
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    for (name, target) in targets {
        let m = crate::unpacker::resolve_manifest(store, target)?;
        let tags: Vec<String> = repo_tag(name).into_iter().collect();
        if let Some((_, e)) = entries.iter_mut().find(|(c, _)| *c == m.config.digest) {
            if let Some(list) = e["RepoTags"].as_array_mut() {
                list.extend(tags.into_iter().map(serde_json::Value::from));
            }
            continue;
        }
        let layers = m
            .layers
            .iter()
            .map(|l| blob(&l.digest))
            .collect::<Result<Vec<_>, _>>()?;
        entries.push((
            m.config.digest.clone(),
            serde_json::json!({
                "Config": blob(&m.config.digest)?,
                "RepoTags": tags,
                "Layers": layers,
            }),
        ));
    }
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// Writes the images `names` of namespace `ns` as an OCI image layout (the form `ctr
/// images export` writes and `import_archive` reads), each tagged with both the
/// containerd name annotation and the OCI ref name. Like `ctr images export` and
/// `docker save` since Docker 25, it also carries a `manifest.json` naming each
/// image's host-platform config and layers, so `docker load` of Docker versions
/// that predate OCI layouts (20.10) loads it too.
pub fn export_oci(
    store: &Store,
    db: &Db,
    ns: &str,
    names: &[String],
    out: impl Write,
) -> Result<(), UnpackError> {
    let _span = tracing::info_span!("export", ns).entered();
    let mut blobs = BTreeSet::new();
    let mut manifests = Vec::new();
    let mut targets = Vec::new();
    for name in names {
        let img = db.get_image(ns, name)?;
        let mut desc: Descriptor = (&img.target).into();
        collect(store, &desc, &mut blobs)?;
        targets.push((name.clone(), desc.clone()));
        let tag = name
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| "latest".into());
        let mut ann = BTreeMap::new();
        ann.insert(oci::ANNOTATION_IMAGE_NAME.to_string(), name.clone());
        ann.insert(oci::ANNOTATION_REF_NAME.to_string(), tag);
        desc.annotations = ann;
        manifests.push(desc);
    }
    let mut t = tar::Builder::new(out);
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(&mut t, "oci-layout", layout.len() as u64, &layout[..])?;
    for d in &blobs {
        let r = store.reader(d)?;
        let size = r.size();
        append(
            &mut t,
            &format!("blobs/sha256/{}", d.hex()),
            size,
            r.into_file(),
        )?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.to_string()),
        manifests,
    };
    let bytes = serde_json::to_vec(&index).map_err(|e| UnpackError::Invalid(e.to_string()))?;
    append(&mut t, "index.json", bytes.len() as u64, bytes.as_slice())?;
    let docker = serde_json::to_vec(&docker_entries(store, &targets)?)
        .map_err(|e| UnpackError::Invalid(e.to_string()))?;
    append(
        &mut t,
        "manifest.json",
        docker.len() as u64,
        docker.as_slice(),
    )?;
    t.into_inner()
        .map_err(io_err("finish export tar"))?
        .flush()
        .map_err(io_err("flush export"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::repo_tag;

    #[test]
    fn repo_tags_are_familiar_names() {
        assert_eq!(
            repo_tag("docker.io/library/busybox:latest").as_deref(),
            Some("busybox:latest")
        );
        assert_eq!(repo_tag("docker.io/u/x:1").as_deref(), Some("u/x:1"));
        assert_eq!(
            repo_tag("127.0.0.1:5000/bb:v2").as_deref(),
            Some("127.0.0.1:5000/bb:v2")
        );
        assert_eq!(repo_tag("127.0.0.1:5000/bb"), None);
        assert_eq!(repo_tag("docker.io/library/bb@sha256:abcd"), None);
    }
}
