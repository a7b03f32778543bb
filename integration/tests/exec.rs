//! `exec`: a new process in a running container, in all of its namespaces and its
//! cgroups, with runc's flag handling, exit codes and errors.
//!
//! runc exits 255 for every `exec` failure (`exec failed: ...`), whatever the cause;
//! ocirun does the same (containerd and dockerd read the message, not the code).
// Test helpers fail their test by panicking on a broken precondition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use integration::{
    COMMAND_TIMEOUT, STATE_TIMEOUT, TestContainer, json, ns_link, run_with_timeout, wait_for,
};

/// Exit code of every failed `exec`, in runc and ocirun.
const EXEC_FAILED: i32 = 255;

/// A running container whose init prepared a marker only its mount namespace has
/// (/dev/shm is a tmpfs of the container), then sleeps.
fn running() -> TestContainer {
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "echo from-init > /dev/shm/marker; exec sleep 60",
    ]);
    tc.run_detached();
    wait_for(STATE_TIMEOUT, "the init's marker", || {
        tc.run(&["exec", &tc.id, "test", "-e", "/dev/shm/marker"])
            .success()
            .then_some(())
    });
    tc
}

fn exec(tc: &TestContainer, args: &[&str]) -> integration::Output {
    let mut full = vec!["exec"];
    let split = args.iter().position(|a| *a == "--").unwrap_or(0);
    // Flags before "--" go before the id, the command after it.
    let (flags, cmd) = if split > 0 || args.first() == Some(&"--") {
        (&args[..split], &args[split + 1..])
    } else {
        (&args[..0], args)
    };
    full.extend_from_slice(flags);
    full.push(&tc.id);
    full.extend_from_slice(cmd);
    tc.run(&full)
}

#[test]
fn exec_prints_output_and_exits_zero() {
    let tc = running();
    let out = exec(&tc, &["echo", "hello", "from", "exec"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "hello from exec\n", "{out}");
}

#[test]
fn exec_returns_the_process_exit_code() {
    let tc = running();
    exec(&tc, &["sh", "-c", "exit 3"]).assert_code(3);
}

#[test]
fn exec_returns_128_plus_signal_when_the_process_is_killed() {
    let tc = running();
    exec(&tc, &["sh", "-c", "kill -9 $$"]).assert_code(128 + 9);
}

#[test]
fn exec_joins_the_pid_namespace() {
    let tc = running();
    let init = tc.pid();
    let out = exec(
        &tc,
        &["sh", "-c", "cat /proc/1/comm; readlink /proc/self/ns/pid"],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("sleep"), "{out}");
    assert_eq!(
        lines.get(1).copied(),
        Some(ns_link(&init.to_string(), "pid").as_str()),
        "{out}"
    );
    let ps = exec(&tc, &["ps", "-o", "pid,args"]);
    ps.ok();
    assert!(
        ps.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 60")),
        "init is not pid 1 in the exec'd process's view:\n{ps}"
    );
}

#[test]
fn exec_joins_uts_ipc_net_and_mount_namespaces() {
    let tc = running();
    let init = tc.pid().to_string();
    let out = exec(
        &tc,
        &[
            "sh",
            "-c",
            "hostname; cat /dev/shm/marker; for n in uts ipc net mnt; do readlink /proc/self/ns/$n; done",
        ],
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("ocirun"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("from-init"), "{out}");
    for (i, ns) in ["uts", "ipc", "net", "mnt"].iter().enumerate() {
        assert_eq!(
            lines.get(2 + i).copied(),
            Some(ns_link(&init, ns).as_str()),
            "{ns} namespace differs:\n{out}"
        );
    }
}

#[test]
fn exec_joins_the_containers_cgroups() {
    let tc = running();
    let out = exec(
        &tc,
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
        ],
    );
    out.ok();
    let (mine, init) = out.stdout.split_once("---\n").expect("two parts");
    assert_eq!(mine, init, "{out}");
    assert!(init.contains(&tc.id), "{out}");
}

#[test]
fn exec_env_cwd_and_user_flags() {
    let tc = running();
    let out = exec(
        &tc,
        &[
            "--env",
            "IT_A=one",
            "--env",
            "PATH=/bin",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1000",
            "--additional-gids",
            "5",
            "--",
            "sh",
            "-c",
            "echo \"$IT_A $PATH $TERM\"; pwd; id -u; id -g; id -G",
        ],
    );
    out.ok();
    assert_eq!(
        out.stdout, "one /bin xterm\n/tmp\n1000\n1000\n1000 5\n",
        "{out}"
    );
}

#[test]
fn exec_user_without_gid_keeps_the_containers_gid() {
    let tc = running();
    let out = exec(&tc, &["-u", "1000", "--", "sh", "-c", "id -u; id -g"]);
    out.ok();
    assert_eq!(out.stdout, "1000\n0\n", "{out}");
}

#[test]
fn exec_cap_adds_to_bounding_effective_and_permitted() {
    let tc = running();
    let out = exec(
        &tc,
        &[
            "--cap",
            "CAP_NET_ADMIN",
            "--",
            "grep",
            "^Cap",
            "/proc/self/status",
        ],
    );
    out.ok();
    let field = |name: &str| {
        integration::status_field(&out.stdout, name)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
    };
    let net_admin = 1u64 << integration::cap_number("CAP_NET_ADMIN");
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_ne!(field(set) & net_admin, 0, "{set}:\n{out}");
    }
    assert_eq!(field("CapInh") & net_admin, 0, "{out}");
}

#[test]
fn exec_with_process_json() {
    let tc = running();
    let process = json!({
        "terminal": false,
        "user": { "uid": 1000, "gid": 1000 },
        "args": ["sh", "-c", "echo \"$IT_P\"; id -u; pwd; grep NoNewPrivs /proc/self/status"],
        "env": ["PATH=/bin:/usr/bin", "IT_P=from-process-json"],
        "cwd": "/tmp",
        "noNewPrivileges": true
    });
    let path = tc.bundle_dir().join("process.json");
    fs::write(&path, process.to_string()).unwrap();
    let out = tc.run(&["exec", "--process", path.to_str().unwrap(), &tc.id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["from-process-json", "1000", "/tmp"], "{out}");
    assert!(lines[3].ends_with('1'), "{out}");
}

#[test]
fn exec_detach_writes_the_pid_file() {
    let tc = running();
    let pid_file = tc.bundle_dir().join("exec.pid");
    let out = tc.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &tc.id,
        "sleep",
        "30",
    ]);
    out.ok();
    let text = fs::read_to_string(&pid_file).unwrap();
    let pid: i32 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "{pid} is not running"
    );
    assert_eq!(integration::proc_cmdline(pid), ["sleep", "30"]);
    let init = tc.pid().to_string();
    assert_eq!(ns_link(&pid.to_string(), "pid"), ns_link(&init, "pid"));
    assert_eq!(ns_link(&pid.to_string(), "mnt"), ns_link(&init, "mnt"));
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
}

#[test]
fn exec_into_a_created_container_works() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.create().ok();
    let out = exec(&tc, &["echo", "early"]);
    out.ok();
    assert_eq!(out.stdout, "early\n", "{out}");
    assert_eq!(tc.status(), "created");
}

#[test]
fn exec_into_an_unknown_container_fails() {
    let tc = TestContainer::new(&["true"]);
    let out = exec(&tc, &["true"]);
    out.assert_code(EXEC_FAILED);
    assert!(out.stderr.contains("exec failed"), "{out}");
    assert!(out.stderr.contains("does not exist"), "{out}");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let tc = TestContainer::new(&["true"]);
    tc.create().ok();
    tc.start().ok();
    tc.wait_status("stopped");
    let out = exec(&tc, &["true"]);
    out.assert_code(EXEC_FAILED);
    assert!(
        out.stderr.contains("cannot exec in a stopped container"),
        "{out}"
    );
}

#[test]
fn exec_of_a_missing_binary_fails_with_runcs_message() {
    let tc = running();
    let out = exec(&tc, &["no-such-binary"]);
    out.assert_code(EXEC_FAILED);
    assert!(
        out.stderr
            .contains(r#"exec: \"no-such-binary\": executable file not found in $PATH"#)
            || out
                .stderr
                .contains(r#"exec: "no-such-binary": executable file not found in $PATH"#),
        "{out}"
    );
    let out = exec(&tc, &["/no/such/file"]);
    out.assert_code(EXEC_FAILED);
    assert!(out.stderr.contains("no such file or directory"), "{out}");
    if tc.rt.is_ocirun() {
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line:\n{out}");
    }
}

#[test]
fn exec_forwards_signals_to_the_process() {
    let tc = running();
    let mut cmd = tc.command(&[
        "exec",
        &tc.id,
        "sh",
        "-c",
        "trap 'exit 42' TERM; touch /dev/shm/trapped; while true; do sleep 0.1; done",
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for(STATE_TIMEOUT, "the trap to be set", || {
        exec(&tc, &["test", "-e", "/dev/shm/trapped"])
            .success()
            .then_some(())
    });
    let pid = child.id().to_string();
    run_with_timeout(
        {
            let mut k = std::process::Command::new("kill");
            k.args(["-TERM", &pid]);
            k
        },
        COMMAND_TIMEOUT,
    )
    .ok();
    let status = wait_for(Duration::from_secs(10), "exec to exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(42));
}

#[test]
fn exec_of_a_stopped_process_leaves_the_container_running() {
    let tc = running();
    exec(&tc, &["true"]).ok();
    assert_eq!(tc.status(), "running");
    exec(&tc, &["echo", "again"]).ok();
}
