//! `run` in the foreground: the container's output and exit code are the runtime's.
use integration::{TestContainer, ns_link};

#[test]
fn run_prints_container_stdout_and_exits_zero() {
    let tc = TestContainer::new(&["echo", "hello"]);
    let out = tc.run_foreground(&[]);
    out.assert_code(0);
    assert_eq!(out.stdout, "hello\n", "{out}");
}

#[test]
fn run_returns_container_exit_code() {
    let tc = TestContainer::new(&["sh", "-c", "exit 3"]);
    tc.run_foreground(&[]).assert_code(3);
}

#[test]
fn run_returns_128_plus_signal_when_container_is_killed() {
    // Without a pid namespace the shell is not an init, so SIGKILL to itself is
    // delivered (an init ignores signals from its own namespace: pid_namespaces(7)).
    let mut tc = TestContainer::new(&["sh", "-c", "kill -9 $$"]);
    let ns = tc.config()["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    tc.run_foreground(&[]).assert_code(128 + 9);
}

#[test]
fn run_leaves_no_state_after_exit() {
    let tc = TestContainer::new(&["true"]);
    tc.run_foreground(&[]).assert_code(0);
    tc.try_state().assert_failed();
    tc.assert_no_trace();
}

#[test]
fn process_is_pid_1_in_new_pid_namespace() {
    let tc = TestContainer::new(&["sh", "-c", "echo $$; readlink /proc/self/ns/pid"]);
    let out = tc.run_foreground(&[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "{out}");
    let inside = lines.get(1).copied().unwrap_or_default();
    assert!(inside.starts_with("pid:["), "{out}");
    assert_ne!(inside, ns_link("self", "pid"), "{out}");
}

#[test]
fn env_vars_are_visible() {
    let mut tc = TestContainer::new(&["sh", "-c", "echo \"$IT_GREETING\""]);
    tc.config()["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("IT_GREETING=hi there".into());
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "hi there\n", "{out}");
}

#[test]
fn cwd_is_the_configured_directory() {
    let mut tc = TestContainer::new(&["pwd"]);
    tc.config()["process"]["cwd"] = "/tmp".into();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "/tmp\n", "{out}");
}

#[test]
fn missing_cwd_is_created() {
    let mut tc = TestContainer::new(&["pwd"]);
    tc.config()["process"]["cwd"] = "/work/dir".into();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "/work/dir\n", "{out}");
    assert!(tc.rootfs().join("work/dir").is_dir());
}

#[test]
fn run_no_pivot_works() {
    let tc = TestContainer::new(&["echo", "ok"]);
    let out = tc.run_foreground(&["--no-pivot"]);
    out.ok();
    assert_eq!(out.stdout, "ok\n", "{out}");
}

/// systemd socket activation, as runc passes it on: with LISTEN_FDS=N (and LISTEN_PID
/// naming the runtime), fds 3..3+N reach the container's process, which is told so.
#[test]
fn listen_fds_are_passed_to_the_container() {
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "echo \"fds=$LISTEN_FDS pid=$LISTEN_PID\"; cat <&3",
    ]);
    tc.save();
    let passed = tc.bundle_dir().join("activation-socket-stand-in");
    std::fs::write(&passed, "handed over by the activator\n").unwrap();
    let bundle = tc.bundle_dir().to_str().unwrap().to_string();
    let inner = tc.command(&["run", "--bundle", &bundle, &tc.id]);
    // `exec` keeps the shell's pid, so $$ is the runtime's pid, as systemd sets it.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\" 3<'{}'",
            passed.display()
        ))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(std::process::Stdio::null());
    let out = integration::run_with_timeout(cmd, std::time::Duration::from_secs(30));
    out.ok();
    assert!(out.stdout.contains("fds=1 pid=1"), "{out}");
    assert!(out.stdout.contains("handed over by the activator"), "{out}");
}

/// The container starts with a clean signal state: the runtime's own SIGPIPE ignore
/// (Rust's runtime sets one) and any mask its caller had (a shim blocks SIGCHLD for its
/// signalfd) must not reach it, or `yes | head` never ends by SIGPIPE and `wait` in a
/// shell can hang. Both through `run` and `exec`.
#[test]
fn container_process_gets_default_signal_state() {
    const SIGPIPE_BIT: u64 = 1 << (13 - 1);
    let check = |out: &integration::Output| {
        let field = |name: &str| {
            integration::status_field(&out.stdout, name)
                .and_then(|v| u64::from_str_radix(&v, 16).ok())
                .unwrap_or_else(|| panic!("{name} missing:\n{out}"))
        };
        assert_eq!(field("SigIgn") & SIGPIPE_BIT, 0, "SIGPIPE ignored:\n{out}");
        assert_eq!(field("SigBlk"), 0, "signals blocked:\n{out}");
    };
    let tc = TestContainer::new(&["grep", "-E", "SigBlk|SigIgn", "/proc/self/status"]);
    let out = tc.run_foreground(&[]);
    out.ok();
    check(&out);

    let tc = TestContainer::new(&["sleep", "30"]);
    tc.run_detached();
    let out = tc.run(&[
        "exec",
        &tc.id,
        "grep",
        "-E",
        "SigBlk|SigIgn",
        "/proc/self/status",
    ]);
    out.ok();
    check(&out);
}
