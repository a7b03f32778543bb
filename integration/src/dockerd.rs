//! A private dockerd (Debian's docker.io 20.10) for one test, driven with the docker
//! CLI found first on PATH (28.x, which negotiates API 1.41 down with it).
//!
//! Everything is per instance: data root, exec root (where dockerd starts its own
//! containerd, so containerd's namespace, sockets and shims are private too), API
//! socket, pid file, daemon.json, the CLI's config directory and the cgroup parent
//! (`--cgroup-parent /<unique>`). Networking is off (`--bridge=none`, no iptables), so
//! containers run with `--network none`.
//!
//! The runtime under test ([`crate::Runtime::from_env`]) is registered as
//! [`RUNTIME_NAME`] with `--add-runtime` and made the default; [`Dockerd::run_args`]
//! also names it explicitly. Dropping [`Dockerd`] removes every container, stops the
//! daemon (and its containerd and shims), removes the cgroup parent, unmounts what is
//! left under the directory and deletes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{
    kill_processes_mentioning, output_quiet, remove_cgroup_tree, remove_shim_socket,
    report_log_if_panicking, run_in_pty, short_tempdir, spawn_logged, stop_daemon, unique_name,
    unmount_all_under, wait_ready,
};
use crate::{COMMAND_TIMEOUT, Output, Runtime, run_with_timeout};

/// The name the runtime under test is registered under (`docker run --runtime`).
pub const RUNTIME_NAME: &str = "testrt";

/// The tag `docker load` gives the busybox fixture.
pub const BUSYBOX: &str = "busybox:latest";

/// A running dockerd owned by one test.
#[derive(Debug)]
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
    host: String,
    cgroup_parent: String,
    runtime: Runtime,
}

impl Dockerd {
    /// Starts dockerd with the runtime under test and waits until its API answers.
    pub fn start() -> Self {
        Self::with_runtime(Runtime::from_env())
    }

    pub fn with_runtime(runtime: Runtime) -> Self {
        let dir = short_tempdir("dkd-");
        let d = dir.path().to_path_buf();
        let socket = d.join("docker.sock");
        let daemon_json = d.join("daemon.json");
        std::fs::write(&daemon_json, "{}\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", daemon_json.display()));
        let mut name = unique_name();
        name.truncate(60);
        let cgroup_parent = format!("/{}", name.trim_end_matches('-'));
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .arg("--cgroup-parent")
            .arg(&cgroup_parent)
            .arg("--add-runtime")
            .arg(format!("{RUNTIME_NAME}={}", runtime.path().display()))
            .arg("--default-runtime")
            .arg(RUNTIME_NAME);
        let log = d.join("dockerd.log");
        let child = spawn_logged(cmd, &log);
        // Built before waiting so that a failed start still cleans up through Drop.
        let mut me = Self {
            dir,
            child,
            host: format!("unix://{}", socket.display()),
            cgroup_parent,
            runtime,
        };
        let ready = {
            let host = me.host.clone();
            let cli_config = me.cli_config_dir();
            move || {
                socket.exists()
                    && Command::new("docker")
                        .arg("--host")
                        .arg(&host)
                        .args(["version", "--format", "{{.Server.APIVersion}}"])
                        .env("DOCKER_CONFIG", &cli_config)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
            }
        };
        wait_ready("dockerd", &mut me.child, &log, ready);
        me
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix:///tmp/dkd-XXXX/docker.sock`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `--cgroup-parent` of this daemon (`/<unique>`).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
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

    /// Runs `docker --host H <args>` with the command timeout.
    pub fn docker(&self, args: &[&str]) -> Output {
        run_with_timeout(self.docker_command(args), COMMAND_TIMEOUT)
    }

    /// The `docker run` flags every test container gets: the runtime under test and
    /// no network (the daemon has no bridge).
    pub fn run_args(&self) -> Vec<&'static str> {
        vec!["--runtime", RUNTIME_NAME, "--network", "none"]
    }

    /// `docker run <run_args> <args>`: `args` are run's flags, the image and command.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["run"];
        full.extend(self.run_args());
        full.extend_from_slice(args);
        self.docker(&full)
    }

    /// Like [`Self::run`] with a pseudo-terminal as the CLI's stdin/stdout/stderr.
    pub fn run_in_pty(&self, args: &[&str]) -> (std::process::ExitStatus, String) {
        let mut full = vec!["run"];
        full.extend(self.run_args());
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
        let mut ids = String::new();
        if matches!(self.child.try_wait(), Ok(None)) {
            ids = output_quiet(
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
        stop_daemon(&mut self.child);
        let dir = self.dir().to_string_lossy().into_owned();
        kill_processes_mentioning(&dir);
        let containerd = self.dir().join("exec/containerd/containerd.sock");
        for id in ids.split_whitespace() {
            remove_shim_socket(&containerd, "moby", id);
        }
        // Give killed shims' children a moment to be reaped before removing cgroups.
        std::thread::sleep(Duration::from_millis(20));
        remove_cgroup_tree(&self.cgroup_parent);
        unmount_all_under(self.dir());
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        report_log_if_panicking("dockerd", &self.dir().join("dockerd.log"));
        self.cleanup();
    }
}
