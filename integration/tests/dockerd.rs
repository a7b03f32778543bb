//! dockerd 20.10 (Debian's docker.io) with the runtime under test registered via
//! `--add-runtime`, driven by the docker CLI 28: what `docker run/exec/stop` and
//! docker's resource and security options need from a runc-compatible runtime.
use std::fs;
use std::time::{Duration, Instant};

use integration::daemon::{cgroup_trees, mounts_under, unique_name};
use integration::dockerd::{BUSYBOX, Dockerd, RUNTIME_NAME};

/// A started dockerd with the busybox image loaded.
fn daemon() -> Dockerd {
    let d = Dockerd::start();
    d.load_busybox();
    d
}

/// `docker run -d --name N [extra] busybox <cmd>`; returns the name.
fn run_detached(d: &Dockerd, extra: &[&str], cmd: &[&str]) -> String {
    let name = unique_name();
    let mut args = vec!["-d", "--name", name.as_str()];
    args.extend_from_slice(extra);
    args.push(BUSYBOX);
    args.extend_from_slice(cmd);
    d.run(&args).ok();
    name
}

fn sleeper(d: &Dockerd, extra: &[&str]) -> String {
    run_detached(d, extra, &["sleep", "1000"])
}

fn inspect(d: &Dockerd, name: &str, format: &str) -> String {
    let out = d.docker(&["inspect", "--format", format, name]);
    out.ok().stdout.trim().to_string()
}

#[test]
fn docker_api_negotiates_and_loads_both_formats() {
    let d = Dockerd::start();
    let out = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(out.ok().stdout.trim(), "1.41", "{out}");

    let image = testkit::image::busybox_image().unwrap();
    let docker_tar = d.dir().join("docker.tar");
    let oci_tar = d.dir().join("oci.tar");
    testkit::image::write_docker_archive(&image, &docker_tar).unwrap();
    testkit::image::write_oci_layout(&image, &oci_tar).unwrap();
    for tar in [&docker_tar, &oci_tar] {
        let out = d.docker(&["load", "-i", tar.to_str().unwrap()]);
        assert!(
            out.ok().stdout.contains("Loaded image: busybox:latest"),
            "{out}"
        );
        // The image id is the config digest: the same image from either format.
        let id = d.docker(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX]);
        assert_eq!(id.ok().stdout.trim(), image.config.digest, "{id}");
        d.docker(&["rmi", BUSYBOX]).ok();
    }
}

#[test]
fn docker_run_prints_output() {
    let d = daemon();
    let out = d.run(&["--rm", BUSYBOX, "echo", "hi"]);
    assert_eq!(out.ok().stdout, "hi\n", "{out}");
}

#[test]
fn docker_run_propagates_exit_code() {
    let d = daemon();
    d.run(&["--rm", BUSYBOX, "sh", "-c", "exit 7"])
        .assert_code(7);
}

#[test]
fn docker_exec_in_running_container() {
    let d = daemon();
    let name = sleeper(&d, &[]);
    assert_eq!(inspect(&d, &name, "{{.HostConfig.Runtime}}"), RUNTIME_NAME);
    // The shim ran the runtime under test: its state directory knows the container
    // (dockerd 20.10 gives every runtime the `runtime-runc` root).
    let root = d.dir().join("exec/runtime-runc/moby");
    let id = d.container_id(&name);
    let mut state = d.runtime().command();
    state.arg("--root").arg(&root).args(["state", &id]);
    let state = integration::run_with_timeout(state, integration::COMMAND_TIMEOUT);
    assert!(state.ok().stdout.contains("\"running\""), "{state}");

    let out = d.docker(&["exec", &name, "sh", "-c", "echo from exec"]);
    assert_eq!(out.ok().stdout, "from exec\n", "{out}");
    d.docker(&["exec", &name, "sh", "-c", "exit 3"])
        .assert_code(3);
}

#[test]
fn docker_run_it_through_pty() {
    let d = daemon();
    let (status, out) = d.run_in_pty(&[
        "--rm",
        "-it",
        BUSYBOX,
        "sh",
        "-c",
        "[ -t 0 ] && [ -t 1 ] && echo tty-yes; tty",
    ]);
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("tty-yes"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
}

#[test]
fn docker_memory_limit() {
    let d = daemon();
    let name = sleeper(&d, &["--memory", "64m"]);
    let host = d.cgroup_dir("memory", &name).join("memory.limit_in_bytes");
    assert_eq!(fs::read_to_string(&host).unwrap().trim(), "67108864");
    // cgroup v1 without a cgroup namespace: the container's own cgroup is what it
    // sees mounted at /sys/fs/cgroup/memory.
    let out = d.run(&[
        "--rm",
        "--memory",
        "64m",
        BUSYBOX,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(out.ok().stdout.trim(), "67108864", "{out}");
}

#[test]
fn docker_pids_limit() {
    let d = daemon();
    let name = sleeper(&d, &["--pids-limit", "20"]);
    let host = d.cgroup_dir("pids", &name).join("pids.max");
    assert_eq!(fs::read_to_string(&host).unwrap().trim(), "20");
    let out = d.run(&[
        "--rm",
        "--pids-limit",
        "20",
        BUSYBOX,
        "cat",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(out.ok().stdout.trim(), "20", "{out}");
}

#[test]
fn docker_read_only_rootfs() {
    let d = daemon();
    let out = d.run(&["--rm", "--read-only", BUSYBOX, "touch", "/x"]);
    out.assert_failed();
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    // The writable mounts docker adds (e.g. /dev/shm) stay writable.
    d.run(&["--rm", "--read-only", BUSYBOX, "touch", "/dev/shm/x"])
        .ok();
}

#[test]
fn docker_cap_drop_all() {
    let d = daemon();
    let out = d.run(&[
        "--rm",
        "--cap-drop",
        "ALL",
        BUSYBOX,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(out.ok().stdout.trim(), "CapEff:\t0000000000000000", "{out}");
}

#[test]
fn docker_default_seccomp_profile_applied() {
    let d = daemon();
    let out = d.run(&["--rm", BUSYBOX, "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(out.ok().stdout.trim(), "Seccomp:\t2", "{out}");
}

/// Docker's default profile allows unshare(2) only to containers with CAP_SYS_ADMIN,
/// which a default container lacks, and returns EPERM otherwise. Making a user
/// namespace needs no capability at all, so with the same capabilities and
/// `seccomp=unconfined` it succeeds: the only difference between the runs is seccomp.
#[test]
fn docker_default_seccomp_profile_blocks_unshare() {
    let d = daemon();
    let blocked = d.run(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "grep ^Seccomp: /proc/self/status; unshare -U true && echo created",
    ]);
    blocked.assert_failed();
    assert_eq!(blocked.stdout.trim(), "Seccomp:\t2", "{blocked}");
    assert!(
        blocked.stderr.contains("unshare") && blocked.stderr.contains("Operation not permitted"),
        "{blocked}"
    );

    let free = d.run(&[
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        BUSYBOX,
        "sh",
        "-c",
        "grep ^Seccomp: /proc/self/status; unshare -U true && echo created",
    ]);
    assert_eq!(free.ok().stdout, "Seccomp:\t0\ncreated\n", "{free}");
}

#[test]
fn docker_custom_seccomp_profile_blocks_mkdir() {
    let d = daemon();
    let profile = d.dir().join("no-mkdir.json");
    fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = d.run(&[
        "--rm",
        "--security-opt",
        &opt,
        BUSYBOX,
        "sh",
        "-c",
        "touch /tmp/file && echo touched; mkdir /tmp/dir",
    ]);
    out.assert_failed();
    assert!(out.stdout.contains("touched"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

#[test]
fn docker_stop_running_container() {
    let d = daemon();
    let name = run_detached(
        &d,
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    assert_eq!(inspect(&d, &name, "{{.State.Status}}"), "running");
    let start = Instant::now();
    d.docker(&["stop", "--time", "20", &name]).ok();
    // The shell exits on SIGTERM: no need for docker's SIGKILL after the timeout.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(inspect(&d, &name, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&d, &name, "{{.State.ExitCode}}"), "0");
    // A stopped container can be removed and leaves no cgroup behind.
    let id = d.container_id(&name);
    d.docker(&["rm", &name]).ok();
    assert!(cgroup_trees(&format!("{}/{id}", d.cgroup_parent())).is_empty());
}

#[test]
fn dockerd_drop_leaves_nothing_behind() {
    let d = daemon();
    sleeper(&d, &[]);
    let dir = d.dir().to_path_buf();
    let parent = d.cgroup_parent().to_string();
    assert!(!cgroup_trees(&parent).is_empty());
    drop(d);
    assert!(
        cgroup_trees(&parent).is_empty(),
        "{:?}",
        cgroup_trees(&parent)
    );
    assert!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    assert!(!dir.exists());
}
