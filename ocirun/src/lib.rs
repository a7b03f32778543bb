//! ocirun: a runc-compatible OCI runtime. Single-threaded and synchronous on purpose:
//! it forks while it sets up namespaces, which is only sound with one thread.
#![deny(unsafe_code)]

pub mod cli;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod logging;
pub mod process;
pub mod rootfs;
pub mod sealed_exe;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod sys;

use std::io::Write;

use cli::{Cli, Command};
use container::create::{CreateOptions, create};
use error::{OciError, Result};

/// Runs one command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        return Err(OciError::Unsupported(
            "--systemd-cgroup: the systemd cgroup driver is not supported; ocirun manages cgroupfs directly".into(),
        ));
    }
    let root = cli.root.as_path();
    match &cli.command {
        Command::Create(a) => {
            std::fs::create_dir_all(root).map_err(|e| OciError::io("create", root, e))?;
            sealed_exe::ensure_sealed(root)?;
            create(&CreateOptions {
                root,
                id: &a.id,
                bundle: &a.bundle,
                pid_file: a.pid_file.as_deref(),
                no_pivot: a.no_pivot,
                preserve_fds: a.preserve_fds,
                use_fifo: true,
                console_socket: a.console_socket.as_deref(),
                detach: true,
            })?;
            Ok(0)
        }
        Command::Run(r) => {
            std::fs::create_dir_all(root).map_err(|e| OciError::io("create", root, e))?;
            sealed_exe::ensure_sealed(root)?;
            let a = &r.create;
            container::run::run(
                &CreateOptions {
                    root,
                    id: &a.id,
                    bundle: &a.bundle,
                    pid_file: a.pid_file.as_deref(),
                    no_pivot: a.no_pivot,
                    preserve_fds: a.preserve_fds,
                    use_fifo: false,
                    console_socket: a.console_socket.as_deref(),
                    detach: r.detach,
                },
                r.detach,
                r.keep,
            )
        }
        Command::Exec(a) => {
            std::fs::create_dir_all(root).map_err(|e| OciError::io("create", root, e))?;
            sealed_exe::ensure_sealed(root)?;
            container::exec::exec(root, a)
        }
        Command::Start { id } => container::start::start(root, id).map(|()| 0),
        Command::State { id } => {
            let c = container::load(root, id)?;
            let s = c
                .state
                .as_ref()
                .ok_or_else(|| OciError::NotFound(id.clone()))?;
            let doc = container::state::oci_state_json(s, c.status);
            print_out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).map_err(|e| OciError::Other(e.to_string()))?
            ))
        }
        Command::Kill { id, signal, all } => {
            container::kill::kill(root, id, signal.as_deref(), *all).map(|()| 0)
        }
        Command::Delete { id, force } => container::delete::delete(root, id, *force).map(|()| 0),
        Command::List { format, quiet } => {
            print_out(&container::list::list(root, *format, *quiet)?)
        }
        Command::Spec { bundle } => {
            let rootless = matches!(cli.rootless.as_deref(), Some("true") | Some(""));
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(OciError::Other(format!(
                    "{} already exists",
                    path.display()
                )));
            }
            let spec = spec::default_spec(rootless)?;
            let text =
                serde_json::to_string_pretty(&spec).map_err(|e| OciError::Other(e.to_string()))?;
            std::fs::write(&path, text).map_err(|e| OciError::io("write", &path, e))?;
            Ok(0)
        }
        Command::Pause { id } => container::pause::pause(root, id).map(|()| 0),
        Command::Resume { id } => container::pause::resume(root, id).map(|()| 0),
        Command::Ps(a) => print_out(&container::ps::ps(root, &a.id, a.format, &a.ps_args)?),
        Command::Update(a) => container::update::update(root, a).map(|()| 0),
        Command::Events(a) => {
            container::events::events(root, &a.id, a.stats, &a.interval).map(|()| 0)
        }
        Command::Checkpoint(_) | Command::Restore(_) => Err(OciError::Unsupported(format!(
            "{}: not supported (ocirun has no CRIU integration)",
            if matches!(cli.command, Command::Checkpoint(_)) {
                "checkpoint"
            } else {
                "restore"
            }
        ))),
        Command::Features => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&features::features())
                .map_err(|e| OciError::Other(e.to_string()))?
        )),
    }
}

fn print_out(s: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| OciError::io("write", "stdout", e))?;
    Ok(0)
}

/// The error as one line: the message and its causes joined by ": ".
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.ends_with(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s.replace('\n', " ")
}
