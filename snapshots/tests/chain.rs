//! Needs root (mounts, overlay whiteouts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::fs;
use std::path::Path;

use common::{ErrorKind, HasKind};
use metadata::{Db, Labels};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use snapshots::{Driver, Kind, MountGuard, Snapshotter, Whiteouts};

fn setup(driver: Driver) -> (tempfile::TempDir, Snapshotter) {
    let t = tempfile::tempdir().unwrap();
    let db = Db::open(&t.path().join("meta.redb")).unwrap();
    let s = Snapshotter::new(driver, &t.path().join("sn"), db).unwrap();
    (t, s)
}

/// Writes a layer the way an applier would: in overlay mode deletions are whiteouts.
fn layer(s: &Snapshotter, key: &str, parent: Option<&str>, f: impl FnOnce(&Path, Whiteouts)) {
    s.prepare("default", key, parent, Labels::new()).unwrap();
    let (dir, mode) = s.apply_dir("default", key).unwrap();
    f(&dir, mode);
    s.commit("default", &format!("{key}-c"), key, Labels::new())
        .unwrap();
}

fn delete(dir: &Path, mode: Whiteouts, name: &str) {
    match mode {
        Whiteouts::Overlay => mknod(
            &dir.join(name),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap(),
        Whiteouts::Delete => {
            let p = dir.join(name);
            if p.is_dir() {
                fs::remove_dir_all(p).unwrap()
            } else {
                fs::remove_file(p).unwrap()
            }
        }
    }
}

fn opaque(dir: &Path, mode: Whiteouts, name: &str) {
    let d = dir.join(name);
    match mode {
        Whiteouts::Overlay => {
            fs::create_dir_all(&d).unwrap();
            rustix::fs::setxattr(
                &d,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        Whiteouts::Delete => {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    fs::remove_dir_all(p).unwrap()
                } else {
                    fs::remove_file(p).unwrap()
                }
            }
        }
    }
}

fn three_layers_merge(driver: Driver) {
    let (t, s) = setup(driver);
    layer(&s, "l1", None, |d, _| {
        fs::create_dir_all(d.join("etc")).unwrap();
        fs::create_dir_all(d.join("opq")).unwrap();
        fs::write(d.join("etc/one"), "1").unwrap();
        fs::write(d.join("etc/gone"), "x").unwrap();
        fs::write(d.join("opq/old"), "old").unwrap();
    });
    layer(&s, "l2", Some("l1-c"), |d, m| {
        fs::create_dir_all(d.join("etc")).unwrap();
        fs::write(d.join("etc/two"), "2").unwrap();
        delete(d, m, "etc/gone");
    });
    layer(&s, "l3", Some("l2-c"), |d, m| {
        fs::write(d.join("three"), "3").unwrap();
        opaque(d, m, "opq");
        fs::write(d.join("opq/new"), "new").unwrap();
    });
    let mounts = s
        .prepare("default", "top", Some("l3-c"), Labels::new())
        .unwrap();
    if driver == Driver::Overlay {
        assert_eq!(mounts[0].kind, "overlay");
        let lower = mounts[0]
            .options
            .iter()
            .find(|o| o.starts_with("lowerdir="))
            .unwrap();
        assert_eq!(lower.matches(':').count(), 2, "{lower}");
    } else {
        assert_eq!(mounts[0].kind, "bind");
    }
    let target = t.path().join("mnt");
    fs::create_dir(&target).unwrap();
    {
        let m = MountGuard::new(&mounts, &target).unwrap();
        let root = m.path();
        assert_eq!(fs::read_to_string(root.join("etc/one")).unwrap(), "1");
        assert_eq!(fs::read_to_string(root.join("etc/two")).unwrap(), "2");
        assert_eq!(fs::read_to_string(root.join("three")).unwrap(), "3");
        assert!(!root.join("etc/gone").exists(), "whiteout not effective");
        assert!(!root.join("opq/old").exists(), "opaque dir not effective");
        assert_eq!(fs::read_to_string(root.join("opq/new")).unwrap(), "new");
        fs::write(root.join("written"), "rw").unwrap();
    }
    assert!(!target.join("etc").exists(), "still mounted");
    let u = s.usage("default", "top").unwrap();
    assert!(u.inodes >= 2, "{u:?}");

    // A read-only view of the chain.
    let view = s.view("default", "v", Some("l3-c"), Labels::new()).unwrap();
    {
        let m = MountGuard::new(&view, &target).unwrap();
        assert!(m.path().join("etc/one").exists());
        assert!(
            fs::write(m.path().join("nope"), "x").is_err(),
            "view is writable"
        );
    }
    assert_eq!(s.stat("default", "v").unwrap().kind, Kind::View);
    assert_eq!(s.list("default").unwrap().len(), 5);
    let err = s.remove("default", "l1-c").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    for k in ["top", "v", "l3-c", "l2-c", "l1-c"] {
        s.remove("default", k).unwrap();
    }
    assert!(s.list("default").unwrap().is_empty());
    assert_eq!(
        fs::read_dir(t.path().join("sn/snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn overlay_three_layer_chain_merges_with_whiteouts_and_opaque_dirs() {
    three_layers_merge(Driver::Overlay);
}

#[test]
fn native_three_layer_chain_merges() {
    three_layers_merge(Driver::Native);
}

#[test]
fn errors_and_cleanup() {
    let (t, s) = setup(Driver::Overlay);
    s.prepare("default", "a", None, Labels::new()).unwrap();
    assert_eq!(
        s.prepare("default", "a", None, Labels::new())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        s.prepare("default", "b", Some("a"), Labels::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument,
        "an active parent must be refused"
    );
    assert_eq!(
        s.prepare("default", "b", Some("missing"), Labels::new())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Namespaces do not see each other's keys.
    assert!(s.stat("other", "a").is_err());
    let mounts = s.mounts("default", "a").unwrap();
    assert_eq!(mounts[0].kind, "bind");
    assert_eq!(mounts[0].options, vec!["rw", "rbind"]);
    fs::create_dir_all(t.path().join("sn/snapshots/999/fs")).unwrap();
    assert_eq!(s.cleanup().unwrap(), 1);
    assert!(t.path().join("sn/snapshots/1/fs").exists());
    let mut l = Labels::new();
    l.insert("k".into(), "v".into());
    assert_eq!(
        s.update_labels("default", "a", l.clone()).unwrap().labels,
        l
    );
    s.commit("default", "a-c", "a", Labels::new()).unwrap();
    assert_eq!(s.stat("default", "a-c").unwrap().labels, l);
    assert_eq!(
        s.mounts("default", "a-c").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
}

#[test]
fn overlay_is_supported_here() {
    let t = tempfile::tempdir().unwrap();
    assert!(Snapshotter::overlay_supported(t.path()));
}
