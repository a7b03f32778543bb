//! engined on a private containerd 1.6 for one test, driven with the real docker CLI.
//!
//! engined gets its own data root, exec root, API socket, pid file and cgroup parent
//! (`/<unique>`), and uses the containerd's unique namespace; the runc shim runs the
//! runtime under test ([`crate::Runtime::from_env`]) as engined's default runtime.
//! Dropping [`Engined`] removes every container, stops engined, then the containerd
//! harness tears down its tasks, shims and mounts; the cgroup parent goes last.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::containerd::Containerd;
use crate::daemon::{
    output_quiet, remove_cgroup_tree, report_log_if_panicking, run_in_pty, short_tempdir,
    spawn_logged, stop_daemon, unique_name, unmount_all_under, wait_ready,
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
    child: Child,
    host: String,
    cgroup_parent: String,
    containerd: Containerd,
}

impl Engined {
    pub fn start() -> Self {
        Self::with_runtime(Runtime::from_env())
    }

    pub fn with_runtime(runtime: Runtime) -> Self {
        Self::with_args(runtime, &[])
    }

    /// Like [`Self::with_runtime`], with extra engined flags (more `-H` hosts, TLS);
    /// the Unix socket the harness talks to is always served.
    pub fn with_args(runtime: Runtime, extra: &[&str]) -> Self {
        let containerd = Containerd::with_runtime(runtime.clone());
        let dir = short_tempdir("eng-");
        let d = dir.path().to_path_buf();
        let socket = d.join("engined.sock");
        let mut name = unique_name();
        name.truncate(60);
        let cgroup_parent = format!("/{}", name.trim_end_matches('-'));
        let bin = workspace_bin("engined");
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("engined.pid"))
            .arg("--containerd")
            .arg(containerd.address())
            .arg("--containerd-namespace")
            .arg(containerd.namespace())
            .arg("--default-runtime")
            .arg(runtime.path())
            .arg("--cgroup-parent")
            .arg(&cgroup_parent)
            .args(["--log-level", "debug"])
            .args(extra);
        let log = d.join("engined.log");
        let child = spawn_logged(cmd, &log);
        let mut me = Self {
            dir,
            child,
            host: format!("unix://{}", socket.display()),
            cgroup_parent,
            containerd,
        };
        let ready = {
            let host = me.host.clone();
            let cli = me.cli_config_dir();
            move || {
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
            }
        };
        wait_ready("engined", &mut me.child, &log, ready);
        me
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

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
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
        if matches!(self.child.try_wait(), Ok(None)) {
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
        stop_daemon(&mut self.child);
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
