//! `--preserve-fds N`: the caller's fds 3 .. 3+N-1 reach the container process (on
//! create/run and on exec); every other fd is closed before the container's execve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use integration::{
    COMMAND_TIMEOUT, Output, STATE_TIMEOUT, TestContainer, run_with_timeout, wait_for,
};

const SECRET: &str = "passed-by-fd-3";

/// In the container: what fd 3 holds, and whether fd 4 (opened by the caller too, but
/// not preserved) made it in. `[` is a shell builtin, so /proc/self is the shell.
const READ_FDS: &str =
    "cat <&3; if [ -e /proc/self/fd/4 ]; then echo fd4-leaked; else echo no-fd4; fi";

/// `cmd` run through a shell that first opens `file` on fds 3 and 4 (a caller such as a
/// shim does this with the fds it hands over).
fn with_fds(cmd: &Command, file: &Path) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"f=$1; shift; exec 3<"$f" 4<"$f"; exec "$@""#)
        .arg("sh")
        .arg(file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    sh
}

/// A file outside the container's rootfs: only the fd can give the container its content.
fn secret_file(tc: &TestContainer) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), format!("{SECRET}\n")).unwrap();
    assert!(!f.path().starts_with(tc.bundle_dir()));
    f
}

fn run_with_fds(tc: &TestContainer, file: &Path, args: &[&str]) -> Output {
    run_with_timeout(with_fds(&tc.command(args), file), COMMAND_TIMEOUT)
}

#[test]
fn run_preserve_fds_passes_fd_3() {
    let tc = TestContainer::new(&["sh", "-c", READ_FDS]);
    let file = secret_file(&tc);
    tc.save();
    let bundle = tc.bundle_dir().to_str().unwrap();
    let out = run_with_fds(
        &tc,
        file.path(),
        &["run", "--preserve-fds", "1", "--bundle", bundle, &tc.id],
    );
    out.ok();
    assert_eq!(out.stdout, format!("{SECRET}\nno-fd4\n"), "{out}");
}

#[test]
fn run_without_preserve_fds_passes_nothing() {
    // The control: the same caller fds, no flag, nothing reaches the container.
    let tc = TestContainer::new(&["sh", "-c", READ_FDS]);
    let file = secret_file(&tc);
    tc.save();
    let bundle = tc.bundle_dir().to_str().unwrap();
    let out = run_with_fds(&tc, file.path(), &["run", "--bundle", bundle, &tc.id]);
    assert_eq!(out.stdout, "no-fd4\n", "{out}");
    assert!(!out.stdout.contains(SECRET), "{out}");
}

#[test]
fn create_preserve_fds_keeps_fd_3_until_start() {
    // The output goes to a file: after create the runtime's stdout is no longer read.
    let tc = TestContainer::new(&["sh", "-c", &format!("({READ_FDS}) >/out")]);
    let file = secret_file(&tc);
    tc.save();
    let bundle = tc.bundle_dir().to_str().unwrap();
    let pid_file = tc.pid_file().to_str().unwrap();
    run_with_fds(
        &tc,
        file.path(),
        &[
            "create",
            "--preserve-fds",
            "1",
            "--bundle",
            bundle,
            "--pid-file",
            pid_file,
            &tc.id,
        ],
    )
    .ok();
    // The caller's copy is gone before start: the container holds its own.
    drop(file);
    tc.start().ok();
    tc.wait_status("stopped");
    let got = fs::read_to_string(tc.rootfs().join("out")).unwrap();
    assert_eq!(got, format!("{SECRET}\nno-fd4\n"));
}

#[test]
fn exec_preserve_fds_passes_fd_3() {
    let tc = TestContainer::new(&["sleep", "60"]);
    tc.run_detached();
    wait_for(STATE_TIMEOUT, "the container to run", || {
        (tc.status() == "running").then_some(())
    });
    let file = secret_file(&tc);
    let out = run_with_fds(
        &tc,
        file.path(),
        &["exec", "--preserve-fds", "1", &tc.id, "sh", "-c", READ_FDS],
    );
    out.ok();
    assert_eq!(out.stdout, format!("{SECRET}\nno-fd4\n"), "{out}");
    // Without the flag the exec'd process gets neither fd.
    let out = run_with_fds(&tc, file.path(), &["exec", &tc.id, "sh", "-c", READ_FDS]);
    assert_eq!(out.stdout, "no-fd4\n", "{out}");
}
