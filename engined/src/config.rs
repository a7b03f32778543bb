//! Command-line flags, named as dockerd's where dockerd has them.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "engined",
    version,
    about = "The Docker Engine API on containerd"
)]
pub struct Config {
    /// Socket(s) to listen on: `unix:///path` (repeatable).
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Persistent state: container records, logs, volumes.
    #[arg(long, default_value = "/var/lib/engined")]
    pub data_root: PathBuf,
    /// Runtime state: FIFOs.
    #[arg(long, default_value = "/run/engined")]
    pub exec_root: PathBuf,
    /// containerd's gRPC socket (containerd-lite or containerd 1.6). Without it,
    /// engined runs its own containerd-lite, as dockerd runs its own containerd.
    #[arg(long, value_name = "ADDR")]
    pub containerd: Option<PathBuf>,
    /// containerd namespace for everything engined creates.
    #[arg(long, default_value = "engined")]
    pub containerd_namespace: String,
    /// containerd snapshotter for image layers and container roots.
    #[arg(long, default_value = "overlayfs")]
    pub snapshotter: String,
    #[arg(long, value_name = "FILE", default_value = "/run/engined.pid")]
    pub pidfile: PathBuf,
    /// error, warn, info, debug or trace.
    #[arg(short = 'l', long, default_value = "info")]
    pub log_level: String,
    /// The OCI runtime the shim runs by default: `ocirun` (the one installed with
    /// the shim), `runc`, a name registered with `--add-runtime`, or a path.
    #[arg(long, default_value = "ocirun")]
    pub default_runtime: String,
    /// `NAME=PATH` (repeatable).
    #[arg(long = "add-runtime", value_name = "NAME=PATH")]
    pub add_runtime: Vec<String>,
    /// Parent cgroup of every container (cgroupfs driver).
    #[arg(long, default_value = "/engined")]
    pub cgroup_parent: String,
    /// Keep containers running while the daemon is down, and take them back when it
    /// starts again (the default). `--live-restore=false`: containers found running
    /// at start are killed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub live_restore: bool,
}

impl Config {
    /// The runtime binary for a container's `HostConfig.Runtime` (empty = default);
    /// `Some("")` is the shim's own ocirun.
    pub fn runtime_binary(&self, name: &str) -> Option<String> {
        let name = if name.is_empty() {
            self.default_runtime.as_str()
        } else {
            name
        };
        for r in &self.add_runtime {
            if let Some((n, p)) = r.split_once('=')
                && n == name
            {
                return Some(p.to_string());
            }
        }
        match name {
            "ocirun" => Some(String::new()),
            "runc" => Some(name.to_string()),
            _ if name.starts_with('/') => Some(name.to_string()),
            _ => None,
        }
    }

    /// The Unix socket paths to serve on (default `/run/engined.sock`).
    pub fn sockets(&self) -> Result<Vec<PathBuf>, String> {
        if self.hosts.is_empty() {
            return Ok(vec![PathBuf::from("/run/engined.sock")]);
        }
        self.hosts
            .iter()
            .map(|h| {
                h.strip_prefix("unix://")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        format!("unsupported host {h:?}: only unix:// sockets are served")
                    })
            })
            .collect()
    }
}
