//! What the containerd and dockerd harnesses share: starting a daemon and waiting for
//! its socket, and tearing down everything it may have left on the host (processes,
//! cgroups, mounts) even when the test that used it failed half-way.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a daemon may take to start serving its socket.
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a daemon gets to exit after SIGTERM before it is killed.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A name that containerd accepts as a namespace and docker as a cgroup component:
/// `[a-z0-9]+([.-][a-z0-9]+)*`, from [`crate::unique_id`].
pub fn unique_name() -> String {
    let raw = crate::unique_id().to_ascii_lowercase();
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// A temporary directory with a short path (sockets live in it, and a unix socket
/// path is limited to 108 bytes), created under /tmp whatever TMPDIR says.
pub fn short_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("cannot create a temporary directory in /tmp: {e}"))
}

/// Spawns `cmd` with its stdout and stderr appended to `log` (a daemon started again
/// goes on in the same log).
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// The last `lines` lines of a log file, for failure messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls until `ready()` holds, failing with the daemon's log if it exits first or
/// takes longer than [`DAEMON_START_TIMEOUT`].
pub fn wait_ready(what: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if ready() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before it was ready; its log:\n{}",
                log_tail(log, 60)
            );
        }
        if start.elapsed() > DAEMON_START_TIMEOUT {
            panic!(
                "{what} not ready after {DAEMON_START_TIMEOUT:?}; its log:\n{}",
                log_tail(log, 60)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` for a cleanup path: never panics, gives up after `timeout`, and
/// returns its stdout if it could run at all.
pub fn output_quiet(mut cmd: Command, timeout: Duration) -> Option<String> {
    let mut out = tempfile::tempfile().ok()?;
    cmd.stdout(out.try_clone().ok()?).stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut s = String::new();
    out.seek(SeekFrom::Start(0)).ok()?;
    out.read_to_string(&mut s).ok()?;
    Some(s)
}

/// When the test is failing, prints the end of a daemon's log to stderr (the
/// runtime's own error often only shows up there, through the shim).
pub fn report_log_if_panicking(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "--- last lines of the {what} log ({}) ---\n{}",
            log.display(),
            log_tail(log, 40)
        );
    }
}

/// Removes the socket a containerd 1.6 shim listens on for task `id`: it lives in
/// the fixed /run/containerd/s/, named by sha256(`<containerd address>/<ns>/<id>`),
/// and only a shim that exits cleanly removes it (not one killed during cleanup).
pub fn remove_shim_socket(address: &Path, namespace: &str, id: &str) {
    let key = address.join(namespace).join(id);
    let digest = testkit::image::sha256_digest(key.to_string_lossy().as_bytes());
    let hex = digest.trim_start_matches("sha256:");
    let _ = fs::remove_file(Path::new("/run/containerd/s").join(hex));
}

/// SIGTERM, then SIGKILL if the daemon is still there after a grace period.
pub fn stop_daemon(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + DAEMON_STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILLs every process whose command line mentions `needle` (a daemon's private
/// directory: its containerd, and the shims, which name the containerd socket).
pub fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// `/sys/fs/cgroup/<hierarchy>/<rel>` on every mounted v1 hierarchy and the unified
/// one, where they exist.
pub fn cgroup_trees(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let mut v = vec![base.join(rel)];
    if let Ok(entries) = fs::read_dir(base) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                v.push(p.join(rel));
            }
        }
    }
    v.into_iter().filter(|p| p.is_dir()).collect()
}

fn subdirs_depth_first(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                subdirs_depth_first(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Removes the cgroup `rel` and everything under it on every hierarchy, first
/// thawing and killing whatever still runs there (a test that failed between
/// `pause` and `resume` leaves frozen tasks, which cannot die until thawed).
pub fn remove_cgroup_tree(rel: &str) {
    for tree in cgroup_trees(rel) {
        let mut dirs = Vec::new();
        subdirs_depth_first(&tree, &mut dirs);
        for d in &dirs {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            for pid in fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for d in &dirs {
            // Killed processes leave their cgroup asynchronously: retry briefly.
            for _ in 0..200 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Mount points at or under `dir`, deepest first (mountinfo escapes spaces as \040).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// Lazily unmounts everything at or under `dir` (overlay rootfs, shm, netns files).
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }
    }
}

/// Runs `cmd` with a new pseudo-terminal as its stdin, stdout and stderr (so a CLI
/// such as `ctr run -t` or `docker run -it` sees a terminal), and returns its exit
/// status and everything written to the terminal. Panics after `timeout`.
pub fn run_in_pty(mut cmd: Command, timeout: Duration) -> (ExitStatus, String) {
    let pty = nix::pty::openpty(None, None).unwrap_or_else(|e| panic!("openpty: {e}"));
    let slave: OwnedFd = pty.slave;
    let dup = |fd: &OwnedFd| fd.try_clone().unwrap_or_else(|e| panic!("dup pty: {e}"));
    cmd.stdin(Stdio::from(dup(&slave)))
        .stdout(Stdio::from(dup(&slave)))
        .stderr(Stdio::from(dup(&slave)));
    let command = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    // Keeping our copy of the slave would hide the EOF (EIO) that ends the read.
    drop(cmd);
    drop(slave);
    let mut master = File::from(pty.master);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match master.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(buf);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let seen = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
                panic!(
                    "{command} in a pty timed out after {timeout:?}; the terminal showed:\n{}",
                    String::from_utf8_lossy(&seen)
                );
            }
        }
    };
    let output = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    (status, String::from_utf8_lossy(&output).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_namespaces() {
        let n = unique_name();
        assert!(!n.is_empty());
        assert!(!n.contains("--") && !n.starts_with('-') && !n.ends_with('-'));
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn pty_is_a_terminal() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "[ -t 0 ] && [ -t 1 ] && echo tty-ok"]);
        let (status, out) = run_in_pty(cmd, Duration::from_secs(10));
        assert!(status.success(), "{out}");
        assert!(out.contains("tty-ok"), "{out:?}");
    }
}
