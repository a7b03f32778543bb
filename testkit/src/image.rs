//! Container images for the engine-level tests: the busybox rootfs of
//! [`crate::make_busybox_rootfs`] as a one-layer image, written as a `docker load`
//! archive or as an OCI image layout, both importable by `ctr images import`.
//!
//! Output is byte-for-byte reproducible (sorted entries, fixed mtimes, root
//! ownership, fixed `created` date), so digests are stable across runs and machines
//! with the same busybox binary.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Every file's mtime and the image's `created` date: 2024-01-01T00:00:00Z.
pub const FIXED_MTIME: u64 = 1_704_067_200;
const FIXED_CREATED: &str = "2024-01-01T00:00:00Z";

pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of a `sha256:<hex>` digest.
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A content-addressed blob (config, manifest or layer).
#[derive(Debug, Clone)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(data: Vec<u8>) -> Self {
        let digest = sha256_digest(&data);
        Self { data, digest }
    }

    /// An OCI descriptor for this blob.
    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// An uncompressed layer tar; its digest is also its diff id.
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Blob,
}

impl Layer {
    pub fn diff_id(&self) -> &str {
        &self.blob.digest
    }
}

/// A single-platform (linux/amd64) image: a name such as `busybox:latest`, a config
/// and its layers, bottom first.
#[derive(Debug, Clone)]
pub struct Image {
    /// Docker-style reference: `busybox:latest` (docker load shows it as is; containerd
    /// stores it as `docker.io/library/busybox:latest`).
    pub name: String,
    pub config: Blob,
    pub layers: Vec<Layer>,
}

impl Image {
    /// An image whose config runs `cmd` with a standard PATH.
    pub fn new(name: &str, layers: Vec<Layer>, cmd: &[&str]) -> Self {
        let diff_ids: Vec<&str> = layers.iter().map(Layer::diff_id).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": FIXED_CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": cmd,
                "WorkingDir": "/"
            },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": layers.iter().map(|_| json!({
                "created": FIXED_CREATED,
                "created_by": "testkit::image (busybox-static)"
            })).collect::<Vec<_>>()
        });
        Self {
            name: name.to_string(),
            config: Blob::new(config.to_string().into_bytes()),
            layers,
        }
    }

    /// The OCI image manifest (also valid for containerd as a Docker-compatible one).
    pub fn manifest(&self) -> Blob {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": self.config.descriptor(MEDIA_TYPE_OCI_CONFIG),
            "layers": self.layers.iter()
                .map(|l| l.blob.descriptor(MEDIA_TYPE_OCI_LAYER))
                .collect::<Vec<_>>()
        });
        Blob::new(manifest.to_string().into_bytes())
    }

    /// `docker.io/library/busybox:latest` for `busybox:latest`: the name containerd
    /// gives the image, and what `ctr run` must be passed.
    pub fn containerd_name(&self) -> String {
        normalize_name(&self.name)
    }

    /// The tag part of the name (`latest` when there is none).
    pub fn tag(&self) -> &str {
        let last = self.name.rsplit('/').next().unwrap_or(&self.name);
        last.split_once(':').map_or("latest", |(_, t)| t)
    }
}

/// Docker's reference normalization for names without a registry.
pub fn normalize_name(name: &str) -> String {
    let first = name.split('/').next().unwrap_or(name);
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// The busybox rootfs of [`crate::make_busybox_rootfs`] as one layer.
pub fn build_busybox_layer() -> Result<Layer> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let rootfs = tmp.path().join("rootfs");
    crate::make_busybox_rootfs(&rootfs)?;
    layer_from_dir(&rootfs)
}

/// `busybox:latest` running `sh`, from Debian's static busybox.
pub fn busybox_image() -> Result<Image> {
    Ok(Image::new(
        "busybox:latest",
        vec![build_busybox_layer()?],
        &["sh"],
    ))
}

/// A reproducible tar of the tree under `dir` (regular files, directories and
/// symlinks; owned by root, fixed mtime, entries sorted by path).
pub fn layer_from_dir(dir: &Path) -> Result<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    append_tree(&mut builder, dir, "")?;
    let data = builder
        .into_inner()
        .context("cannot finish the layer tar")?;
    Ok(Layer {
        blob: Blob::new(data),
    })
}

fn append_tree(builder: &mut tar::Builder<Vec<u8>>, base: &Path, rel: &str) -> Result<()> {
    let dir = base.join(rel);
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| {
            e.map_err(anyhow::Error::from).and_then(|e| {
                e.file_name()
                    .into_string()
                    .map_err(|n| anyhow::anyhow!("non-UTF-8 file name {n:?}"))
            })
        })
        .collect::<Result<_>>()?;
    names.sort();
    for name in names {
        let path_in_tar = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let host = base.join(&path_in_tar);
        let meta = fs::symlink_metadata(&host)
            .with_context(|| format!("cannot stat {}", host.display()))?;
        let mut header = tar::Header::new_ustar();
        header.set_mtime(FIXED_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(meta.permissions().mode() & 0o7777);
        let ft = meta.file_type();
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, format!("{path_in_tar}/"), std::io::empty())
                .with_context(|| format!("cannot add {path_in_tar}/"))?;
            append_tree(builder, base, &path_in_tar)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&host)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &path_in_tar, &target)
                .with_context(|| format!("cannot add symlink {path_in_tar}"))?;
        } else if ft.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.size());
            let file =
                fs::File::open(&host).with_context(|| format!("cannot open {}", host.display()))?;
            builder
                .append_data(&mut header, &path_in_tar, file)
                .with_context(|| format!("cannot add {path_in_tar}"))?;
        } else {
            bail!("{}: unsupported file type in a layer", host.display());
        }
    }
    Ok(())
}

/// Adds a regular file with fixed metadata to an archive being written.
fn append_file<W: Write>(builder: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    builder
        .append_data(&mut header, path, data)
        .with_context(|| format!("cannot add {path} to the archive"))
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    builder
        .append_data(&mut header, path, std::io::empty())
        .with_context(|| format!("cannot add {path} to the archive"))
}

fn create_archive(out: &Path) -> Result<tar::Builder<std::io::BufWriter<fs::File>>> {
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(tar::Builder::new(std::io::BufWriter::new(file)))
}

fn finish_archive(builder: tar::Builder<std::io::BufWriter<fs::File>>, out: &Path) -> Result<()> {
    let mut w = builder
        .into_inner()
        .with_context(|| format!("cannot finish {}", out.display()))?;
    w.flush()
        .with_context(|| format!("cannot write {}", out.display()))
}

/// The `manifest.json` of `docker save`, with blob paths in `blobs/sha256/<hex>` form
/// (which docker 20.10 also accepts: it only follows the paths).
fn docker_manifest(image: &Image) -> Value {
    json!([{
        "Config": format!("blobs/sha256/{}", hex_of(&image.config.digest)),
        "RepoTags": [image.name],
        "Layers": image.layers.iter()
            .map(|l| format!("blobs/sha256/{}", hex_of(&l.blob.digest)))
            .collect::<Vec<_>>()
    }])
}

/// Writes `image` as a `docker save` archive: `manifest.json`, the config and the
/// layer tars. Loadable by `docker load` and `ctr images import`.
pub fn write_docker_archive(image: &Image, out: &Path) -> Result<()> {
    let mut b = create_archive(out)?;
    append_dir(&mut b, "blobs/")?;
    append_dir(&mut b, "blobs/sha256/")?;
    append_blobs(&mut b, image, false)?;
    let manifest = docker_manifest(image).to_string();
    append_file(&mut b, "manifest.json", manifest.as_bytes())?;
    finish_archive(b, out)
}

fn append_blobs<W: Write>(b: &mut tar::Builder<W>, image: &Image, manifest: bool) -> Result<()> {
    let mut blobs: Vec<Blob> = image.layers.iter().map(|l| l.blob.clone()).collect();
    blobs.push(image.config.clone());
    if manifest {
        blobs.push(image.manifest());
    }
    blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    blobs.dedup_by(|a, b| a.digest == b.digest);
    for blob in &blobs {
        append_file(
            b,
            &format!("blobs/sha256/{}", hex_of(&blob.digest)),
            &blob.data,
        )?;
    }
    Ok(())
}

/// The `index.json` of an OCI layout holding `image`, named for both the OCI spec
/// (`org.opencontainers.image.ref.name`: the tag) and containerd
/// (`io.containerd.image.name`: the full reference, which `ctr images import` uses).
pub fn oci_index(image: &Image) -> Value {
    let mut desc = image.manifest().descriptor(MEDIA_TYPE_OCI_MANIFEST);
    desc["annotations"] = json!({
        "io.containerd.image.name": image.containerd_name(),
        "org.opencontainers.image.ref.name": image.tag()
    });
    json!({ "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": [desc] })
}

/// Writes `image` as a tar of an OCI image layout (`oci-layout`, `index.json`,
/// `blobs/sha256/...`). Like `docker save` since Docker 25 it also carries a
/// `manifest.json`, so Docker 20.10 (which predates OCI-layout loading) loads it too.
pub fn write_oci_layout(image: &Image, out: &Path) -> Result<()> {
    let mut b = create_archive(out)?;
    append_dir(&mut b, "blobs/")?;
    append_dir(&mut b, "blobs/sha256/")?;
    append_blobs(&mut b, image, true)?;
    append_file(
        &mut b,
        "index.json",
        oci_index(image).to_string().as_bytes(),
    )?;
    append_file(
        &mut b,
        "manifest.json",
        docker_manifest(image).to_string().as_bytes(),
    )?;
    append_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    finish_archive(b, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn read_tar(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        let mut files = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        files
    }

    fn json_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
        serde_json::from_slice(&files[name]).unwrap()
    }

    /// Checks that `blobs/sha256/<hex>` exists, hashes to its name and has `size`.
    fn check_descriptor(files: &BTreeMap<String, Vec<u8>>, desc: &Value) -> Vec<u8> {
        let digest = desc["digest"].as_str().unwrap();
        let data = files[&format!("blobs/sha256/{}", hex_of(digest))].clone();
        assert_eq!(sha256_digest(&data), digest);
        assert_eq!(desc["size"].as_u64().unwrap(), data.len() as u64);
        data
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn names_normalize_like_docker() {
        assert_eq!(
            normalize_name("busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_name("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn oci_layout_digests_match_blobs() {
        let image = busybox_image().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("oci.tar");
        write_oci_layout(&image, &out).unwrap();
        let files = read_tar(&out);
        assert_eq!(json_of(&files, "oci-layout")["imageLayoutVersion"], "1.0.0");
        let index = json_of(&files, "index.json");
        let mdesc = &index["manifests"][0];
        assert_eq!(
            mdesc["annotations"]["io.containerd.image.name"],
            "docker.io/library/busybox:latest"
        );
        let manifest: Value = serde_json::from_slice(&check_descriptor(&files, mdesc)).unwrap();
        let config: Value =
            serde_json::from_slice(&check_descriptor(&files, &manifest["config"])).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let layer = check_descriptor(&files, &layers[0]);
        // Uncompressed layers: the diff id is the layer digest.
        assert_eq!(config["rootfs"]["diff_ids"][0], layers[0]["digest"]);
        let entries = read_layer_names(&layer);
        assert!(entries.contains(&"bin/busybox".to_string()), "{entries:?}");
        assert!(entries.contains(&"bin/sh".to_string()));
        // The docker-compatible manifest.json points at the same blobs.
        let dm = json_of(&files, "manifest.json");
        assert_eq!(
            dm[0]["Config"],
            format!("blobs/sha256/{}", hex_of(&image.config.digest))
        );
    }

    fn read_layer_names(layer: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(layer);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().mtime().unwrap(), FIXED_MTIME);
                assert_eq!(e.header().uid().unwrap(), 0);
                e.path().unwrap().to_string_lossy().into_owned()
            })
            .collect()
    }

    #[test]
    fn docker_archive_matches_config_and_layers() {
        let image = busybox_image().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("docker.tar");
        write_docker_archive(&image, &out).unwrap();
        let files = read_tar(&out);
        let m = json_of(&files, "manifest.json");
        assert_eq!(m[0]["RepoTags"][0], "busybox:latest");
        let config_path = m[0]["Config"].as_str().unwrap();
        let config_data = &files[config_path];
        assert_eq!(
            sha256_digest(config_data),
            format!("sha256:{}", config_path.rsplit('/').next().unwrap())
        );
        let config: Value = serde_json::from_slice(config_data).unwrap();
        let layer_path = m[0]["Layers"][0].as_str().unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0].as_str().unwrap(),
            sha256_digest(&files[layer_path])
        );
    }

    #[test]
    fn output_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write_oci_layout(&busybox_image().unwrap(), &a).unwrap();
        write_oci_layout(&busybox_image().unwrap(), &b).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    }
}
