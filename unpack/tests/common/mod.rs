//! Test images built in memory with the `tar` crate. Stand-in for `testkit::image`
//! (being written in parallel): only `busybox_layers`, `docker_archive` and
//! `oci_layout` are used by the tests, so swapping them is local.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use sha2::{Digest as _, Sha256};

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Default)]
pub struct Layer {
    b: Option<tar::Builder<Vec<u8>>>,
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn b(&mut self) -> &mut tar::Builder<Vec<u8>> {
        self.b.as_mut().unwrap()
    }

    pub fn dir(mut self, path: &str) -> Self {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        self.b().append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644, 0, 0)
    }

    pub fn file_mode(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b().append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.b().append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        self.b().append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"")
    }

    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    pub fn char_dev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = header(tar::EntryType::Char, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b().append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// An entry whose name (and link name) bytes are written as is, bypassing the
    /// tar crate's own refusal of `..` and absolute paths: what a hostile layer holds.
    pub fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.b().append(&h, data).unwrap();
        self
    }

    pub fn file_with_xattr(mut self, path: &str, data: &[u8], key: &str, value: &[u8]) -> Self {
        self.b()
            .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value)])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 0o640, data.len() as u64);
        self.b().append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn build(mut self) -> Vec<u8> {
        self.b.take().unwrap().into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Three layers: plain (busybox, /bin/sh, /etc), gzip (adds, deletes etc/group,
/// makes /opq opaque), zstd (adds /hello). Returns (blob, uncompressed) pairs.
pub fn busybox_layers() -> Vec<(Vec<u8>, Vec<u8>)> {
    let busybox =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (Makefile deps)");
    let l1 = Layer::new()
        .dir("bin")
        .file_mode("bin/busybox", &busybox, 0o755, 0, 0)
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("etc")
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .file("etc/group", b"root:x:0:\n")
        .dir("opq")
        .file("opq/old", b"old")
        .build();
    let l2 = Layer::new()
        .dir("etc")
        .whiteout("etc", "group")
        .file("etc/hostname", b"layer2\n")
        .dir("opq")
        .opaque("opq")
        .file("opq/new", b"new")
        .build();
    let l3 = Layer::new().file("hello", b"from zstd layer\n").build();
    vec![(l1.clone(), l1), (gzip(&l2), l2), (zstd(&l3), l3)]
}

fn config(layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|(_, u)| sha(u)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn add(t: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    t.append_data(&mut h, path, data).unwrap();
}

/// A `docker save` tar (legacy layout: `<id>/layer.tar`, `<config hex>.json`,
/// manifest.json last, as docker 20.10 writes it).
pub fn docker_archive(tag: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let cfg = config(layers);
    let cfg_name = format!("{}.json", &sha(&cfg)[7..]);
    let mut t = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    for (i, (blob, _)) in layers.iter().enumerate() {
        let dir = format!("{:064x}", i + 1);
        add(&mut t, &format!("{dir}/VERSION"), b"1.0");
        add(&mut t, &format!("{dir}/json"), b"{}");
        add(&mut t, &format!("{dir}/layer.tar"), blob);
        names.push(format!("{dir}/layer.tar"));
    }
    add(&mut t, &cfg_name, &cfg);
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]);
    add(
        &mut t,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    t.into_inner().unwrap()
}

/// An OCI image layout tar with one manifest named `name` (containerd annotation).
pub fn oci_layout(name: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let cfg = config(layers);
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|(blob, _)| {
            let mt = match blob.first() {
                Some(0x1f) => "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(0x28) => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            serde_json::json!({"mediaType": mt, "digest": sha(blob), "size": blob.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    }))
    .unwrap();
    let mut t = tar::Builder::new(Vec::new());
    add(&mut t, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&mut t, "index.json", &index);
    for blob in layers.iter().map(|(b, _)| b).chain([&cfg, &manifest]) {
        add(&mut t, &format!("blobs/sha256/{}", &sha(blob)[7..]), blob);
    }
    t.into_inner().unwrap()
}
