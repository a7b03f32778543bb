//! Import, unpack, mount, collect and export. Needs root (overlay mounts, chroot).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{busybox_layers, docker_archive, oci_layout, sha};
use content::{Digest, Store};
use metadata::Db;
use snapshots::{Driver, MountGuard, Snapshotter};

const NS: &str = "default";

struct Env {
    t: tempfile::TempDir,
    db: Arc<Db>,
    store: Store,
    sn: Snapshotter,
}

fn env(driver: Driver) -> Env {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open(&t.path().join("meta.redb")).unwrap();
    let store = db.content_store(&t.path().join("content"), NS).unwrap();
    let sn = Snapshotter::new(driver, &t.path().join("snapshotter"), Arc::clone(&db)).unwrap();
    Env { t, db, store, sn }
}

/// Prepares a container snapshot on the image, mounts it and checks the merged tree.
fn check_rootfs(e: &Env, top: &str) {
    let mounts =
        e.sn.prepare(NS, "ctr-rootfs", Some(top), Default::default())
            .unwrap();
    let target = e.t.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let m = MountGuard::new(&mounts, &target).unwrap();
    let root = m.path();
    assert!(root.join("bin/sh").exists(), "bin/sh missing");
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(fs::read(root.join("hello")).unwrap(), b"from zstd layer\n");
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"layer2\n");
    assert!(root.join("etc/passwd").exists());
    assert!(!root.join("etc/group").exists(), "whiteout not effective");
    assert!(!root.join("opq/old").exists(), "opaque dir not effective");
    assert_eq!(fs::read(root.join("opq/new")).unwrap(), b"new");
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", "read h < /etc/hostname; echo hi from $h"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from layer2\n");
}

fn import_and_check(driver: Driver, tar: &[u8], name: &str) -> Env {
    let e = env(driver);
    let images = unpack::import_archive(tar, &e.store, &e.db, NS).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, name);
    let top = unpack::unpack_image(&e.db, &e.store, &e.sn, NS, name).unwrap();
    let layers = busybox_layers();
    let diff_ids: Vec<String> = layers.iter().map(|(_, u)| sha(u)).collect();
    assert_eq!(top, *unpack::chain_ids(&diff_ids).last().unwrap());
    // Labelled as containerd labels them.
    let info = e.sn.stat(NS, &top).unwrap();
    assert_eq!(info.labels["containerd.io/snapshot.ref"], top);
    let l0 = e
        .store
        .info(&Digest::parse(&sha(&layers[1].0)).unwrap())
        .unwrap();
    assert_eq!(l0.labels["containerd.io/uncompressed"], diff_ids[1]);
    let target = Digest::parse(&images[0].target.digest).unwrap();
    let m = e.store.info(&target).unwrap();
    assert!(
        m.labels.contains_key("containerd.io/gc.ref.content.config"),
        "{:?}",
        m.labels
    );
    assert_eq!(
        m.labels["containerd.io/gc.ref.content.l.2"],
        sha(&layers[2].0)
    );
    let cfg = e
        .store
        .info(&Digest::parse(&m.labels["containerd.io/gc.ref.content.config"]).unwrap())
        .unwrap();
    assert_eq!(
        cfg.labels[&format!("containerd.io/gc.ref.snapshot.{}", e.sn.name())],
        top
    );
    // Unpacking again finds every layer in place.
    assert_eq!(
        unpack::unpack_image(&e.db, &e.store, &e.sn, NS, name).unwrap(),
        top
    );
    assert_eq!(e.sn.list(NS).unwrap().len(), 3);
    check_rootfs(&e, &top);
    e
}

#[test]
fn docker_archive_imports_unpacks_and_runs_on_overlay() {
    let tar = docker_archive("busybox:latest", &busybox_layers());
    let e = import_and_check(Driver::Overlay, &tar, "docker.io/library/busybox:latest");
    // Config, three layers and the manifest made for it; docker's legacy files dropped.
    assert_eq!(e.store.list().unwrap().len(), 5);
}

#[test]
fn oci_layout_imports_unpacks_and_runs_on_overlay() {
    let tar = oci_layout("example.com/busybox:oci", &busybox_layers());
    import_and_check(Driver::Overlay, &tar, "example.com/busybox:oci");
}

#[test]
fn docker_archive_on_the_native_snapshotter() {
    let tar = docker_archive("busybox:native", &busybox_layers());
    import_and_check(Driver::Native, &tar, "docker.io/library/busybox:native");
}

#[test]
fn gc_keeps_an_imported_image_and_frees_it_once_deleted() {
    let name = "docker.io/library/busybox:latest";
    let e = import_and_check(
        Driver::Overlay,
        &docker_archive("busybox", &busybox_layers()),
        name,
    );
    // A stray blob nobody references goes; the image, its snapshots and the container's
    // active snapshot (held by a container record) stay.
    e.store
        .write_blob(&Digest::of(b"stray"), b"stray", &Default::default())
        .unwrap();
    let c = metadata::Container {
        id: "c1".into(),
        labels: Default::default(),
        image: name.into(),
        runtime: metadata::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        },
        spec: None,
        snapshotter: e.sn.name().into(),
        snapshot_key: "ctr-rootfs".into(),
        sandbox: String::new(),
        extensions: Default::default(),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    };
    e.db.create_container(NS, c).unwrap();
    let r = e.db.garbage_collect(Some(&e.store)).unwrap();
    assert_eq!(r.content, vec![Digest::of(b"stray").to_string()]);
    assert!(r.snapshots.is_empty(), "{:?}", r.snapshots);
    assert_eq!(e.store.list().unwrap().len(), 5);

    e.db.delete_container(NS, "c1").unwrap();
    e.db.delete_image(NS, name).unwrap();
    let r = e.db.garbage_collect(Some(&e.store)).unwrap();
    assert_eq!(r.content.len(), 5);
    assert_eq!(r.snapshots.len(), 4);
    assert!(e.store.list().unwrap().is_empty());
    assert_eq!(e.sn.cleanup().unwrap(), 4);
    assert_eq!(
        fs::read_dir(e.t.path().join("snapshotter/snapshots"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn export_then_import_elsewhere_gives_the_same_image() {
    let name = "docker.io/library/busybox:latest";
    let e = import_and_check(
        Driver::Overlay,
        &docker_archive("busybox", &busybox_layers()),
        name,
    );
    let mut out = Vec::new();
    unpack::export_oci(&e.store, &e.db, NS, &[name.to_string()], &mut out).unwrap();
    let original = e.db.get_image(NS, name).unwrap().target;

    let e2 = env(Driver::Overlay);
    let images = unpack::import_archive(&out[..], &e2.store, &e2.db, NS).unwrap();
    assert_eq!(images[0].name, name);
    assert_eq!(images[0].target.digest, original.digest);
    assert_eq!(e2.store.list().unwrap().len(), 5);
    let top = unpack::unpack_image(&e2.db, &e2.store, &e2.sn, NS, name).unwrap();
    check_rootfs(&e2, &top);
}

#[test]
fn a_layer_whose_diff_id_lies_is_refused_and_leaves_no_snapshot() {
    let mut layers = busybox_layers();
    let (blob, _) = layers[2].clone();
    layers[2] = (blob, b"something else".to_vec());
    let e = env(Driver::Overlay);
    let tar = docker_archive("liar", &layers);
    unpack::import_archive(&tar[..], &e.store, &e.db, NS).unwrap();
    let err = unpack::unpack_image(&e.db, &e.store, &e.sn, NS, "docker.io/library/liar:latest")
        .unwrap_err();
    assert!(
        matches!(err, unpack::UnpackError::DiffIdMismatch { .. }),
        "{err}"
    );
    // The two good layers stay committed; the bad one's extraction is gone.
    assert_eq!(e.sn.list(NS).unwrap().len(), 2);
}
