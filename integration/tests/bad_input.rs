//! Bad bundles: the runtime must fail with exit code 1 and leave nothing behind
//! (no state entry, no cgroup, no mount, nothing created outside the rootfs).
use std::path::{Path, PathBuf};

use integration::{Output, TestContainer, json, mounts_containing};

/// ocirun promises more than runc here: its error is exactly one non-empty line.
fn assert_one_line_error_if_ocirun(tc: &TestContainer, out: &Output) {
    if tc.rt.is_ocirun() {
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of error:\n{out}");
        assert!(!lines[0].trim().is_empty(), "{out}");
    }
}

fn create_fails_cleanly(tc: &TestContainer, out: &Output) {
    out.assert_code(1);
    assert_one_line_error_if_ocirun(tc, out);
    tc.assert_no_trace();
}

#[test]
fn missing_bundle_dir() {
    let tc = TestContainer::new(&["true"]);
    let missing = tc.bundle_dir().join("no-such-bundle");
    let out = tc.run(&["create", "--bundle", missing.to_str().unwrap(), &tc.id]);
    create_fails_cleanly(&tc, &out);
}

#[test]
fn invalid_json_config() {
    let tc = TestContainer::new(&["true"]);
    std::fs::write(tc.bundle_dir().join("config.json"), "{ \"ociVersion\": ").unwrap();
    let out = tc.run(&[
        "create",
        "--bundle",
        tc.bundle_dir().to_str().unwrap(),
        &tc.id,
    ]);
    create_fails_cleanly(&tc, &out);
}

#[test]
fn unknown_namespace_type() {
    let mut tc = TestContainer::new(&["true"]);
    tc.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "foo" }));
    let out = tc.create();
    create_fails_cleanly(&tc, &out);
}

#[test]
fn bad_input_is_logged_as_json_error() {
    let mut tc = TestContainer::new(&["true"]);
    let log = tc.enable_log();
    std::fs::write(tc.bundle_dir().join("config.json"), "not json").unwrap();
    let out = tc.run(&[
        "create",
        "--bundle",
        tc.bundle_dir().to_str().unwrap(),
        &tc.id,
    ]);
    create_fails_cleanly(&tc, &out);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let errors: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["level"] == "error")
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e["msg"].as_str().is_some_and(|m| !m.is_empty())),
        "no JSON error line with a msg in {}:\n{text}\n{out}",
        log.display()
    );
}

/// Removes a host directory this test expects never to exist, even if it does.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn mount_destination_symlink_cannot_escape_rootfs() {
    let mut tc = TestContainer::new(&["true"]);
    let unique = format!("{}-escape", tc.id);
    let outside = Path::new("/tmp").join(&unique);
    let _cleanup = RemoveOnDrop(outside.clone());
    // rootfs/escape -> ../../../../../../tmp/<unique>: outside the rootfs if followed
    // from the host, /tmp/<unique> inside the rootfs if resolved within it.
    std::os::unix::fs::symlink(
        format!("../../../../../../tmp/{unique}"),
        tc.rootfs().join("escape"),
    )
    .unwrap();
    tc.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/escape/x", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let out = tc.run_foreground(&[]);

    assert!(
        !outside.join("x").exists(),
        "created {} on the host",
        outside.join("x").display()
    );
    assert!(
        !outside.exists(),
        "created {} on the host",
        outside.display()
    );
    for needle in [unique.as_str(), tc.bundle_dir().to_str().unwrap()] {
        let leaked = mounts_containing(needle);
        assert!(
            leaked.is_empty(),
            "host mounts mention {needle}: {leaked:#?}\n{out}"
        );
    }
    if tc.rt.is_ocirun() {
        // ocirun refuses the escaping destination; runc scopes the symlink into the
        // rootfs instead (and mounts at rootfs/tmp/<unique>/x), then runs `true`.
        out.assert_code(1);
        assert_one_line_error_if_ocirun(&tc, &out);
    } else {
        assert!(matches!(out.code(), Some(0 | 1)), "{out}");
    }
    tc.assert_no_trace();
}
