//! `shim` / `containerd-shim-ocirun-v2`: the per-container process of
//! containerd's runtime v2. `start` launches the long-lived shim (the hidden
//! `serve` action) and prints its ttrpc address; `delete` cleans up after a
//! shim that is gone.

mod cli;
mod error;
mod events;
mod jsonlog;
mod metrics;
mod mount;
mod oom;
mod reaper;
mod runtime;
mod service;
mod stdio;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use protobuf::{Message, MessageField};

use cli::{Action, Flags};

/// Where shim sockets live, as with containerd's own shims.
const SOCKET_DIR: &str = "/run/containerd/s";
/// How long a shim told to shut down keeps publishing its queued events.
const FLUSH_EVENTS_FOR: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let flags = match Flags::parse(std::env::args_os().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("shim: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match flags.action {
        Action::Version => {
            println!("containerd-shim-ocirun-v2 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Action::Start => start(&flags),
        Action::Delete => delete(&flags),
        Action::Serve => serve(&flags),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shim: {e:#}");
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bundle_dir(flags: &Flags) -> anyhow::Result<PathBuf> {
    match &flags.bundle {
        Some(b) => Ok(b.clone()),
        None => std::env::current_dir().context("reading the working directory (the bundle)"),
    }
}

/// A stable, short name for the socket: FNV-1a of what identifies this task.
fn socket_path(flags: &Flags) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [&flags.address, "\0", &flags.namespace, "\0", &flags.id]
        .iter()
        .flat_map(|s| s.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Path::new(SOCKET_DIR).join(format!("ocirun-{h:016x}"))
}

fn start(flags: &Flags) -> anyhow::Result<()> {
    let bundle = bundle_dir(flags)?;
    let socket = socket_path(flags);
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| format!("creating {SOCKET_DIR}"))?;
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            // A shim already serves this task: hand out its address again.
            println!("unix://{}", socket.display());
            return Ok(());
        }
        let _ = std::fs::remove_file(&socket);
    }
    let mut serve_flags = flags.clone();
    serve_flags.socket = Some(socket.clone());
    let exe = std::env::current_exe().context("locating the shim binary")?;
    let mut child = Command::new(exe)
        .args(serve_flags.to_args("serve"))
        .current_dir(&bundle)
        // One malloc arena: the shim is idle almost always and lives as long
        // as its container, so per-thread arenas are pure overhead.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the shim daemon")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .context("waiting for the shim daemon")?;
    }
    if line.trim() != "ready" {
        let status = child.wait().ok();
        bail!("the shim daemon did not start (exit {status:?})");
    }
    println!("unix://{}", socket.display());
    Ok(())
}

/// Logs go to containerd's `log` FIFO in the bundle when it is there, opened
/// non-blocking so a stalled daemon can never stall the shim.
fn init_logging(bundle: &Path, debug: bool) {
    let Ok(f) = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(bundle.join("log"))
    else {
        return;
    };
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(f))
        .with_ansi(false)
        .with_max_level(level)
        .try_init();
}

fn serve(flags: &Flags) -> anyhow::Result<()> {
    let bundle = bundle_dir(flags)?;
    let socket = flags.socket.clone().context("-socket is required")?;
    nix::unistd::setsid().context("setsid")?;
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    // Before any thread exists, so that every thread keeps SIGCHLD blocked.
    let reaper = reaper::Reaper::start()?;
    init_logging(&bundle, flags.debug);
    let publisher = events::Publisher::new(
        flags.publish_binary.clone(),
        flags.address.clone(),
        flags.namespace.clone(),
        reaper.clone(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let service = service::Service::new(
        flags.id.clone(),
        flags.namespace.clone(),
        bundle.clone(),
        reaper,
        publisher.clone(),
        tx,
        socket.clone(),
    );
    let address = format!("unix://{}", socket.display());
    let _ = std::fs::remove_file(&socket);
    let mut server = ttrpc::Server::new()
        .bind(&address)
        .with_context(|| format!("listening on {address}"))?
        .register_service(proto::shim_ttrpc::create_task(Arc::new(service)))
        .set_thread_count_default(2)
        .set_thread_count_min(1)
        .set_thread_count_max(3);
    server.start().context("starting the ttrpc server")?;
    common::atomic_write(&bundle.join("address"), address.as_bytes(), 0o644)
        .context("writing the address file")?;
    common::atomic_write(
        &bundle.join("shim.pid"),
        std::process::id().to_string().as_bytes(),
        0o644,
    )
    .context("writing shim.pid")?;
    tracing::info!(%address, "shim serving");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").context("signalling readiness")?;
        out.flush().context("signalling readiness")?;
    }
    let devnull = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    nix::unistd::dup2_stdout(&devnull).context("detaching stdout")?;
    nix::unistd::dup2_stderr(&devnull).context("detaching stderr")?;
    let _ = rx.recv();
    tracing::info!("shutting down");
    // As containerd's shims do: the queued events (TaskExit, TaskDelete) go out
    // first, but a daemon that is down does not keep the shim for long.
    if !publisher.flush(FLUSH_EVENTS_FOR) {
        tracing::warn!("exiting with events not yet published");
    }
    // Let the Shutdown response reach the client before the process goes.
    // The socket was unlinked as shutdown began: the path may be a new shim's now.
    std::thread::sleep(Duration::from_millis(50));
    std::process::exit(0);
}

fn delete(flags: &Flags) -> anyhow::Result<()> {
    let bundle = bundle_dir(flags)?;
    let saved: Option<serde_json::Value> = std::fs::read(bundle.join("shim-runtime.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let field = |k: &str| {
        saved
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
    };
    let binary = field("binary").unwrap_or_else(runtime::default_binary);
    let rt = runtime::Runtime::new(binary.clone(), field("root"), &flags.namespace, &bundle);
    let out = Command::new(&binary)
        .arg("--root")
        .arg(&rt.root)
        .args(["delete", "--force", &flags.id])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if !o.status.success() => {
            eprintln!(
                "shim delete: {} delete: {}",
                binary.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Err(e) => eprintln!("shim delete: running {}: {e}", binary.display()),
        Ok(_) => {}
    }
    mount::unmount_all(&bundle.join("rootfs"));
    // The shim that served this task is gone (that is why delete runs): its
    // socket, if it could not remove it, goes too.
    let socket = socket_path(flags);
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        let _ = std::fs::remove_file(&socket);
    }
    let (pid, status, at) = service::read_exit_file(&service::exit_file(&bundle, ""))
        .unwrap_or_else(|| {
            let pid = std::fs::read_to_string(bundle.join("init.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            // Unknown exit: report it as killed, as containerd's own shims do.
            (pid, 128 + 9, service::timestamp(SystemTime::now()))
        });
    let resp = proto::shim::DeleteResponse {
        pid,
        exit_status: status,
        exited_at: MessageField::some(at),
        ..Default::default()
    };
    let bytes = resp.write_to_bytes().context("encoding DeleteResponse")?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes).context("writing DeleteResponse")?;
    out.flush().context("writing DeleteResponse")?;
    Ok(())
}
