//! runc's command line, so that containerd, dockerd and people call ocirun exactly as
//! they call runc. Only parsing here; the commands live in `container/`.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ocirun",
    version,
    about = "A runc-compatible OCI runtime",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Root directory for storage of container state (should be on tmpfs).
    #[arg(long, global = true, default_value = "/run/ocirun")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (json is what containerd reads back on failure).
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported: ocirun drives cgroupfs directly).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// runc's `--rootless true|false|auto` for containers, and `spec --rootless`.
    /// ocirun always runs as root; `spec` uses it to write a user-namespace spec.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility (checkpoint/restore is not supported).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container: set everything up and stop before running the process.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Create and start a container, and wait for it unless --detach.
    Run(RunArgs),
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or to all its processes.
    Kill {
        id: String,
        signal: Option<String>,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container and the resources it holds.
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// List containers under --root.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json in the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features this runtime supports, as JSON.
    Features,
    /// Suspend every process of a container (cgroup freezer).
    Pause { id: String },
    /// Resume a paused container.
    Resume { id: String },
    /// List the processes of a container (`ps` output filtered, or their pids as JSON).
    Ps(PsArgs),
    /// Change the resource limits of a container.
    Update(Box<UpdateArgs>),
    /// Print resource usage statistics and OOM notices of a container, as JSON lines.
    Events(EventsArgs),
    /// Not supported: ocirun has no CRIU integration.
    Checkpoint(CriuArgs),
    /// Not supported: ocirun has no CRIU integration.
    Restore(CriuArgs),
    /// Run a new process inside a running (or created) container.
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    pub id: String,
    /// Arguments for ps(1) (default: -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: String,
    /// File with the resources to set, as OCI LinuxResources JSON ('-' for stdin);
    /// the other flags are then ignored.
    #[arg(short = 'r', long = "resources")]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Bytes, or a size such as 64m or 1g; -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap; -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Accepted and ignored: kernel memory limits are deprecated.
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Accepted and ignored: kernel memory limits are deprecated.
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT is not supported; accepted so the error says so.
    #[arg(long = "l3-cache-schema")]
    pub l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    pub mem_bw_schema: Option<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    pub id: String,
    /// Print the statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print statistics (a Go duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    pub interval: String,
}

#[derive(Debug, Args)]
pub struct CriuArgs {
    /// Whatever runc's checkpoint/restore would take; only parsed to be refused.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// runc's `exec` flags. Parsing stops at the first argument after the id, so the
/// command's own flags (`sh -c ...`) are never taken for ours.
#[derive(Debug, Args)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (ignored with --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// A process.json (the spec's `process` object) to run instead of the arguments.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master (with --tty and --detach).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid (host view) to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Add or override an environment variable (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<String>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// An additional group id (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets (repeatable).
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass this many extra file descriptors (from fd 3 on) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Allow exec into a paused container.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility; ocirun applies no AppArmor profile.
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility; ocirun applies no SELinux label.
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub id: String,
    /// Bundle directory (default: the current directory).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container's init pid (host view) to this file.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for ramdisk roots): MS_MOVE plus chroot instead.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring (accepted; ocirun never creates one).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (from fd 3 on) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Detach from the container's process.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container after it exits (runc's --keep).
    #[arg(long)]
    pub keep: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_takes_trailing_ps_args() {
        let cli =
            Cli::try_parse_from(["ocirun", "ps", "-f", "json", "x", "--", "-o", "pid"]).unwrap();
        match cli.command {
            Command::Ps(p) => {
                assert_eq!(p.format, ListFormat::Json);
                assert_eq!(p.id, "x");
                assert_eq!(p.ps_args, ["-o", "pid"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["ocirun", "ps", "x", "-ef"]).unwrap();
        assert!(matches!(cli.command, Command::Ps(p) if p.ps_args == ["-ef"]));
    }

    #[test]
    fn update_accepts_runc_flags() {
        let cli = Cli::try_parse_from([
            "ocirun",
            "update",
            "--memory",
            "-1",
            "--cpu-share",
            "512",
            "--pids-limit",
            "10",
            "x",
        ])
        .unwrap();
        match cli.command {
            Command::Update(u) => {
                assert_eq!(u.memory.as_deref(), Some("-1"));
                assert_eq!(u.cpu_shares, Some(512));
                assert_eq!(u.pids_limit, Some(10));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_containerd_style_create() {
        let cli = Cli::try_parse_from([
            "ocirun",
            "--root",
            "/run/containerd/runc/default",
            "--log",
            "/x/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--no-new-keyring",
            "abc",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        match cli.command {
            Command::Create(c) => {
                assert_eq!(c.id, "abc");
                assert_eq!(c.bundle, PathBuf::from("/b"));
                assert!(c.no_new_keyring);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn global_flags_after_the_command_are_accepted() {
        let cli = Cli::try_parse_from(["ocirun", "state", "x", "--root", "/r"]).unwrap();
        assert_eq!(cli.root, PathBuf::from("/r"));
    }

    #[test]
    fn exec_stops_parsing_at_the_command() {
        let cli = Cli::try_parse_from([
            "ocirun", "exec", "-t", "-e", "A=1", "--user", "1000:5", "c1", "sh", "-c", "exit 3",
        ])
        .unwrap();
        match cli.command {
            Command::Exec(e) => {
                assert_eq!(e.id, "c1");
                assert_eq!(e.args, ["sh", "-c", "exit 3"]);
                assert!(e.tty);
                assert_eq!(e.env, ["A=1"]);
                assert_eq!(e.user.as_deref(), Some("1000:5"));
                assert!(e.cap.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["ocirun", "exec", "c1", "--", "ls", "-l"]).unwrap();
        match cli.command {
            Command::Exec(e) => assert_eq!(e.args, ["ls", "-l"]),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kill_takes_signal_and_all() {
        let cli = Cli::try_parse_from(["ocirun", "kill", "--all", "x", "KILL"]).unwrap();
        match cli.command {
            Command::Kill { id, signal, all } => {
                assert_eq!(
                    (id.as_str(), signal.as_deref(), all),
                    ("x", Some("KILL"), true)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
