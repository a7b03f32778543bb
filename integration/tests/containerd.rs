//! containerd 1.6 and `ctr` driving the runtime under test through the runc shim
//! (io.containerd.runc.v2 with `--runc-binary`): what `ctr run`, `ctr task ...` need
//! from a runc-compatible runtime.
use std::fs;
use std::time::Duration;

use integration::containerd::{BUSYBOX, Containerd};
use integration::daemon::{cgroup_trees, mounts_under, unique_name};
use integration::wait_for;

const SLEEP: [&str; 2] = ["sleep", "1000"];

/// A started containerd with the busybox image imported.
fn daemon() -> Containerd {
    let c = Containerd::start();
    c.import_busybox();
    c
}

/// `ctr run -d --null-io [extra] busybox ID sleep 1000`, checked to be RUNNING.
fn run_sleeper(c: &Containerd, extra: &[&str]) -> String {
    let id = unique_name();
    let mut args = vec!["-d", "--null-io"];
    args.extend_from_slice(extra);
    args.extend([BUSYBOX, id.as_str()]);
    args.extend(SLEEP);
    c.ctr_run(&args).ok();
    wait_status(c, &id, "RUNNING");
    id
}

fn wait_status(c: &Containerd, id: &str, want: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("task {id} to be {want}"),
        || (c.task_status(id).as_deref() == Some(want)).then_some(()),
    );
}

#[test]
fn ctr_imports_docker_archive_and_oci_layout() {
    let c = Containerd::start();
    let image = testkit::image::busybox_image().unwrap();
    let docker_tar = c.dir().join("docker.tar");
    let oci_tar = c.dir().join("oci.tar");
    testkit::image::write_docker_archive(&image, &docker_tar).unwrap();
    testkit::image::write_oci_layout(&image, &oci_tar).unwrap();

    c.ctr(&["images", "import", docker_tar.to_str().unwrap()])
        .ok();
    let out = c.ctr(&["images", "ls", "-q"]);
    assert_eq!(out.ok().stdout.trim(), BUSYBOX, "{out}");
    c.ctr(&["images", "rm", "--sync", BUSYBOX]).ok();

    c.ctr(&["images", "import", oci_tar.to_str().unwrap()]).ok();
    let out = c.ctr(&["images", "ls"]);
    out.ok();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(BUSYBOX))
        .unwrap_or_else(|| panic!("{BUSYBOX} not listed:\n{out}"));
    // An OCI layout is imported as is: the manifest digest is ours.
    assert!(line.contains(&image.manifest().digest), "{out}");
}

#[test]
fn ctr_run_rm_prints_output() {
    let c = daemon();
    let id = unique_name();
    let out = c.ctr_run(&["--rm", BUSYBOX, &id, "echo", "hi"]);
    assert_eq!(out.ok().stdout, "hi\n", "{out}");
    assert_eq!(c.task_status(&id), None);
    let containers = c.ctr(&["containers", "ls", "-q"]);
    assert!(!containers.ok().stdout.contains(&id), "{containers}");
}

#[test]
fn ctr_run_propagates_exit_code() {
    let c = daemon();
    let id = unique_name();
    c.ctr_run(&["--rm", BUSYBOX, &id, "sh", "-c", "exit 7"])
        .assert_code(7);
}

#[test]
fn ctr_detached_task_lifecycle() {
    let c = daemon();
    let id = run_sleeper(&c, &[]);
    // The shim ran the runtime under test: its state directory knows the container.
    let runtime_root = c.runtime_root();
    let state = integration::run_with_timeout(
        {
            let mut cmd = c.runtime().command();
            cmd.arg("--root").arg(&runtime_root).args(["state", &id]);
            cmd
        },
        integration::COMMAND_TIMEOUT,
    );
    let state: serde_json::Value = serde_json::from_str(&state.ok().stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_i64().unwrap();
    assert!(fs::metadata(format!("/proc/{pid}")).is_ok());

    // sleep is pid 1 in its namespace and ignores SIGTERM: kill it for sure.
    c.ctr(&["task", "kill", "-s", "SIGKILL", &id]).ok();
    wait_status(&c, &id, "STOPPED");
    c.ctr(&["task", "delete", &id]).ok();
    assert_eq!(c.task_status(&id), None);
    c.ctr(&["containers", "delete", &id]).ok();
    assert!(cgroup_trees(&format!("{}/{id}", c.namespace())).is_empty());
}

#[test]
fn ctr_task_exec() {
    let c = daemon();
    let id = run_sleeper(&c, &[]);
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x1",
        &id,
        "sh",
        "-c",
        "echo from exec",
    ]);
    assert_eq!(out.ok().stdout, "from exec\n", "{out}");
    c.ctr(&["task", "exec", "--exec-id", "x2", &id, "sh", "-c", "exit 3"])
        .assert_code(3);
}

#[test]
fn ctr_run_with_tty() {
    let c = daemon();
    let id = unique_name();
    let (status, out) = c.ctr_run_in_pty(&[
        "--rm",
        "-t",
        BUSYBOX,
        &id,
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo tty-yes; tty",
    ]);
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("tty-yes"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
}

#[test]
fn ctr_pause_resume() {
    let c = daemon();
    let id = run_sleeper(&c, &[]);
    let freezer = c.cgroup_dir("freezer", &id).join("freezer.state");
    c.ctr(&["task", "pause", &id]).ok();
    wait_status(&c, &id, "PAUSED");
    assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    c.ctr(&["task", "resume", &id]).ok();
    wait_status(&c, &id, "RUNNING");
    assert_eq!(fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
}

#[test]
fn ctr_memory_limit() {
    let c = daemon();
    let id = run_sleeper(&c, &["--memory-limit", "67108864"]);
    let limit = c.cgroup_dir("memory", &id).join("memory.limit_in_bytes");
    assert_eq!(fs::read_to_string(&limit).unwrap().trim(), "67108864");
}

#[test]
fn ctr_daemon_drop_leaves_nothing_behind() {
    let c = daemon();
    run_sleeper(&c, &[]);
    let dir = c.dir().to_path_buf();
    let ns = c.namespace().to_string();
    let runtime_root = c.runtime_root();
    assert!(!cgroup_trees(&ns).is_empty());
    assert!(runtime_root.exists());
    drop(c);
    assert!(!runtime_root.exists());
    assert!(cgroup_trees(&ns).is_empty(), "{:?}", cgroup_trees(&ns));
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert!(!dir.exists());
}
