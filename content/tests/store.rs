#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeMap;
use std::fs;

use common::{ErrorKind, HasKind};
use content::{ContentError, Digest, Store};

fn store() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path()).unwrap();
    (t, s)
}

#[test]
fn write_commit_read_and_layout() {
    let (t, s) = store();
    let data = b"hello content store";
    let mut w = s.writer("ref-1", data.len() as u64).unwrap();
    let ingest = t.path().join("ingest").join(Digest::of(b"ref-1").hex());
    for f in ["ref", "data", "startedat", "updatedat", "total"] {
        assert!(ingest.join(f).exists(), "{f}");
    }
    w.write(&data[..5]).unwrap();
    w.write(&data[5..]).unwrap();
    let mut labels = BTreeMap::new();
    labels.insert("a".to_string(), "b".to_string());
    let d = w
        .commit(data.len() as u64, Some(&Digest::of(data)), &labels)
        .unwrap();
    assert_eq!(d, Digest::of(data));
    assert!(!ingest.exists());
    let blob = t.path().join("blobs/sha256").join(d.hex());
    assert_eq!(fs::read(&blob).unwrap(), data);
    let info = s.info(&d).unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.labels, labels);
    let r = s.reader(&d).unwrap();
    let mut buf = [0u8; 7];
    r.read_exact_at(&mut buf, 6).unwrap();
    assert_eq!(&buf, b"content");
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn reopening_a_ref_resumes_at_its_offset() {
    let (_t, s) = store();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    {
        let mut w = s.writer("resume", data.len() as u64).unwrap();
        w.write(&data[..40_000]).unwrap();
    }
    let st = s.status("resume").unwrap();
    assert_eq!(
        (st.offset, st.total, st.reference.as_str()),
        (40_000, 100_000, "resume")
    );
    assert_eq!(s.list_statuses().unwrap().len(), 1);
    let mut w = s.writer("resume", 0).unwrap();
    assert_eq!(w.offset(), 40_000);
    // Rewinding with an offset truncates what follows; skipping ahead is refused.
    w.write_at(30_000, &data[30_000..50_000]).unwrap();
    let err = w.write_at(60_000, b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    w.write_at(50_000, &data[50_000..]).unwrap();
    let d = w
        .commit(0, Some(&Digest::of(&data)), &BTreeMap::new())
        .unwrap();
    assert_eq!(s.read_all(&d).unwrap(), data);
    assert!(s.list_statuses().unwrap().is_empty());
}

#[test]
fn commit_verifies_size_and_digest() {
    let (_t, s) = store();
    let mut w = s.writer("bad", 0).unwrap();
    w.write(b"abc").unwrap();
    let err = w.commit(4, None, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
    let mut w = s.writer("bad", 0).unwrap();
    assert_eq!(w.offset(), 3);
    w.write(b"d").unwrap();
    let err = w
        .commit(4, Some(&Digest::of(b"abce")), &BTreeMap::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("unexpected commit digest"),
        "{err}"
    );
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn second_writer_on_a_ref_is_locked_and_duplicates_already_exist() {
    let (_t, s) = store();
    let w = s.writer("busy", 0).unwrap();
    let err = s.writer("busy", 0).unwrap_err();
    assert!(matches!(err, ContentError::Locked(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(matches!(s.abort("busy"), Err(ContentError::Locked(_))));
    drop(w);
    let mut w = s.writer("busy", 0).unwrap();
    w.write(b"same").unwrap();
    w.commit(4, None, &BTreeMap::new()).unwrap();
    let mut w = s.writer("other", 0).unwrap();
    w.write(b"same").unwrap();
    let err = w.commit(4, None, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(s.list_statuses().unwrap().is_empty());
}

#[test]
fn abort_delete_and_update_labels() {
    let (_t, s) = store();
    let mut w = s.writer("gone", 0).unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    s.abort("gone").unwrap();
    assert_eq!(s.status("gone").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.abort("gone").unwrap_err().kind(), ErrorKind::NotFound);

    let d = Digest::of(b"blob");
    s.write_blob(&d, b"blob", &BTreeMap::new()).unwrap();
    let mut l = BTreeMap::new();
    l.insert("x".to_string(), "1".to_string());
    l.insert("y".to_string(), "2".to_string());
    s.update(&d, &l, &[]).unwrap();
    let mut only = BTreeMap::new();
    only.insert("y".to_string(), "3".to_string());
    let info = s
        .update(&d, &only, &["labels.y".to_string(), "labels.x".to_string()])
        .unwrap();
    assert_eq!(info.labels.len(), 1);
    assert_eq!(info.labels["y"], "3");
    s.delete(&d).unwrap();
    assert_eq!(s.info(&d).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.delete(&d).unwrap_err().kind(), ErrorKind::NotFound);
    let err = s.write_blob(&d, b"not blob", &BTreeMap::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
}
