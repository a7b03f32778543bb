#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Layer, gzip, sha, zstd};
use snapshots::Whiteouts;
use tar::EntryType;
use unpack::{ApplyOptions, Compression, UnpackError, apply_layer};

fn apply(layer: &[u8], dir: &Path) -> Result<unpack::Applied, UnpackError> {
    apply_layer(layer, dir, ApplyOptions::new(Whiteouts::Delete))
}

/// `<tmp>/root` is where layers go; anything appearing in `<tmp>` besides it escaped.
fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    (t, root)
}

fn assert_nothing_outside(t: &tempfile::TempDir) {
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["root"],
        "something was written outside the root"
    );
}

fn refused(layer: Vec<u8>, expect: &str) {
    let (t, root) = sandbox();
    let err = apply(&layer, &root).unwrap_err();
    assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
    assert!(err.to_string().contains(expect), "{err}");
    assert_nothing_outside(&t);
}

#[test]
fn dotdot_entry_is_refused() {
    refused(
        Layer::new()
            .raw(EntryType::Regular, "../x", "", b"evil")
            .build(),
        "'..' component",
    );
    refused(
        Layer::new()
            .raw(EntryType::Regular, "a/../../x", "", b"evil")
            .build(),
        "'..'",
    );
}

#[test]
fn absolute_entry_is_refused() {
    refused(
        Layer::new()
            .raw(EntryType::Regular, "/etc/passwd", "", b"evil")
            .build(),
        "absolute path",
    );
}

#[test]
fn writing_through_a_symlink_to_the_host_root_is_refused() {
    let unique = format!("unpack-escape-{}", std::process::id());
    let layer = Layer::new()
        .symlink("a", "/")
        .raw(EntryType::Regular, &format!("a/tmp/{unique}"), "", b"evil")
        .build();
    refused(layer, "symlink /a -> /");
    assert!(!Path::new("/tmp").join(&unique).exists());
    // A relative symlink climbing out is refused the same way.
    refused(
        Layer::new()
            .symlink("b", "../..")
            .raw(EntryType::Regular, "b/x", "", b"e")
            .build(),
        "symlink /b",
    );
}

#[test]
fn hardlink_outside_is_refused() {
    refused(
        Layer::new()
            .raw(EntryType::Link, "x", "../../x", b"")
            .build(),
        "hardlink target",
    );
    refused(
        Layer::new()
            .raw(EntryType::Link, "x", "/etc/passwd", b"")
            .build(),
        "hardlink target",
    );
}

#[test]
fn symlinks_inside_are_followed_and_stored_verbatim() {
    let (t, root) = sandbox();
    let layer = Layer::new()
        .dir("usr")
        .dir("usr/lib")
        .symlink("lib", "usr/lib")
        .file("lib/x", b"via link")
        .symlink("abs", "/etc/passwd")
        .build();
    apply(&layer, &root).unwrap();
    assert_eq!(fs::read(root.join("usr/lib/x")).unwrap(), b"via link");
    assert_eq!(
        fs::read_link(root.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_nothing_outside(&t);
}

#[test]
fn devices_are_refused_unless_allowed() {
    let (_t, root) = sandbox();
    let layer = Layer::new().char_dev("null", 1, 3).build();
    let opts = ApplyOptions {
        whiteouts: Whiteouts::Delete,
        allow_devices: false,
    };
    let err = apply_layer(&layer[..], &root, opts).unwrap_err();
    assert!(matches!(err, UnpackError::Device(_)), "{err}");
    assert!(!root.join("null").exists());
    let opts = ApplyOptions {
        whiteouts: Whiteouts::Delete,
        allow_devices: true,
    };
    apply_layer(&layer[..], &root, opts).unwrap();
    assert_eq!(
        fs::metadata(root.join("null")).unwrap().rdev(),
        nix::sys::stat::makedev(1, 3)
    );
}

#[test]
fn metadata_hardlinks_and_diff_ids_survive_every_compression() {
    let plain = Layer::new()
        .dir("d")
        .file_mode("d/suid", b"x", 0o4755, 1000, 1001)
        .hardlink("d/link", "d/suid")
        .file_with_xattr("d/cap", b"c", "user.test", b"v1")
        .build();
    for (blob, kind) in [
        (plain.clone(), Compression::None),
        (gzip(&plain), Compression::Gzip),
        (zstd(&plain), Compression::Zstd),
    ] {
        let (_t, root) = sandbox();
        let applied = apply(&blob, &root).unwrap();
        assert_eq!(applied.compression, kind);
        assert_eq!(applied.diff_id.as_str(), sha(&plain));
        assert_eq!(applied.size, plain.len() as u64);
        let md = fs::symlink_metadata(root.join("d/suid")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o4755);
        assert_eq!((md.uid(), md.gid()), (1000, 1001));
        assert_eq!(md.mtime(), 1_600_000_000);
        assert_eq!(md.nlink(), 2);
        assert_eq!(fs::metadata(root.join("d")).unwrap().mtime(), 1_600_000_000);
        let mut v = [0u8; 8];
        let n = rustix::fs::lgetxattr(root.join("d/cap"), "user.test", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"v1");
    }
}

#[test]
fn whiteouts_and_opaque_dirs_delete_on_a_plain_directory() {
    let (_t, root) = sandbox();
    let l1 = Layer::new()
        .dir("etc")
        .file("etc/a", b"a")
        .file("etc/b", b"b")
        .dir("opq")
        .file("opq/old", b"old")
        .dir("gone")
        .file("gone/f", b"f")
        .build();
    let l2 = Layer::new()
        .whiteout("etc", "a")
        .whiteout("", "gone")
        .dir("opq")
        .file("opq/new", b"new")
        .opaque("opq")
        .file("etc/b", b"replaced")
        .build();
    apply(&l1, &root).unwrap();
    apply(&l2, &root).unwrap();
    assert!(!root.join("etc/a").exists());
    assert!(!root.join("gone").exists());
    assert!(!root.join(".wh.gone").exists());
    assert_eq!(fs::read(root.join("etc/b")).unwrap(), b"replaced");
    assert!(!root.join("opq/old").exists());
    // Opaque only hides what lower layers had, not what this layer put there first.
    assert_eq!(fs::read(root.join("opq/new")).unwrap(), b"new");
}

#[test]
fn overlay_mode_writes_whiteout_devices_and_opaque_xattrs() {
    let (_t, root) = sandbox();
    let layer = Layer::new()
        .dir("etc")
        .whiteout("etc", "a")
        .dir("opq")
        .opaque("opq")
        .build();
    apply_layer(&layer[..], &root, ApplyOptions::new(Whiteouts::Overlay)).unwrap();
    let md = fs::symlink_metadata(root.join("etc/a")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(root.join("opq"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
}
