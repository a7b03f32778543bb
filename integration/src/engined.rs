//! engined for one test, driven with the real docker CLI: by default on its own
//! containerd-lite (which engined starts, as dockerd starts its containerd), or on a
//! private real containerd 1.6 ([`Engined::on_containerd_1_6`]) that finds our shim
//! as `containerd-shim-ocirun-v2` on its PATH.
//!
//! engined gets its own data root, exec root, API socket, pid file and cgroup parent
//! (`/<unique>`), and runs the runtime under test ([`crate::Runtime::from_env`]) as
//! its default runtime. Dropping [`Engined`] removes every container, stops engined
//! and whatever containerd runs under it, kills leftover shims, unmounts what is left
//! under its directory and removes the cgroup parent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::containerd::Containerd;
use crate::daemon::{
    kill_processes_mentioning, output_quiet, remove_cgroup_tree, report_log_if_panicking,
    run_in_pty, short_tempdir, spawn_logged, stop_daemon, unique_name, unmount_all_under,
    wait_ready,
};
use crate::{COMMAND_TIMEOUT, Output, Runtime, run_with_timeout, workspace_root};

/// The tag `docker load` gives the busybox fixture.
pub const BUSYBOX: &str = "busybox:latest";

/// `<target>/debug/<name>` of this workspace (`CARGO_TARGET_DIR` aware).
pub fn workspace_bin(name: &str) -> PathBuf {
    let root = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t),
        _ => root.join("target"),
    };
    target.join("debug").join(name)
}

/// A running engined (and the containerd under it) owned by one test.
#[derive(Debug)]
pub struct Engined {
    // Dropped after our own cleanup (fields drop in declaration order, after Drop).
    dir: tempfile::TempDir,
    /// None between a kill9 or stop and the next spawn.
    child: Option<Child>,
    host: String,
    cgroup_parent: String,
    runtime: Runtime,
    containerd: Option<Containerd>,
    extra_args: Vec<String>,
}

impl Engined {
    /// engined on the containerd-lite it starts itself.
    pub fn start() -> Self {
        Self::launch(Runtime::from_env(), None, &[])
    }

    pub fn with_runtime(runtime: Runtime) -> Self {
        Self::launch(runtime, None, &[])
    }

    /// Like [`Self::with_runtime`], with extra engined flags (more `-H` hosts, TLS);
    /// the Unix socket the harness talks to is always served.
    pub fn with_args(runtime: Runtime, extra: &[&str]) -> Self {
        Self::launch(runtime, None, extra)
    }

    /// engined with `--containerd` pointing at a private real containerd 1.6.
    pub fn on_containerd_1_6() -> Self {
        let bin = short_tempdir("eng-bin-");
        let shim = workspace_bin("shim");
        std::os::unix::fs::symlink(&shim, bin.path().join("containerd-shim-ocirun-v2"))
            .expect("link the shim into containerd's PATH");
        let runtime = Runtime::from_env();
        let containerd = Containerd::with_path_head(runtime.clone(), Some(bin.path()));
        // containerd starts shims only while it runs, so the link can go with the test.
        std::mem::forget(bin);
        Self::launch(runtime, Some(containerd), &[])
    }

    fn launch(runtime: Runtime, containerd: Option<Containerd>, extra: &[&str]) -> Self {
        let dir = short_tempdir("eng-");
        let mut name = unique_name();
        name.truncate(60);
        let cgroup_parent = format!("/{}", name.trim_end_matches('-'));
        let bin = workspace_bin("engined");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let host = format!("unix://{}", dir.path().join("engined.sock").display());
        let mut me = Self {
            child: None,
            dir,
            host,
            cgroup_parent,
            runtime,
            containerd,
            extra_args: extra.iter().map(|a| a.to_string()).collect(),
        };
        me.spawn();
        me
    }

    /// Starts engined (again) with this test's flags and waits until it serves.
    pub fn spawn(&mut self) {
        let d = self.dir.path().to_path_buf();
        let socket = d.join("engined.sock");
        let mut cmd = Command::new(workspace_bin("engined"));
        cmd.arg("-H")
            .arg(&self.host)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("engined.pid"))
            .arg("--default-runtime")
            .arg(self.runtime.path())
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(["--log-level", "debug"])
            .args(&self.extra_args);
        if let Some(c) = &self.containerd {
            cmd.arg("--containerd")
                .arg(c.address())
                .arg("--containerd-namespace")
                .arg(c.namespace());
        }
        let log = d.join("engined.log");
        let host = self.host.clone();
        let cli = self.cli_config_dir();
        let child = self.child.insert(spawn_logged(cmd, &log));
        wait_ready("engined", child, &log, move || {
            socket.exists()
                && Command::new("docker")
                    .arg("--host")
                    .arg(&host)
                    .args(["version", "--format", "{{.Server.APIVersion}}"])
                    .env("DOCKER_CONFIG", &cli)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
    }

    /// kill -9 of engined alone: its containerd-lite, the shims and the containers
    /// stay.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to engined, and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_daemon(&mut c);
        }
    }

    /// The pid of the containerd-lite engined manages (from its pid file).
    pub fn containerd_lite_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir().join("exec/containerd/containerd-lite.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// kill -9 of engined's containerd-lite (its shims and containers stay).
    pub fn kill9_containerd_lite(&self) {
        let pid = self
            .containerd_lite_pid()
            .expect("engined runs its own containerd-lite");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
        while proc.exists() && std::time::Instant::now() < deadline {
            // Gone, or a zombie until engined (its parent) reaps it.
            let state = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
            if state.contains(") Z ") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix:///tmp/eng-XXXX/engined.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("engined.sock")
    }

    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The real containerd 1.6 under engined, if it runs on one.
    pub fn containerd(&self) -> Option<&Containerd> {
        self.containerd.as_ref()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("engined.log")).unwrap_or_default()
    }

    fn cli_config_dir(&self) -> PathBuf {
        self.dir().join("cli")
    }

    /// `docker --host H <args>` with a private CLI config, not yet run.
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("--host")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_CONFIG", self.cli_config_dir())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    /// Where the `engine` CLI keeps its config (logins) for this daemon's tests.
    pub fn engine_config_dir(&self) -> PathBuf {
        self.dir().join("engine-cli")
    }

    /// `engine -H <this daemon> ARGS` (our CLI, target/debug/engine), isolated from
    /// the caller's environment and config.
    pub fn engine_command(&self, args: &[&str]) -> Command {
        let bin = workspace_bin("engine");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let mut c = Command::new(bin);
        c.arg("-H")
            .arg(self.host())
            .args(args)
            .env("DOCKER_CONFIG", self.engine_config_dir())
            .env_remove("ENGINE_HOST")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        run_with_timeout(self.docker_command(args), COMMAND_TIMEOUT)
    }

    /// `docker run --network none <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["run", "--network", "none"];
        full.extend_from_slice(args);
        self.docker(&full)
    }

    /// Like [`Self::run`] with a pseudo-terminal as the CLI's stdin/stdout/stderr.
    pub fn run_in_pty(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut full = vec!["run", "--network", "none"];
        full.extend_from_slice(args);
        run_in_pty(self.docker_command(&full), COMMAND_TIMEOUT)
    }

    /// Writes the busybox image (docker archive) and loads it; returns its tag.
    pub fn load_busybox(&self) -> &'static str {
        let tar = self.dir().join("busybox.tar");
        let image = testkit::image::busybox_image().expect("build the busybox image");
        testkit::image::write_docker_archive(&image, &tar).expect("write the busybox archive");
        self.docker(&["load", "-i", tar.to_str().expect("utf-8 path")])
            .ok();
        BUSYBOX
    }

    /// The full id of a container (from a name or short id).
    pub fn container_id(&self, name: &str) -> String {
        let out = self.docker(&["inspect", "--format", "{{.Id}}", name]);
        out.ok();
        out.stdout.trim().to_string()
    }

    /// The container's directory on a cgroup v1 hierarchy (`<parent>/<full id>`).
    pub fn cgroup_dir(&self, controller: &str, name: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.cgroup_parent.trim_start_matches('/'))
            .join(self.container_id(name))
    }

    fn cleanup(&mut self) {
        if self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        {
            let ids = output_quiet(
                self.docker_command(&["ps", "-aq", "--no-trunc"]),
                COMMAND_TIMEOUT,
            )
            .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "--force"];
                args.extend(ids);
                output_quiet(self.docker_command(&args), COMMAND_TIMEOUT);
            }
        }
        self.stop();
        // engined stops its containerd-lite on SIGTERM; whatever is left (after a
        // kill -9, or a test that failed half-way) names our directory.
        kill_processes_mentioning(&self.dir().to_string_lossy());
        unmount_all_under(self.dir());
    }
}

impl Drop for Engined {
    fn drop(&mut self) {
        report_log_if_panicking("engined", &self.dir().join("engined.log"));
        self.cleanup();
        // Whatever still runs under our cgroup parent is killed with it; the
        // containerd harness (dropped right after) then removes tasks, shims, mounts.
        remove_cgroup_tree(&self.cgroup_parent);
    }
}
