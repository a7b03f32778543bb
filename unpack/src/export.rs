//! Export of images to an OCI image-layout tar.
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

/// Writes the images `names` of namespace `ns` as an OCI image layout (the form `ctr
/// images export` writes and `import_archive` reads), each tagged with both the
/// containerd name annotation and the OCI ref name.
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
    for name in names {
        let img = db.get_image(ns, name)?;
        let mut desc: Descriptor = (&img.target).into();
        collect(store, &desc, &mut blobs)?;
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
    t.into_inner()
        .map_err(io_err("finish export tar"))?
        .flush()
        .map_err(io_err("flush export"))?;
    Ok(())
}
