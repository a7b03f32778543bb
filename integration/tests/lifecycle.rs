//! The create / start / kill / delete lifecycle as containerd drives it, and the
//! state JSON at each step.
// Helpers fail their test on a broken precondition, like the tests themselves.
#![allow(clippy::panic)]
use std::path::Path;

use integration::{TestContainer, Value, is_rfc3339, json, proc_cmdline};

fn sleeper() -> TestContainer {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["annotations"] = json!({ "org.ocirun.test": "lifecycle" });
    tc
}

/// The fields every `state` must carry, whatever the status.
fn assert_state_fields(tc: &TestContainer, s: &Value, status: &str) {
    assert!(
        s["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{s}"
    );
    assert_eq!(s["id"], tc.id.as_str(), "{s}");
    assert_eq!(s["status"], status, "{s}");
    let bundle = s["bundle"].as_str().unwrap_or_default();
    assert!(Path::new(bundle).is_absolute(), "{s}");
    assert_eq!(Path::new(bundle), tc.bundle_dir(), "{s}");
    if let Some(rootfs) = s.get("rootfs") {
        assert_eq!(
            Path::new(rootfs.as_str().unwrap_or_default()),
            tc.rootfs(),
            "{s}"
        );
    }
    assert!(s["created"].as_str().is_some_and(is_rfc3339), "{s}");
    assert_eq!(s["annotations"], tc.bundle.config["annotations"], "{s}");
}

fn proc_exists(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn create_start_kill_delete() {
    let tc = sleeper();
    tc.create().ok();
    let created = tc.state();
    assert_state_fields(&tc, &created, "created");
    let pid = created["pid"].as_i64().unwrap_or_default();
    assert!(pid > 0, "{created}");
    assert!(proc_exists(pid), "init {pid} is not running on the host");
    assert_eq!(tc.read_pid_file() as i64, pid, "pid file agrees with state");
    assert!(tc.state_dir().is_dir());

    tc.start().ok();
    let running = tc.wait_status("running");
    assert_state_fields(&tc, &running, "running");
    assert_eq!(running["pid"], pid, "{running}");
    assert_eq!(running["created"], created["created"], "{running}");

    tc.kill("SIGKILL").ok();
    let stopped = tc.wait_status("stopped");
    assert_state_fields(&tc, &stopped, "stopped");

    tc.delete().ok();
    tc.try_state().assert_failed();
    assert!(!tc.state_dir().exists(), "state entry left after delete");
    assert!(tc.cgroup_dirs().is_empty(), "{:?}", tc.cgroup_dirs());
}

#[test]
fn started_container_runs_its_process() {
    let tc = sleeper();
    tc.create().ok();
    tc.start().ok();
    let pid = tc.pid();
    let cmd = integration::wait_for(integration::STATE_TIMEOUT, "init to exec sleep", || {
        let c = proc_cmdline(pid);
        (c.first().map(String::as_str) == Some("sleep")).then_some(c)
    });
    assert_eq!(cmd, ["sleep", "30"]);
}

#[test]
fn kill_with_sigterm_stops_container() {
    // sh as pid 1 has no SIGTERM handler, so only a trap makes it exit on SIGTERM.
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.2; done",
    ]);
    tc.create().ok();
    tc.start().ok();
    tc.wait_status("running");
    // The trap runs once the shell is waiting, so retry the signal until it lands.
    integration::wait_for(integration::STATE_TIMEOUT, "SIGTERM to stop it", || {
        if tc.status() == "stopped" {
            return Some(());
        }
        let _ = tc.kill("TERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
}

#[test]
fn create_twice_with_same_id_fails_and_keeps_first() {
    let tc = sleeper();
    tc.create().ok();
    let before = tc.state();
    tc.create().assert_failed();
    let after = tc.state();
    assert_eq!(after["status"], "created", "{after}");
    assert_eq!(after["pid"], before["pid"], "{after}");
    assert!(proc_exists(after["pid"].as_i64().unwrap_or_default()));
    tc.start().ok();
    tc.wait_status("running");
}

#[test]
fn delete_running_needs_force() {
    let tc = sleeper();
    tc.create().ok();
    tc.start().ok();
    let pid = tc.pid();
    tc.wait_status("running");
    tc.delete().assert_failed();
    assert_eq!(tc.status(), "running");
    tc.delete_force().ok();
    tc.try_state().assert_failed();
    assert!(!tc.state_dir().exists());
    integration::wait_for(integration::STATE_TIMEOUT, "the init to be gone", || {
        (!proc_exists(i64::from(pid))).then_some(())
    });
}

#[test]
fn start_twice_fails() {
    let tc = sleeper();
    tc.create().ok();
    tc.start().ok();
    tc.wait_status("running");
    tc.start().assert_failed();
    assert_eq!(tc.status(), "running");
}

#[test]
fn state_of_unknown_container_fails() {
    let tc = sleeper();
    tc.try_state().assert_failed();
    tc.kill("KILL").assert_failed();
    tc.delete().assert_failed();
}

#[test]
fn detached_run_writes_pid_file_and_is_listed() {
    let tc = sleeper();
    let pid = tc.run_detached();
    assert_eq!(
        i64::from(pid),
        tc.state()["pid"].as_i64().unwrap_or_default()
    );
    let cmd = integration::wait_for(integration::STATE_TIMEOUT, "init to exec sleep", || {
        let c = proc_cmdline(pid);
        (c.first().map(String::as_str) == Some("sleep")).then_some(c)
    });
    assert_eq!(cmd, ["sleep", "30"]);

    let out = tc.run(&["list", "--format", "json"]);
    out.ok();
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    let entry = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == tc.id.as_str()))
        .unwrap_or_else(|| panic!("{} not listed:\n{out}", tc.id));
    assert_eq!(entry["status"], "running", "{out}");
    assert_eq!(entry["pid"], pid, "{out}");
}

/// The pids `ps --format json` lists (every process in the container's cgroup).
fn container_pids(tc: &TestContainer) -> Vec<i64> {
    let out = tc.run(&["ps", "--format", "json", &tc.id]);
    out.ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn kill_all_signals_every_process() {
    // pid 1 (sh) has no SIGTERM handler, so the kernel drops SIGTERM sent to it; its
    // children are ordinary processes that SIGTERM ends. The trailing echo keeps sh
    // from exec'ing the second sleep, so there are three processes.
    let tc = TestContainer::new(&["sh", "-c", "sleep 1000 & sleep 1001; echo done"]);
    tc.run_detached();
    let pids = integration::wait_for(integration::STATE_TIMEOUT, "three processes", || {
        let p = container_pids(&tc);
        (p.len() == 3).then_some(p)
    });

    // The control: without --all only init gets the signal, and ignores it.
    tc.kill("TERM").ok();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(container_pids(&tc), pids);
    assert_eq!(tc.status(), "running");

    tc.run(&["kill", "--all", &tc.id, "TERM"]).ok();
    // Both sleeps die; sh, done waiting for the foreground one, exits.
    tc.wait_status("stopped");
    for pid in pids {
        // A zombie (not yet reaped by whoever inherited it) is dead too.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        assert!(
            state.is_none_or(|s| s == "Z"),
            "pid {pid} survived kill --all: {stat}"
        );
    }
}
