//! Harness for the end-to-end tests in `tests/`: it drives a runc-compatible runtime
//! binary on busybox bundles exactly as containerd and docker call runc (global flags
//! before the command, one `--root` state directory per container).
//!
//! The binary under test comes from `OCIRUN_TEST_RUNTIME` (a path, or a name looked up
//! on `PATH`, e.g. `runc`); by default it is `ocirun` from the workspace's target
//! directory. The suite is validated against runc so that it proves itself:
//! `OCIRUN_TEST_RUNTIME=runc cargo nextest run -p integration`.
//!
//! Every command runs with a timeout, so a hung runtime or container fails its test
//! instead of stalling CI, and every [`TestContainer`] cleans up after itself on drop
//! (state, processes and cgroups), even when its test panicked.
#![forbid(unsafe_code)]
// A harness reports a broken precondition by failing the test that uses it.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod console;
pub mod containerd;
pub mod containerd_lite;
pub mod daemon;
pub mod dockerd;
pub mod engined;
pub mod token_auth;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::{self, Value, json};
pub use testkit::Bundle;

/// How long one runtime command may take before it is killed and its test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a test waits for a container to reach a state (e.g. stopped after a kill).
pub const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cgroup parent every test container lives under (`linux.cgroupsPath` is
/// `/ocirun-it/<id>`), so leftovers are easy to spot and remove by hand.
pub const CGROUP_PARENT: &str = "ocirun-it";

const RUNTIME_ENV: &str = "OCIRUN_TEST_RUNTIME";

/// The runtime binary under test.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
}

impl Runtime {
    /// The runtime named by `OCIRUN_TEST_RUNTIME`, or the workspace's `ocirun`.
    ///
    /// Panics (failing the test, never skipping it) when the binary does not exist.
    pub fn from_env() -> Self {
        let path = match std::env::var_os(RUNTIME_ENV) {
            Some(v) if !v.is_empty() => {
                let p = PathBuf::from(&v);
                if p.components().count() > 1 {
                    p
                } else {
                    find_on_path(&v).unwrap_or_else(|| {
                        panic!("{RUNTIME_ENV}={}: no such executable on PATH", p.display())
                    })
                }
            }
            _ => default_ocirun_path(),
        };
        if !path.is_file() {
            panic!(
                "runtime under test {} does not exist: run `cargo build --workspace --bins` first \
                 (or set {RUNTIME_ENV} to a runtime binary, e.g. {RUNTIME_ENV}=runc)",
                path.display()
            );
        }
        Self { path }
    }

    /// The workspace's ocirun, whatever `OCIRUN_TEST_RUNTIME` says: for tests of what
    /// only ocirun does (such as its cgroup v2 device filter on a hybrid host, where
    /// runc uses the v1 devices controller alone).
    pub fn ocirun() -> Self {
        let path = default_ocirun_path();
        if !path.is_file() {
            panic!(
                "{} does not exist: run `cargo build --workspace --bins` first",
                path.display()
            );
        }
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the binary under test is ocirun (not runc or another runtime).
    /// Tests branch on this only for ocirun's own promises (e.g. one-line errors).
    pub fn is_ocirun(&self) -> bool {
        self.path
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with("ocirun"))
    }

    /// A command for the runtime with no arguments yet; stdin is /dev/null.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        c.stdin(Stdio::null());
        c
    }
}

fn find_on_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The workspace root: this package's parent directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `<target>/debug/ocirun`, where `<target>` is `CARGO_TARGET_DIR` at test time
/// (relative to the workspace root if relative) or `<workspace>/target`.
fn default_ocirun_path() -> PathBuf {
    let root = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t),
        _ => root.join("target"),
    };
    target.join("debug").join("ocirun")
}

/// What a finished command did: its exit code and everything it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub command: String,
}

impl Output {
    /// The exit code (`None` if the runtime itself was killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command, exit status and output unless the command succeeded.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// Panics unless the command failed (exited non-zero).
    #[track_caller]
    pub fn assert_failed(&self) -> &Self {
        assert!(
            matches!(self.code(), Some(c) if c != 0),
            "expected a non-zero exit code:\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion with its stdout and stderr captured in temporary files
/// (not pipes: a detached container inherits them and would keep a pipe open), and
/// kills it after `timeout` so that a hang fails the test.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let command = format!("{cmd:?}");
    let mut out = tempfile::tempfile().expect("temp file for stdout");
    let mut err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdout(out.try_clone().expect("dup stdout file"))
        .stderr(err.try_clone().expect("dup stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {command}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "timed out after {timeout:?}: {command}\n--- stdout ---\n{}--- stderr ---\n{}",
                    read_all(&mut out),
                    read_all(&mut err)
                );
            }
            Err(e) => panic!("wait for {command}: {e}"),
        }
    };
    Output {
        status,
        stdout: read_all(&mut out),
        stderr: read_all(&mut err),
        command,
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    s.push_str(&String::from_utf8_lossy(&buf));
    s
}

/// Polls `f` every 10 ms until it returns `Some`, or panics after `timeout` with `what`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `it-<testname>-<pid>-<counter>`: unique across parallel test processes and within
/// one test. The test name comes from the test thread's name (libtest and nextest
/// name it after the test), shortened to keep state and socket paths short.
pub fn unique_id() -> String {
    let thread = std::thread::current();
    let full = thread.name().unwrap_or("test");
    let last = full.rsplit("::").next().unwrap_or(full);
    let name: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(28)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("it-{name}-{}-{n}", std::process::id())
}

/// One container under test: a unique id, its own `--root` state directory, a busybox
/// bundle and a unique cgroup (`/ocirun-it/<id>`). Dropping it force-deletes the
/// container and removes its cgroups, even if the test panicked.
#[derive(Debug)]
pub struct TestContainer {
    pub rt: Runtime,
    pub id: String,
    /// The bundle; edit `bundle.config` freely, [`Self::create`] and the `run_*`
    /// methods save it first.
    pub bundle: Bundle,
    root: PathBuf,
    pid_file: PathBuf,
    log: Option<PathBuf>,
    // Dropped after `Drop::drop` has deleted the container.
    _root_dir: tempfile::TempDir,
    _bundle_dir: tempfile::TempDir,
}

impl TestContainer {
    /// A container whose process runs `args`, for the runtime from the environment.
    pub fn new(args: &[&str]) -> Self {
        Self::with_runtime(Runtime::from_env(), args)
    }

    pub fn with_runtime(rt: Runtime, args: &[&str]) -> Self {
        let id = unique_id();
        let root_dir = tempfile::Builder::new()
            .prefix("ocirun-it-root.")
            .tempdir()
            .expect("state tempdir");
        let bundle_dir = tempfile::Builder::new()
            .prefix("ocirun-it-bundle.")
            .tempdir()
            .expect("bundle tempdir");
        // Like /run/containerd: traversable by the container's (possibly mapped) root.
        fs::set_permissions(bundle_dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod bundle dir");
        let mut bundle = Bundle::create(bundle_dir.path(), args).expect("busybox bundle");
        bundle.config["linux"]["cgroupsPath"] = json!(format!("/{CGROUP_PARENT}/{id}"));
        bundle.save().expect("save config.json");
        let root = root_dir.path().join("state");
        let pid_file = root_dir.path().join("container.pid");
        Self {
            rt,
            id,
            bundle,
            root,
            pid_file,
            log: None,
            _root_dir: root_dir,
            _bundle_dir: bundle_dir,
        }
    }

    /// The `--root` directory (it may not exist until the runtime creates it).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<id>`: where the runtime keeps this container's state.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    pub fn bundle_dir(&self) -> &Path {
        &self.bundle.dir
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs()
    }

    /// The config, for editing before `create`/`run_*`.
    pub fn config(&mut self) -> &mut Value {
        &mut self.bundle.config
    }

    /// Writes `config.json` now (the lifecycle methods also do it).
    pub fn save(&self) {
        self.bundle.save().expect("save config.json");
    }

    /// From now on, pass `--log <file> --log-format json` (as containerd does).
    pub fn enable_log(&mut self) -> PathBuf {
        let p = self._root_dir.path().join("runtime.log");
        self.log = Some(p.clone());
        p
    }

    /// The `--pid-file` path that [`Self::create`] and [`Self::run_detached`] pass.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// `<rt> --root R [--log F --log-format json] <args>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.rt.command();
        c.arg("--root").arg(&self.root);
        if let Some(log) = &self.log {
            c.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        c.args(args);
        c
    }

    /// Runs `<rt> --root R [--log ...] <args>` with the timeout; does not save the config.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.command(args), COMMAND_TIMEOUT)
    }

    fn bundle_str(&self) -> &str {
        self.bundle.dir.to_str().expect("utf-8 bundle path")
    }

    fn pid_file_str(&self) -> &str {
        self.pid_file.to_str().expect("utf-8 pid file path")
    }

    /// `create --bundle B --pid-file F ID` (after saving the config).
    pub fn create(&self) -> Output {
        self.save();
        self.run(&[
            "create",
            "--bundle",
            self.bundle_str(),
            "--pid-file",
            self.pid_file_str(),
            &self.id,
        ])
    }

    pub fn start(&self) -> Output {
        self.run(&["start", &self.id])
    }

    /// `run --bundle B [extra...] ID` in the foreground: the container's stdout and
    /// stderr are the runtime's, and its exit code is the runtime's.
    pub fn run_foreground(&self, extra: &[&str]) -> Output {
        self.save();
        let mut args = vec!["run", "--bundle", self.bundle_str()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.run(&args)
    }

    /// `run --bundle B --detach --pid-file F ID`; panics unless it succeeded, and
    /// returns the container's pid from the pid file.
    pub fn run_detached(&self) -> i32 {
        self.save();
        self.run(&[
            "run",
            "--bundle",
            self.bundle_str(),
            "--detach",
            "--pid-file",
            self.pid_file_str(),
            &self.id,
        ])
        .ok();
        self.read_pid_file()
    }

    /// The pid in the pid file (runc writes it without a trailing newline).
    pub fn read_pid_file(&self) -> i32 {
        let text = fs::read_to_string(&self.pid_file)
            .unwrap_or_else(|e| panic!("read pid file {}: {e}", self.pid_file.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("pid file holds {text:?}: {e}"))
    }

    /// `state ID` as it ran, for tests that expect it to fail.
    pub fn try_state(&self) -> Output {
        self.run(&["state", &self.id])
    }

    /// `state ID` parsed; panics unless it succeeded and printed JSON.
    pub fn state(&self) -> Value {
        let out = self.try_state();
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state printed invalid JSON ({e}):\n{out}"))
    }

    /// The `status` field of `state ID`.
    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("state has a string status")
            .to_string()
    }

    /// Polls `state` until the status is `want`, for at most [`STATE_TIMEOUT`].
    pub fn wait_status(&self, want: &str) -> Value {
        wait_for(STATE_TIMEOUT, &format!("{} to be {want}", self.id), || {
            let s = self.state();
            (s["status"] == want).then_some(s)
        })
    }

    /// The container's init pid from `state ID`.
    pub fn pid(&self) -> i32 {
        let pid = self.state()["pid"].as_i64().expect("state has a pid");
        i32::try_from(pid).expect("pid fits in i32")
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.run(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Output {
        self.run(&["delete", &self.id])
    }

    pub fn delete_force(&self) -> Output {
        self.run(&["delete", "--force", &self.id])
    }

    /// The container's cgroup directories that exist now, on any hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_of(&self.id)
    }

    /// The container's directory for `file` of a cgroup v1 `controller`
    /// (`/sys/fs/cgroup/<controller>/ocirun-it/<id>`), or the unified one on a
    /// cgroup v2-only host.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let base = Path::new("/sys/fs/cgroup");
        if base.join("cgroup.controllers").exists() {
            base.join(CGROUP_PARENT).join(&self.id)
        } else {
            base.join(controller).join(CGROUP_PARENT).join(&self.id)
        }
    }

    /// Asserts the container left nothing behind on the host: no state entry under
    /// `--root`, no cgroup, and no mount under its bundle.
    #[track_caller]
    pub fn assert_no_trace(&self) {
        assert!(
            !self.state_dir().exists(),
            "state entry {} was left behind",
            self.state_dir().display()
        );
        let cgroups = self.cgroup_dirs();
        assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
        let mounts = mounts_containing(self.bundle_str());
        assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // Best effort: the container may never have been created, or already deleted.
        let _ = run_quiet(self.command(&["delete", "--force", &self.id]));
        for dir in cgroup_dirs_of(&self.id) {
            // Processes leave a cgroup asynchronously after SIGKILL: retry briefly.
            for _ in 0..100 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Like [`run_with_timeout`] but never panics (for cleanup paths).
fn run_quiet(mut cmd: Command) -> Option<ExitStatus> {
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Existing cgroup directories named `ocirun-it/<id>` on every mounted hierarchy.
pub fn cgroup_dirs_of(id: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join(CGROUP_PARENT).join(id)];
    if let Ok(entries) = fs::read_dir(base) {
        for e in entries.flatten() {
            candidates.push(e.path().join(CGROUP_PARENT).join(id));
        }
    }
    candidates.into_iter().filter(|p| p.is_dir()).collect()
}

/// The host's (this test process's) `/proc/self/mountinfo`.
pub fn host_mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo")
}

/// Lines of the host's mountinfo that mention `needle`.
pub fn mounts_containing(needle: &str) -> Vec<String> {
    host_mountinfo()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The target of `/proc/<pid>/ns/<ns>` (e.g. `net:[4026531840]`); `pid` may be "self".
pub fn ns_link(pid: &str, ns: &str) -> String {
    let p = format!("/proc/{pid}/ns/{ns}");
    fs::read_link(&p)
        .unwrap_or_else(|e| panic!("readlink {p}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The value of `field` (e.g. `Uid`, `CapEff`) in `/proc/<pid>/status`.
pub fn proc_status_field(pid: i32, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&text, field)
}

/// The value of `field` in a `/proc/*/status` text (what follows `field:`, trimmed).
pub fn status_field(status: &str, field: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// `/proc/<pid>/cmdline` as arguments.
pub fn proc_cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Makes `uid:gid` own `path` and everything under it, without following symlinks
/// (a rootfs for a user namespace must be accessible to its mapped root).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for e in fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The standard capability numbers (capability.h), for building expected masks.
pub fn cap_number(name: &str) -> u32 {
    const CAPS: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    let n = CAPS
        .iter()
        .position(|c| *c == name)
        .unwrap_or_else(|| panic!("unknown capability {name}"));
    u32::try_from(n).expect("small")
}

/// The `/proc/*/status` mask (as a u64) of the capability names in a JSON array
/// (missing or null = empty set).
pub fn cap_mask(names: &Value) -> u64 {
    names
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| 1u64 << cap_number(n.as_str().expect("capability name")))
                .fold(0, |m, b| m | b)
        })
        .unwrap_or(0)
}

/// True if `s` looks like an RFC 3339 timestamp (`2026-01-02T03:04:05[.frac](Z|±hh:mm)`).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2026-11-23T19:54:21.555513774Z"));
        assert!(is_rfc3339("2026-11-23T19:54:21+01:00"));
        assert!(!is_rfc3339("2026-11-23 19:54:21"));
        assert!(!is_rfc3339("2026-11-23T19:54:21."));
    }

    #[test]
    fn default_caps_mask() {
        let m = cap_mask(&json!([
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE"
        ]));
        assert_eq!(format!("{m:016x}"), "0000000020000420");
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";
        assert_eq!(
            status_field(s, "Uid").as_deref(),
            Some("1000\t1000\t1000\t1000")
        );
        assert_eq!(status_field(s, "Gid"), None);
    }
}
