//! A private containerd-lite for one test (its own root, state and socket, all in one
//! temporary directory), driven with Debian's real `ctr`; and a private
//! `docker-registry` on a free 127.0.0.1 port to pull from.
//!
//! Dropping [`ContainerdLite`] stops the daemon (SIGTERM, then SIGKILL), unmounts
//! anything left under its directory and removes it, even when the test failed.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::{
    report_log_if_panicking, short_tempdir, spawn_logged, stop_daemon, unique_name,
    unmount_all_under, wait_ready,
};
use crate::{COMMAND_TIMEOUT, Output, run_with_timeout, workspace_root};

/// `<target>/debug/containerd-lite` (`CONTAINERD_LITE` overrides it).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTAINERD_LITE") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t),
        _ => root.join("target"),
    };
    target.join("debug").join("containerd-lite")
}

#[derive(Debug)]
pub struct ContainerdLite {
    dir: tempfile::TempDir,
    child: Option<Child>,
    namespace: String,
    config: Option<PathBuf>,
}

impl ContainerdLite {
    pub fn start() -> Self {
        Self::start_with_config(None)
    }

    /// A daemon reading `config` (containerd-shaped TOML) through `--config`.
    pub fn start_with_config(config: Option<&str>) -> Self {
        let dir = short_tempdir("cdl-");
        let config = config.map(|text| {
            let p = dir.path().join("config.toml");
            std::fs::write(&p, text).expect("write config.toml");
            p
        });
        let mut namespace = unique_name();
        namespace.truncate(60);
        let mut me = Self {
            dir,
            child: None,
            namespace: namespace.trim_end_matches('-').to_string(),
            config,
        };
        me.spawn();
        me
    }

    /// (Re)starts the daemon on the same root, state and socket.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "containerd-lite already running");
        let mut cmd = Command::new(binary());
        cmd.arg("--address")
            .arg(self.address())
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.dir().join("state"))
            .arg("--log-level")
            .arg("info,containerd_lite=debug,unpack=debug");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let log = self.log_path();
        // Appends: a restarted daemon keeps the earlier log.
        let prior = std::fs::read(&log).unwrap_or_default();
        let mut child = spawn_logged(cmd, &log);
        if !prior.is_empty() {
            let _ = std::fs::write(self.dir().join("daemon.log.prev"), prior);
        }
        let addr = self.address();
        wait_ready("containerd-lite", &mut child, &log, || {
            addr.exists()
                && run_with_timeout(self.ctr_command_ns(None, &["version"]), COMMAND_TIMEOUT)
                    .success()
        });
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("daemon running")
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_daemon(&mut c);
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    pub fn address(&self) -> PathBuf {
        self.dir().join("cdl.sock")
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn ctr_command_ns(&self, ns: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(self.address());
        if let Some(ns) = ns {
            c.arg("-n").arg(ns);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    /// `ctr -a SOCK -n NS <args>`, not yet run.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        self.ctr_command_ns(Some(&self.namespace), args)
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        run_with_timeout(self.ctr_command(args), COMMAND_TIMEOUT)
    }

    /// `ctr` without `-n` (ctr's own default namespace).
    pub fn ctr_global(&self, args: &[&str]) -> Output {
        run_with_timeout(self.ctr_command_ns(None, args), COMMAND_TIMEOUT)
    }

    /// The `containerd-lite` binary with this daemon's root (offline subcommands).
    pub fn offline(&self, root: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(binary());
        cmd.arg("--root")
            .arg(root)
            .arg("--state")
            .arg(root.with_extension("state"))
            .arg("--log-level")
            .arg("warn")
            .args(args)
            .stdin(Stdio::null());
        run_with_timeout(cmd, COMMAND_TIMEOUT)
    }

    /// Blob files on disk (all namespaces).
    pub fn blob_files(&self) -> Vec<String> {
        let dir = self
            .root()
            .join("io.containerd.content.v1.content/blobs/sha256");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl ContainerdLite {
    /// Bundles of the daemon's tasks, `<state>/io.containerd.runtime.v2.task/<ns>/<id>`.
    pub fn task_bundles(&self) -> Vec<PathBuf> {
        let root = self.dir().join("state/io.containerd.runtime.v2.task");
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect()
    }

    /// Kills what a failed test left running: each task's processes and its shim,
    /// then lets the shim's `delete` remove the runtime state and unmount the rootfs.
    fn kill_tasks(&self) {
        let shim = binary().with_file_name("shim");
        for bundle in self.task_bundles() {
            for f in ["init.pid", "shim.pid"] {
                let pid = std::fs::read_to_string(bundle.join(f))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid.filter(|p| *p > 1) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let ns = bundle
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = bundle
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut cmd = Command::new(&shim);
            cmd.args(["-namespace", &ns, "-id", &id, "-address"])
                .arg(self.address())
                .args(["-publish-binary", "/bin/true", "delete"])
                .current_dir(&bundle)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = run_with_timeout(cmd, COMMAND_TIMEOUT);
        }
    }
}

impl Drop for ContainerdLite {
    fn drop(&mut self) {
        report_log_if_panicking("containerd-lite", &self.log_path());
        self.stop();
        self.kill_tasks();
        unmount_all_under(self.dir.path());
    }
}

/// Debian's `docker-registry` on a free loopback port with its storage in a temp dir.
#[derive(Debug)]
pub struct Registry {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_htpasswd(None)
    }

    /// A registry that wants basic auth checked against `htpasswd` (the file's text:
    /// `user:bcrypt-hash` lines, the only hash docker-registry accepts).
    pub fn start_with_htpasswd(htpasswd: Option<&str>) -> Self {
        Self::start_with(|dir| {
            let Some(entries) = htpasswd else {
                return String::new();
            };
            let file = dir.join("htpasswd");
            std::fs::write(&file, entries).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                file.display()
            )
        })
    }

    /// A registry that wants bearer tokens from `tokens` (the distribution token
    /// protocol), trusting its certificate.
    pub fn start_with_token(tokens: &crate::token_auth::TokenServer) -> Self {
        Self::start_with(|_| {
            format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                tokens.realm(),
                crate::token_auth::SERVICE,
                crate::token_auth::ISSUER,
                tokens.cert().display()
            )
        })
    }

    /// `auth` writes what it needs in the registry's dir and returns the config's
    /// `auth:` section (empty for none).
    fn start_with(auth: impl FnOnce(&Path) -> String) -> Self {
        let dir = short_tempdir("reg-");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        text.push_str(&auth(dir.path()));
        std::fs::write(&config, text).expect("write registry config");
        let log = dir.path().join("registry.log");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut child = spawn_logged(cmd, &log);
        wait_ready("docker-registry", &mut child, &log, || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        Registry { dir, child, port }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        report_log_if_panicking("docker-registry", &self.dir.path().join("registry.log"));
        stop_daemon(&mut self.child);
    }
}
