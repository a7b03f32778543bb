//! A private containerd 1.6 for one test: its own root, state, sockets and
//! namespace, with the CRI plugin disabled (it is not needed and slows startup).
//!
//! containerd's runc shim (io.containerd.runc.v2) runs whatever binary the container's
//! runtime options name; `ctr run --runc-binary PATH` sets them, and `ctr task exec`,
//! `kill`, `pause`... reuse the container's options. [`Containerd::run_args`] gives
//! those flags for the runtime under test ([`crate::Runtime::from_env`]).
//!
//! Containers get the cgroup `/<namespace>/<id>` (ctr's default), so a unique
//! namespace per daemon keeps parallel tests apart; dropping [`Containerd`] kills the
//! tasks, the daemon and its shims, removes `/<namespace>` on every cgroup hierarchy,
//! unmounts what the shims mounted under the root and deletes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::daemon::{
    kill_processes_mentioning, output_quiet, remove_cgroup_tree, remove_shim_socket,
    report_log_if_panicking, run_in_pty, short_tempdir, spawn_logged, stop_daemon, unique_name,
    unmount_all_under, wait_ready,
};
use crate::{COMMAND_TIMEOUT, Output, Runtime, run_with_timeout};

/// The ref `ctr images import` gives the busybox fixture.
pub const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A running containerd owned by one test.
#[derive(Debug)]
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    address: PathBuf,
    namespace: String,
    runtime: Runtime,
}

impl Containerd {
    /// Starts containerd with the runtime under test, and waits until it serves.
    pub fn start() -> Self {
        Self::with_runtime(Runtime::from_env())
    }

    pub fn with_runtime(runtime: Runtime) -> Self {
        Self::with_path_head(runtime, None)
    }

    /// With `bin` first on containerd's PATH, where it looks for shims
    /// (`containerd-shim-<name>-<version>` for a runtime type).
    pub fn with_path_head(runtime: Runtime, bin: Option<&Path>) -> Self {
        let dir = short_tempdir("ctd-");
        let d = dir.path();
        let address = d.join("containerd.sock");
        let config = testkit::engine::containerd_config(d);
        let config_path = d.join("config.toml");
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let log = d.join("containerd.log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&config_path);
        if let Some(bin) = bin {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", bin.display()));
        }
        let child = spawn_logged(cmd, &log);
        let mut namespace = unique_name();
        namespace.truncate(60);
        // Built before waiting so that a failed start still cleans up through Drop.
        let mut me = Self {
            dir,
            child,
            address,
            namespace: namespace.trim_end_matches('-').to_string(),
            runtime,
        };
        let address = me.address.clone();
        wait_ready("containerd", &mut me.child, &log, || {
            address.exists() && ctr_version_ok(&address)
        });
        me
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn address(&self) -> &Path {
        &self.address
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a SOCK -n NS <args>`, not yet run.
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(&self.address)
            .arg("-n")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `ctr ... <args>` with the command timeout.
    pub fn ctr(&self, args: &[&str]) -> Output {
        run_with_timeout(self.ctr_command(args), COMMAND_TIMEOUT)
    }

    /// The `ctr run` flags that make the runc shim use the runtime under test.
    pub fn run_args(&self) -> Vec<String> {
        vec![
            "--runc-binary".to_string(),
            self.runtime.path().to_string_lossy().into_owned(),
        ]
    }

    /// `ctr run --runc-binary RT <args>`: `args` are ctr run's flags, then
    /// the image, the container id and the command.
    pub fn ctr_run_command(&self, args: &[&str]) -> Command {
        let mut full: Vec<&str> = vec!["run"];
        let rt = self.run_args();
        full.extend(rt.iter().map(String::as_str));
        full.extend_from_slice(args);
        self.ctr_command(&full)
    }

    pub fn ctr_run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.ctr_run_command(args), COMMAND_TIMEOUT)
    }

    /// Like [`Self::ctr_run`] with a pseudo-terminal as ctr's stdin/stdout/stderr
    /// (`ctr run -t` insists on one).
    pub fn ctr_run_in_pty(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        run_in_pty(self.ctr_run_command(args), COMMAND_TIMEOUT)
    }

    /// Writes the busybox image (docker archive) and imports it; returns its ref.
    pub fn import_busybox(&self) -> &'static str {
        let tar = self.dir().join("busybox.tar");
        let image = testkit::image::busybox_image().expect("build the busybox image");
        testkit::image::write_docker_archive(&image, &tar).expect("write the busybox archive");
        self.ctr(&["images", "import", path_str(&tar)]).ok();
        BUSYBOX
    }

    /// The `STATUS` column of `ctr task ls` for `id`, if the task is listed.
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout.lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.last().unwrap_or(&"").to_string())
        })
    }

    /// Where the runc shim keeps the runtime's state for this namespace (its
    /// `--root`): containerd 1.6 hard-codes `/run/containerd/runc/<namespace>`.
    pub fn runtime_root(&self) -> PathBuf {
        testkit::engine::runc_shim_root(&self.namespace)
    }

    /// The container's directory on a cgroup v1 hierarchy (ctr's `/<ns>/<id>`).
    pub fn cgroup_dir(&self, controller: &str, id: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.namespace)
            .join(id)
    }

    fn cleanup(&mut self) {
        let runtime_root = self.runtime_root();
        let mut ids: Vec<String> = std::fs::read_dir(&runtime_root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if matches!(self.child.try_wait(), Ok(None)) {
            let ctr = |args: &[&str]| output_quiet(self.ctr_command(args), COMMAND_TIMEOUT);
            let tasks = ctr(&["task", "ls", "-q"]).unwrap_or_default();
            for id in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
                ctr(&["task", "resume", id]);
                ctr(&["task", "kill", "-s", "SIGKILL", "--all", id]);
                ctr(&["task", "delete", "--force", id]);
            }
            let containers = ctr(&["containers", "ls", "-q"]).unwrap_or_default();
            for id in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
                ctr(&["containers", "delete", id]);
                ids.push(id.to_string());
            }
        }
        stop_daemon(&mut self.child);
        let dir = self.dir().to_string_lossy().into_owned();
        kill_processes_mentioning(&dir);
        for id in &ids {
            remove_shim_socket(&self.address, &self.namespace, id);
        }
        // A task whose runtime call failed half-way can leave runtime state (and a
        // live container) that neither containerd nor the shim knows about anymore.
        if let Ok(entries) = std::fs::read_dir(&runtime_root) {
            for e in entries.flatten() {
                let mut c = self.runtime.command();
                c.arg("--root")
                    .arg(&runtime_root)
                    .args(["delete", "--force"])
                    .arg(e.file_name());
                output_quiet(c, COMMAND_TIMEOUT);
            }
        }
        remove_cgroup_tree(&self.namespace);
        unmount_all_under(self.dir());
        let _ = std::fs::remove_dir_all(&runtime_root);
    }
}

fn ctr_version_ok(address: &Path) -> bool {
    Command::new("ctr")
        .arg("-a")
        .arg(address)
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Drop for Containerd {
    fn drop(&mut self) {
        report_log_if_panicking("containerd", &self.dir().join("containerd.log"));
        self.cleanup();
    }
}
