//! Controlling a live container: pause/resume, ps, update, events, and the refused
//! checkpoint/restore.
// Helpers fail their test on a broken precondition, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use integration::{COMMAND_TIMEOUT, Runtime, STATE_TIMEOUT, TestContainer, Value, json, wait_for};

/// A container that appends a line to /count every 20 ms (read on the host through the
/// rootfs), so a frozen container shows as a file that stops growing.
fn counter() -> TestContainer {
    TestContainer::new(&[
        "sh",
        "-c",
        "while true; do echo x >> /count; usleep 20000; done",
    ])
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits until the file has grown past `from` lines.
fn wait_growth(path: &Path, from: usize) -> usize {
    wait_for(STATE_TIMEOUT, "the counter to advance", || {
        let n = count_lines(path);
        (n > from).then_some(n)
    })
}

fn read_trimmed(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn pause_freezes_and_resume_continues() {
    let tc = counter();
    tc.run_detached();
    let file = tc.rootfs().join("count");
    let n = wait_growth(&file, 0);
    wait_growth(&file, n);

    tc.run(&["pause", &tc.id]).ok();
    assert_eq!(tc.status(), "paused");
    // A line may have been on its way when the freeze landed.
    std::thread::sleep(Duration::from_millis(100));
    let frozen = count_lines(&file);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count_lines(&file),
        frozen,
        "a paused container made progress"
    );

    tc.run(&["resume", &tc.id]).ok();
    assert_eq!(tc.status(), "running");
    wait_growth(&file, frozen);
}

#[test]
fn pause_and_resume_refuse_the_wrong_state() {
    let tc = TestContainer::new(&["sleep", "30"]);
    tc.create().ok();
    tc.run(&["resume", &tc.id]).assert_failed();
    // As runc: a created container can be paused, and resumes to created.
    tc.run(&["pause", &tc.id]).ok();
    assert_eq!(tc.status(), "paused");
    tc.start().assert_failed();
    tc.run(&["resume", &tc.id]).ok();
    assert_eq!(tc.status(), "created");
    tc.start().ok();
    tc.run(&["resume", &tc.id]).assert_failed();
    tc.run(&["pause", &tc.id]).ok();
    tc.run(&["pause", &tc.id]).assert_failed();
    assert_eq!(tc.status(), "paused");
}

#[test]
fn sigkill_stops_a_paused_container() {
    let tc = TestContainer::new(&["sleep", "30"]);
    tc.run_detached();
    tc.run(&["pause", &tc.id]).ok();
    tc.kill("KILL").ok();
    tc.wait_status("stopped");
    tc.delete().ok();
    tc.assert_no_trace();
}

#[test]
fn delete_force_removes_a_paused_container() {
    let tc = TestContainer::new(&["sleep", "30"]);
    let pid = tc.run_detached();
    tc.run(&["pause", &tc.id]).ok();
    tc.delete_force().ok();
    tc.assert_no_trace();
    wait_for(STATE_TIMEOUT, "init to die", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for whoever adopted it.
        let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
        (stat.is_empty() || state.starts_with('Z')).then_some(())
    });
}

#[test]
fn ps_lists_the_container_processes() {
    let tc = TestContainer::new(&["sleep", "30"]);
    let pid = tc.run_detached();
    let out = tc.run(&["ps", "--format", "json", &tc.id]);
    out.ok();
    let pids: Vec<i32> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(pids, [pid], "{out}");

    let out = tc.run(&["ps", &tc.id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "header and init:\n{out}");
    assert!(lines[0].contains("PID"), "{out}");
    assert!(
        lines[1].split_whitespace().any(|f| f == pid.to_string()),
        "{out}"
    );
    assert!(lines[1].contains("sleep 30"), "{out}");

    let out = tc.run(&["ps", &tc.id, "-o", "pid,comm"]);
    out.ok();
    assert_eq!(
        out.stdout
            .lines()
            .nth(1)
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec![pid.to_string().as_str(), "sleep"]),
        "{out}"
    );
}

fn events_stats(tc: &TestContainer) -> Value {
    let out = tc.run(&["events", "--stats", &tc.id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line:\n{out}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}:\n{out}"))
}

#[test]
fn update_memory_flag_rewrites_the_cgroup() {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": 32 << 20 });
    tc.run_detached();
    let file = tc.cgroup_dir("memory").join("memory.limit_in_bytes");
    assert_eq!(read_trimmed(file.clone()), (32u64 << 20).to_string());
    tc.run(&["update", "--memory", "64m", &tc.id]).ok();
    assert_eq!(read_trimmed(file), (64u64 << 20).to_string());
    let stats = events_stats(&tc);
    assert_eq!(
        stats["data"]["memory"]["usage"]["limit"],
        64u64 << 20,
        "{stats}"
    );
}

#[test]
fn update_from_resources_json_sets_pids_max() {
    let tc = TestContainer::new(&["sleep", "30"]);
    tc.run_detached();
    let pids_max = tc.cgroup_dir("pids").join("pids.max");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), r#"{"pids": {"limit": 42}}"#).unwrap();
    tc.run(&["update", "-r", file.path().to_str().unwrap(), &tc.id])
        .ok();
    assert_eq!(read_trimmed(pids_max.clone()), "42");

    // `-r -`: from stdin.
    let mut cmd = tc.command(&["update", "-r", "-", &tc.id]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 17}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read_trimmed(pids_max), "17");
    assert_eq!(events_stats(&tc)["data"]["pids"]["limit"], 17);
}

#[test]
fn events_stats_prints_one_line() {
    let tc = TestContainer::new(&["sleep", "30"]);
    tc.run_detached();
    let e = events_stats(&tc);
    assert_eq!(e["type"], "stats", "{e}");
    assert_eq!(e["id"], tc.id.as_str(), "{e}");
    let d = &e["data"];
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{e}"
    );
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{e}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{e}");
    for key in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(d[key].is_object(), "{key} in {e}");
    }
    for key in ["usage", "swap", "kernel", "raw"] {
        assert!(d["memory"][key].is_object(), "memory.{key} in {e}");
    }
}

#[test]
fn events_reports_an_oom_kill() {
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "sleep 1; head -c 67108864 /dev/zero | tail >/dev/null; sleep 30",
    ]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": 32 << 20, "swap": 32 << 20 });
    tc.run_detached();
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = tc.command(&["events", "--interval", "1s", &tc.id]);
    cmd.stdout(out_file.reopen().unwrap()).stderr(Stdio::null());
    let mut events = cmd.spawn().unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let lines = loop {
        let text = std::fs::read_to_string(out_file.path()).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.iter().any(|l| l["type"] == "oom") || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = events.kill();
    let _ = events.wait();
    let oom = lines.iter().find(|l| l["type"] == "oom");
    let oom = oom.unwrap_or_else(|| panic!("no oom event in {lines:?}"));
    assert_eq!(oom["id"], tc.id.as_str(), "{oom}");
    assert!(
        lines.iter().any(|l| l["type"] == "stats"),
        "periodic stats too: {lines:?}"
    );
}

#[test]
fn checkpoint_and_restore_are_refused() {
    let tc = TestContainer::new(&["sleep", "30"]);
    tc.run_detached();
    // runc (with CRIU) writes its images into --image-path, ./checkpoint by default:
    // keep them in the test's own directory.
    let images = tc.root().join("checkpoint-images");
    let images = images.to_str().unwrap();
    let out = tc.run(&["checkpoint", "--image-path", images, &tc.id]);
    out.assert_code(1);
    let restore = tc.run(&["restore", "--detach", "--image-path", images, &tc.id]);
    restore.assert_code(1);
    if tc.rt.is_ocirun() {
        assert!(out.stderr.contains("not supported"), "{out}");
        assert!(out.stderr.contains("CRIU"), "{out}");
        assert!(restore.stderr.contains("not supported"), "{restore}");
    }
    assert_eq!(tc.status(), "running", "checkpoint must not stop it");
}

#[test]
fn features_lists_hooks() {
    let rt = Runtime::from_env();
    let mut cmd = rt.command();
    cmd.arg("features");
    let out = integration::run_with_timeout(cmd, COMMAND_TIMEOUT);
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).unwrap();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(
            f["hooks"].as_array().unwrap().iter().any(|v| v == h),
            "{h}: {f}"
        );
    }
    if rt.is_ocirun() {
        assert_eq!(
            f["annotations"]["org.opencontainers.runc.checkpoint.enabled"],
            "false"
        );
    }
}
