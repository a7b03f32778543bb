//! `process.terminal`: the pty master handed over a console socket (create, detached
//! run and exec, as containerd uses them) and relayed by the runtime itself in the
//! foreground when the caller sits on a terminal.
// Test helpers fail their test by panicking on a broken precondition.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use integration::console::{ConsoleSocket, HostPty, read_to_close, read_until, type_in};
use integration::{Output, STATE_TIMEOUT, TestContainer, json, wait_for};

const TTY_TIMEOUT: Duration = Duration::from_secs(10);

fn with_terminal(args: &[&str]) -> TestContainer {
    let mut tc = TestContainer::new(args);
    tc.config()["process"]["terminal"] = json!(true);
    tc.config()["process"]["consoleSize"] = json!({ "height": 33, "width": 101 });
    tc.save();
    tc
}

fn create_with_socket(tc: &TestContainer, sock: &ConsoleSocket) -> Output {
    tc.save();
    tc.run(&[
        "create",
        "--bundle",
        tc.bundle_dir().to_str().unwrap(),
        "--console-socket",
        sock.path_str(),
        &tc.id,
    ])
}

/// The pty converts "\n" to "\r\n" (onlcr); compare lines.
fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

#[test]
fn create_sends_the_master_and_the_process_runs_on_the_containers_pty() {
    let tc = with_terminal(&["sh", "-c", "tty; stty size"]);
    let sock = ConsoleSocket::new();
    create_with_socket(&tc, &sock).ok();
    let (master, name) = sock.receive_master(TTY_TIMEOUT);
    assert_eq!(
        name, "/dev/ptmx",
        "runc sends the name /dev/ptmx with the fd"
    );
    tc.start().ok();
    let out = read_to_close(&master, TTY_TIMEOUT);
    assert_eq!(lines(&out), ["/dev/pts/0", "33 101"], "{out:?}");
    tc.wait_status("stopped");
}

#[test]
fn terminal_is_the_controlling_terminal_and_stdio() {
    let tc = with_terminal(&[
        "sh",
        "-c",
        "for f in 0 1 2; do readlink /proc/self/fd/$f; done; \
         ps -o pid,tty,args | grep -c 'pts/0'",
    ]);
    let sock = ConsoleSocket::new();
    create_with_socket(&tc, &sock).ok();
    let (master, _) = sock.receive_master(TTY_TIMEOUT);
    tc.start().ok();
    let out = lines(&read_to_close(&master, TTY_TIMEOUT));
    assert_eq!(
        out[..3],
        ["/dev/pts/0", "/dev/pts/0", "/dev/pts/0"],
        "{out:?}"
    );
    // ps, grep and sh all show pts/0 as their controlling terminal.
    let n: u32 = out[3].trim().parse().unwrap_or(0);
    assert!(n >= 2, "{out:?}");
}

#[test]
fn interactive_shell_on_the_console() {
    let tc = with_terminal(&["sh"]);
    let sock = ConsoleSocket::new();
    create_with_socket(&tc, &sock).ok();
    let (master, _) = sock.receive_master(TTY_TIMEOUT);
    tc.start().ok();
    type_in(&master, "echo h''i-from-$((40+2))\n");
    let t = read_until(&master, TTY_TIMEOUT, |s| s.contains("hi-from-42"));
    assert!(!t.closed, "{:?}", t.text);
    type_in(&master, "exit\n");
    let rest = read_to_close(&master, TTY_TIMEOUT);
    assert!(!rest.contains("hi-from-42\r\nhi-from-42"), "{rest:?}");
    tc.wait_status("stopped");
}

#[test]
fn run_detached_with_console_socket() {
    let tc = with_terminal(&["tty"]);
    let sock = ConsoleSocket::new();
    tc.save();
    tc.run(&[
        "run",
        "--detach",
        "--bundle",
        tc.bundle_dir().to_str().unwrap(),
        "--console-socket",
        sock.path_str(),
        &tc.id,
    ])
    .ok();
    let (master, _) = sock.receive_master(TTY_TIMEOUT);
    let out = read_to_close(&master, TTY_TIMEOUT);
    assert_eq!(lines(&out), ["/dev/pts/0"], "{out:?}");
}

#[test]
fn exec_tty_with_console_socket() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.run_detached();
    let sock = ConsoleSocket::new();
    tc.run(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.path_str(),
        &tc.id,
        "sh",
        "-c",
        "tty; stty size",
    ])
    .ok();
    let (master, name) = sock.receive_master(TTY_TIMEOUT);
    assert_eq!(name, "/dev/ptmx");
    let out = read_to_close(&master, TTY_TIMEOUT);
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{out:?}");
    assert!(got[0].starts_with("/dev/pts/"), "{out:?}");
}

#[test]
fn exec_interactive_shell_on_a_console_socket() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.run_detached();
    let sock = ConsoleSocket::new();
    let pid_file = tc.bundle_dir().join("exec.pid");
    tc.run(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.path_str(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &tc.id,
        "sh",
    ])
    .ok();
    let (master, _) = sock.receive_master(TTY_TIMEOUT);
    type_in(&master, "echo hi\n");
    let t = read_until(&master, TTY_TIMEOUT, |s| {
        s.contains("hi\r\n") && s.matches("hi").count() >= 2
    });
    assert!(!t.closed, "{:?}", t.text);
    type_in(&master, "exit\n");
    read_to_close(&master, TTY_TIMEOUT);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    wait_for(STATE_TIMEOUT, "the exec'd shell to exit", || {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z")).then_some(())
    });
    assert_eq!(tc.status(), "running");
}

#[test]
fn create_with_terminal_needs_a_console_socket() {
    let tc = with_terminal(&["true"]);
    let out = tc.create();
    out.assert_failed();
    assert!(
        out.stderr
            .contains("cannot allocate tty if runc will detach without setting console socket"),
        "{out}"
    );
    tc.try_state().assert_failed();
}

#[test]
fn console_socket_without_terminal_is_refused() {
    let tc = TestContainer::new(&["true"]);
    let sock = ConsoleSocket::new();
    let out = create_with_socket(&tc, &sock);
    out.assert_failed();
    assert!(
        out.stderr
            .contains("cannot use console socket if runc will not detach or allocate tty"),
        "{out}"
    );
}

#[test]
fn foreground_exec_tty_without_a_terminal_fails() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.run_detached();
    // stdin is /dev/null and stdout/stderr are files: no terminal to relay to.
    let out = tc.run(&["exec", "-t", &tc.id, "true"]);
    out.assert_code(255);
    assert!(out.stderr.contains("/dev/tty"), "{out}");
}

/// Runs `args` of the runtime with a host pty as its stdio (and no controlling
/// terminal); for each (wait_for, input) step waits until the screen shows `wait_for`,
/// then types `input`. Returns the runtime's exit code and everything shown.
fn on_host_pty(tc: &TestContainer, args: &[&str], steps: &[(&str, &str)]) -> (Option<i32>, String) {
    let pty = HostPty::new(40, 120);
    let mut cmd = tc.command(args);
    cmd.stdin(Stdio::from(pty.open_slave()))
        .stdout(Stdio::from(pty.open_slave()))
        .stderr(Stdio::from(pty.open_slave()));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let master: &File = &pty.master;
    let mut screen = String::new();
    for (wait, input) in steps {
        let seen = screen.len();
        let t = read_until(master, TTY_TIMEOUT, |s| s.contains(wait));
        screen.push_str(&t.text);
        assert!(
            !t.closed,
            "the terminal closed before {wait:?}: {:?}",
            &screen[seen..]
        );
        type_in(master, input);
    }
    screen.push_str(&read_to_close(master, TTY_TIMEOUT));
    let status = wait_for(TTY_TIMEOUT, "the runtime to exit", || {
        child.try_wait().unwrap()
    });
    (status.code(), screen)
}

#[test]
fn foreground_run_relays_the_terminal() {
    let tc = with_terminal(&["sh", "-c", "tty; stty size; exit 5"]);
    tc.save();
    let (code, out) = on_host_pty(
        &tc,
        &["run", "--bundle", tc.bundle_dir().to_str().unwrap(), &tc.id],
        &[],
    );
    assert_eq!(code, Some(5), "{out:?}");
    let got = lines(&out);
    assert_eq!(
        got.first().map(String::as_str),
        Some("/dev/pts/0"),
        "{out:?}"
    );
    if tc.rt.is_ocirun() {
        // ocirun sizes the pty from the caller's terminal before the process starts
        // (runc 1.1 does it concurrently, so the process may still see consoleSize).
        assert_eq!(got.get(1).map(String::as_str), Some("40 120"), "{out:?}");
    }
}

#[test]
fn foreground_exec_relays_an_interactive_shell() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.run_detached();
    let (code, out) = on_host_pty(
        &tc,
        &["exec", "-t", &tc.id, "sh"],
        &[
            ("# ", "echo hi-$((6*7))\n"),
            ("hi-42", "stty size\n"),
            ("40 120", "exit 7\n"),
        ],
    );
    assert_eq!(code, Some(7), "{out:?}");
    // Line endings differ (runc 1.1 leaves the caller's terminal cooking "\r\n"
    // into "\r\r\n"; ocirun puts it in raw mode): compare without carriage returns.
    let plain = out.replace('\r', "");
    assert!(plain.contains("\nhi-42\n"), "{out:?}");
    assert!(plain.contains("\n40 120\n"), "the caller's size: {out:?}");
}
