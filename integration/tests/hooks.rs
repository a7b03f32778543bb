//! OCI lifecycle hooks: each kind runs at its point of the lifecycle, in order, with
//! the container's state on stdin; a failing or hanging setup hook fails the operation
//! and leaves nothing behind. Hooks are busybox `sh` scripts from the host.
// Helpers fail their test on a broken precondition, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration::{STATE_TIMEOUT, TestContainer, Value, json, wait_for};

/// Where a shared host directory appears in the container; startContainer (which runs
/// after pivot_root) and the container process write the log through it.
const IN_CONTAINER: &str = "/hooklog";

/// A hook appending "<name> <state JSON>" as one line to `log`.
fn log_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": "/bin/busybox",
        "args": ["sh", "-c", format!("echo \"{name} $(cat)\" >> {}", log.display())],
    })
}

fn failing_hook() -> Value {
    json!({ "path": "/bin/busybox", "args": ["sh", "-c", "echo hook says no >&2; exit 7"] })
}

/// A container whose every hook logs to `<dir>/log`, and whose process logs
/// "process" there and then sleeps.
fn logged_container(dir: &Path) -> TestContainer {
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        &format!("echo process >> {IN_CONTAINER}/log; exec sleep 30"),
    ]);
    let host_log = dir.join("log");
    let container_log = PathBuf::from(IN_CONTAINER).join("log");
    let cfg = tc.config();
    cfg["annotations"] = json!({ "org.ocirun.test": "hooks" });
    cfg["mounts"].as_array_mut().unwrap().push(json!({
        "destination": IN_CONTAINER,
        "type": "bind",
        "source": dir,
        "options": ["rbind", "rw"],
    }));
    cfg["hooks"] = json!({
        "prestart": [log_hook("prestart", &host_log)],
        "createRuntime": [log_hook("createRuntime", &host_log)],
        // Runs before pivot_root: the host's root is still the root.
        "createContainer": [log_hook("createContainer", &host_log)],
        "startContainer": [log_hook("startContainer", &container_log)],
        "poststart": [log_hook("poststart", &host_log)],
        "poststop": [log_hook("poststop", &host_log)],
    });
    tc
}

/// (name, state) per line of the log; "process" lines have a null state.
fn read_log(dir: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    text.lines()
        .map(|l| match l.split_once(' ') {
            Some((name, state)) => (
                name.to_string(),
                serde_json::from_str(state)
                    .unwrap_or_else(|e| panic!("hook {name} got bad state ({e}): {state}")),
            ),
            None => (l.to_string(), Value::Null),
        })
        .collect()
}

fn names(log: &[(String, Value)]) -> Vec<&str> {
    log.iter().map(|(n, _)| n.as_str()).collect()
}

fn position(log: &[(String, Value)], name: &str) -> usize {
    log.iter()
        .position(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing from {:?}", names(log)))
}

fn hook_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("ocirun-it-hooks.")
        .tempdir()
        .unwrap();
    std::fs::write(d.path().join("log"), "").unwrap();
    d
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let dir = hook_dir();
    let tc = logged_container(dir.path());

    tc.create().ok();
    let pid = tc.read_pid_file();
    let mut log = read_log(dir.path());
    if !tc.rt.is_ocirun() {
        // runc 1.1.5 runs poststart at create, against the spec (fixed in runc 1.2).
        log.retain(|(n, _)| n != "poststart");
    }
    assert_eq!(
        names(&log),
        ["prestart", "createRuntime", "createContainer"],
        "{log:?}"
    );
    for (name, state) in &log {
        assert_eq!(state["id"], tc.id.as_str(), "{name}: {state}");
        assert_eq!(state["status"], "creating", "{name}: {state}");
        assert_eq!(
            Path::new(state["bundle"].as_str().unwrap()),
            tc.bundle_dir(),
            "{name}: {state}"
        );
        assert_eq!(state["annotations"]["org.ocirun.test"], "hooks", "{state}");
        assert!(state["ociVersion"].is_string(), "{state}");
    }
    // The runtime-namespace hooks see init's host pid; createContainer runs inside
    // the container's pid namespace, where init is 1.
    assert_eq!(log[0].1["pid"], pid);
    assert_eq!(log[1].1["pid"], pid);
    assert_eq!(log[2].1["pid"], 1);

    tc.start().ok();
    let log = wait_for(STATE_TIMEOUT, "process and poststart", || {
        let log = read_log(dir.path());
        let n = names(&log);
        (n.contains(&"process") && n.contains(&"poststart")).then_some(log)
    });
    let start_container = position(&log, "startContainer");
    assert!(start_container > 2, "{:?}", names(&log));
    assert!(
        start_container < position(&log, "process"),
        "{:?}",
        names(&log)
    );
    assert_eq!(log[start_container].1["pid"], 1);
    let poststart = &log[position(&log, "poststart")].1;
    assert_eq!(poststart["pid"], pid, "{poststart}");
    if tc.rt.is_ocirun() {
        // ocirun waits for the exec before poststart; runc 1.1.5 does not wait, and
        // reports "created" there.
        assert!(start_container < position(&log, "poststart"));
        assert_eq!(poststart["status"], "running", "{poststart}");
    }
    assert!(!names(&log).contains(&"poststop"));

    tc.kill("KILL").ok();
    tc.wait_status("stopped");
    tc.delete().ok();
    let log = read_log(dir.path());
    let (last, state) = log.last().unwrap();
    assert_eq!(last, "poststop", "{:?}", names(&log));
    assert_eq!(state["status"], "stopped", "{state}");
    assert_eq!(state["id"], tc.id.as_str(), "{state}");
    assert!(
        state.get("pid").is_none_or(|p| p == 0),
        "no pid once stopped: {state}"
    );
    tc.assert_no_trace();
}

#[test]
fn hook_env_and_args_are_passed() {
    let dir = hook_dir();
    let out = dir.path().join("out");
    let mut tc = TestContainer::new(&["true"]);
    tc.config()["hooks"] = json!({
        "createRuntime": [{
            "path": "/bin/busybox",
            "args": ["sh", "-c", "echo \"$0 $1 $GREETING\" > \"$1\"", "myhook", out],
            "env": ["GREETING=hello"],
        }],
    });
    tc.create().ok();
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got, format!("myhook {} hello\n", out.display()));
}

fn assert_setup_hook_failure_leaves_no_trace(kind: &str) {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["hooks"] = json!({ kind: [failing_hook()] });
    let out = tc.create();
    out.assert_failed();
    if tc.rt.is_ocirun() {
        assert!(out.stderr.contains(kind), "error names the hook:\n{out}");
        assert!(
            out.stderr.contains("hook says no"),
            "with its output:\n{out}"
        );
    }
    tc.assert_no_trace();
}

#[test]
fn failing_prestart_hook_fails_create() {
    assert_setup_hook_failure_leaves_no_trace("prestart");
}

#[test]
fn failing_create_runtime_hook_fails_create() {
    assert_setup_hook_failure_leaves_no_trace("createRuntime");
}

#[test]
fn failing_create_container_hook_fails_create() {
    assert_setup_hook_failure_leaves_no_trace("createContainer");
}

#[test]
fn failing_start_container_hook_fails_run() {
    let dir = hook_dir();
    let marker = dir.path().join("ran");
    let mut tc = TestContainer::new(&["sh", "-c", "echo ran > /hooklog/ran"]);
    tc.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hooklog", "type": "bind", "source": dir.path(), "options": ["rbind", "rw"],
    }));
    tc.config()["hooks"] = json!({ "startContainer": [failing_hook()] });
    let out = tc.run_foreground(&[]);
    out.assert_failed();
    assert!(!marker.exists(), "the process must not run:\n{out}");
    tc.assert_no_trace();
}

#[test]
fn hook_timeout_kills_it_and_fails_create() {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["hooks"] = json!({
        "createRuntime": [{ "path": "/bin/busybox", "args": ["sleep", "20"], "timeout": 1 }],
    });
    let t = Instant::now();
    let out = tc.create();
    out.assert_failed();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    tc.assert_no_trace();
}

#[test]
fn failing_poststop_hook_does_not_stop_delete() {
    let dir = hook_dir();
    let log = dir.path().join("log");
    let mut tc = TestContainer::new(&["true"]);
    tc.config()["hooks"] = json!({
        "poststop": [failing_hook(), log_hook("poststop", &log)],
    });
    tc.create().ok();
    tc.start().ok();
    tc.wait_status("stopped");
    tc.delete();
    tc.assert_no_trace();
    if tc.rt.is_ocirun() {
        // The spec: a failed poststop hook is logged and the next one still runs.
        assert_eq!(names(&read_log(dir.path())), ["poststop"]);
    }
}

#[test]
fn failing_poststart_hook_is_not_fatal() {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["hooks"] = json!({ "poststart": [failing_hook()] });
    let created = tc.create();
    if tc.rt.is_ocirun() {
        // The spec: log a warning and carry on.
        created.ok();
        tc.start().ok();
        assert_eq!(tc.status(), "running");
    } else {
        // runc 1.1.5 runs poststart at create, and fails create when it fails.
        created.assert_failed();
        tc.assert_no_trace();
    }
}
