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
    /// Where to listen (repeatable): `unix:///path`, or `tcp://HOST:PORT` with
    /// --tlsverify (or --tls, or --insecure-tcp).
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
    /// Serve TLS on tcp:// hosts (implied by --tlsverify).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls: bool,
    /// Serve TLS on tcp:// hosts and accept only clients whose certificate
    /// --tlscacert signed.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tlsverify: bool,
    /// CA certificate(s) that client certificates must chain to (PEM; default
    /// `$DOCKER_CERT_PATH/ca.pem`, else `~/.docker/ca.pem`).
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// The server's certificate chain (PEM; default `cert.pem` beside the CA).
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// The server's private key (PEM; default `key.pem` beside the CA).
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Serve tcp:// hosts as plain HTTP: whoever reaches the port controls the host.
    #[arg(long)]
    pub insecure_tcp: bool,
    /// A registry reached over plain HTTP (repeatable): `HOST:PORT`, `HOST` or an
    /// IPv4 CIDR. Loopback registries (localhost, 127.0.0.0/8) always are.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
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

    /// The Unix socket paths to serve on (default `/run/engined.sock`); the tcp://
    /// hosts are [`crate::listen::endpoints`]' business.
    pub fn sockets(&self) -> Vec<PathBuf> {
        if self.hosts.is_empty() {
            return vec![PathBuf::from("/run/engined.sock")];
        }
        self.hosts
            .iter()
            .filter_map(|h| h.strip_prefix("unix://"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    }
}
