#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{ErrorKind, HasKind};
use content::Digest;
use metadata::{
    Any, Container, Db, Descriptor, Image, Labels, LeaseResource, Runtime, Snapshot, SnapshotKind,
    snapshot_tx,
};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image(name: &str, digest: &str) -> Image {
    Image {
        name: name.into(),
        labels: Labels::new(),
        target: Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 1,
            annotations: BTreeMap::new(),
        },
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    }
}

fn container(id: &str, snapshot_key: &str) -> Container {
    Container {
        id: id.into(),
        labels: labels(&[("app", "x")]),
        image: "docker.io/library/busybox:latest".into(),
        runtime: Runtime {
            name: "io.containerd.runc.v2".into(),
            options: Some(Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: vec![1, 2, 3],
            }),
        },
        spec: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        }),
        snapshotter: "overlayfs".into(),
        snapshot_key: snapshot_key.into(),
        sandbox: String::new(),
        extensions: BTreeMap::new(),
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    }
}

fn snapshot(tx: &redb::WriteTransaction, key: &str, parent: Option<&str>, l: Labels) {
    let id = snapshot_tx::next_id(tx, "overlayfs").unwrap();
    let s = Snapshot {
        key: key.into(),
        id,
        parent: parent.map(String::from),
        kind: SnapshotKind::Committed,
        labels: l,
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
        size: None,
        inodes: None,
    };
    snapshot_tx::put(tx, "overlayfs", "default", &s).unwrap();
}

#[test]
fn namespaces_images_containers_leases_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open(&t.path().join("meta.redb")).unwrap();
    db.create_image("default", image("a:1", "sha256:aa"))
        .unwrap();
    let err = db
        .create_image("default", image("a:1", "sha256:bb"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(db.get_namespace("default").unwrap().name, "default");
    db.create_namespace("other", labels(&[("k", "v")])).unwrap();
    db.create_image("other", image("a:1", "sha256:cc")).unwrap();
    assert_eq!(db.list_images("default").unwrap().len(), 1);
    assert_eq!(
        db.get_image("other", "a:1").unwrap().target.digest,
        "sha256:cc"
    );
    let img = db
        .update_image("default", "a:1", |i| {
            i.labels.insert("x".into(), "y".into());
        })
        .unwrap();
    assert!(img.updated_at >= img.created_at);

    let c = db
        .create_container("default", container("c1", "c1"))
        .unwrap();
    assert_eq!(db.get_container("default", "c1").unwrap(), c);
    let err = db
        .update_container("default", "c1", |c| c.snapshot_key = "other".into())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        db.get_container("default", "c1").unwrap().snapshot_key,
        "c1"
    );
    assert_eq!(db.list_containers("other").unwrap().len(), 0);

    db.create_lease("default", "l1", Labels::new()).unwrap();
    let r = LeaseResource {
        id: "sha256:aa".into(),
        kind: "content".into(),
    };
    db.add_lease_resource("default", "l1", r.clone()).unwrap();
    db.add_lease_resource("default", "l1", r.clone()).unwrap();
    assert_eq!(db.get_lease("default", "l1").unwrap().resources, vec![r]);

    let err = db.delete_namespace("default").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    db.delete_image("other", "a:1").unwrap();
    db.delete_namespace("other").unwrap();
    assert_eq!(db.list_namespaces().unwrap().len(), 1);
    assert_eq!(
        db.delete_container("default", "nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn a_failed_or_dropped_transaction_leaves_nothing_and_reopen_is_consistent() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("meta.redb");
    {
        let db = Db::open(&path).unwrap();
        db.create_image("default", image("kept", "sha256:aa"))
            .unwrap();
        let err = db
            .update(|tx| {
                snapshot(tx, "half", None, Labels::new());
                Err::<(), _>(metadata::MetaError::InvalidArgument("boom".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("boom"));
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.list_images("default").unwrap().len(), 1);
    assert!(
        db.list_snapshots("overlayfs", "default")
            .unwrap()
            .is_empty()
    );
}

/// The child half of `sigkill_during_writes_leaves_a_consistent_database`: writes in a
/// loop until killed. Without the variable it has nothing to do and returns.
#[test]
fn kill_child_writer() {
    let Ok(path) = std::env::var("METADATA_KILL_CHILD_DB") else {
        return;
    };
    let db = Db::open(std::path::Path::new(&path)).unwrap();
    for i in 0.. {
        // Each transaction writes a pair that must always be seen together.
        db.update(|tx| {
            snapshot(tx, &format!("s{i}"), None, Labels::new());
            snapshot(tx, &format!("t{i}"), Some(&format!("s{i}")), Labels::new());
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn sigkill_during_writes_leaves_a_consistent_database() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("meta.redb");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill_child_writer", "--nocapture"])
            .env("METADATA_KILL_CHILD_DB", &path)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let db = Db::open(&path).unwrap();
        let snaps = db.list_snapshots("overlayfs", "default").unwrap();
        assert!(!snaps.is_empty(), "round {round}: the child wrote nothing");
        let keys: std::collections::BTreeSet<_> = snaps.iter().map(|s| s.key.clone()).collect();
        for s in &snaps {
            let pair = if let Some(n) = s.key.strip_prefix('s') {
                format!("t{n}")
            } else {
                format!("s{}", &s.key[1..])
            };
            assert!(
                keys.contains(&pair),
                "round {round}: {} without {pair}",
                s.key
            );
        }
        // Clear for the next round so that keys restart at 0.
        db.update(|tx| {
            for s in &snaps {
                snapshot_tx::remove(tx, "overlayfs", "default", &s.key)?;
            }
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn gc_keeps_what_images_leases_and_containers_reach() {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open(&t.path().join("meta.redb")).unwrap();
    let store = db
        .content_store(&t.path().join("content"), "default")
        .unwrap();
    let put = |data: &[u8], l: Labels| {
        let d = Digest::of(data);
        store.write_blob(&d, data, &l).unwrap();
        d
    };
    let layer = put(b"layer", Labels::new());
    let config = put(
        b"config",
        labels(&[("containerd.io/gc.ref.snapshot.overlayfs", "chain2")]),
    );
    let manifest = put(
        b"manifest",
        labels(&[
            ("containerd.io/gc.ref.content.config", config.as_str()),
            ("containerd.io/gc.ref.content.l.0", layer.as_str()),
        ]),
    );
    let leased = put(b"leased", Labels::new());
    let garbage = put(b"garbage", Labels::new());
    let garbage_child = put(b"garbage child", Labels::new());
    let garbage_parent = put(
        b"garbage parent",
        labels(&[("containerd.io/gc.ref.content.x", garbage_child.as_str())]),
    );
    db.update(|tx| {
        snapshot(tx, "chain1", None, Labels::new());
        snapshot(tx, "chain2", Some("chain1"), Labels::new());
        snapshot(tx, "orphan", Some("chain1"), Labels::new());
        snapshot(tx, "ctr-rootfs", Some("chain2"), Labels::new());
        snapshot(tx, "leased-snap", None, Labels::new());
        Ok(())
    })
    .unwrap();
    db.create_image("default", image("img", manifest.as_str()))
        .unwrap();
    db.create_container("default", container("c", "ctr-rootfs"))
        .unwrap();
    db.create_lease("default", "l", Labels::new()).unwrap();
    db.add_lease_resource(
        "default",
        "l",
        LeaseResource {
            id: leased.to_string(),
            kind: "content".into(),
        },
    )
    .unwrap();
    db.add_lease_resource(
        "default",
        "l",
        LeaseResource {
            id: "leased-snap".into(),
            kind: "snapshots/overlayfs".into(),
        },
    )
    .unwrap();

    let report = db.garbage_collect(Some(&store)).unwrap();
    let mut gone = vec![
        garbage.to_string(),
        garbage_child.to_string(),
        garbage_parent.to_string(),
    ];
    gone.sort();
    assert_eq!(report.content, gone);
    assert_eq!(report.snapshots.len(), 1);
    assert_eq!(report.snapshots[0].key, "orphan");
    for d in [&layer, &config, &manifest, &leased] {
        assert!(store.exists(d), "{d} was collected");
    }
    assert!(!store.exists(&garbage));

    // Dropping the image and the container frees the chain; the lease still holds.
    db.delete_image("default", "img").unwrap();
    db.delete_container("default", "c").unwrap();
    let report = db.garbage_collect(Some(&store)).unwrap();
    assert_eq!(report.content.len(), 3);
    let keys: Vec<_> = report.snapshots.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(store.exists(&leased));
    assert_eq!(db.list_snapshots("overlayfs", "default").unwrap().len(), 1);
    db.delete_lease("default", "l").unwrap();
    let report = db.garbage_collect(Some(&store)).unwrap();
    assert_eq!((report.content.len(), report.snapshots.len()), (1, 1));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn write_latency_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&t.path().join("meta.redb")).unwrap());
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        db.create_container("default", container(&format!("c{i}"), &format!("c{i}")))
            .unwrap();
    }
    let per = start.elapsed() / n;
    let start = Instant::now();
    for i in 0..n {
        db.get_container("default", &format!("c{i}")).unwrap();
    }
    let read = start.elapsed() / n;
    eprintln!("metadata: durable create_container {per:?}/op, get_container {read:?}/op");
    assert!(
        per < Duration::from_millis(200),
        "{per:?} per durable write"
    );
}
