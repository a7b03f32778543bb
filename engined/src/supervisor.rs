//! engined's own containerd-lite, as dockerd runs its own containerd when no
//! `--containerd` is given: started in its own process group (so it outlives a
//! kill -9 of engined, and the shims outlive both), adopted by the next engined if
//! it is still up, started again if it dies, and stopped on a clean shutdown.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::config::Config;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("containerd-lite not found next to engined nor on PATH (use --containerd ADDR)")]
    NotFound,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "containerd-lite did not answer on {address} within {}s (its log: {log})",
        READY_TIMEOUT.as_secs()
    )]
    NotReady { address: String, log: String },
}

/// Where the managed containerd-lite keeps its socket, state and log.
#[derive(Debug, Clone)]
pub struct Managed {
    binary: PathBuf,
    pub address: PathBuf,
    root: PathBuf,
    state: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    log_level: String,
    /// Set by [`Managed::stop`]: the watcher must not start it again.
    stopping: Arc<AtomicBool>,
}

fn find_binary() -> Option<PathBuf> {
    let name = "containerd-lite";
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
        && dir.join(name).is_file()
    {
        return Some(dir.join(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Managed {
    /// dockerd's layout: socket and state under the exec root, data under the data root.
    pub fn new(cfg: &Config) -> Result<Self, SupervisorError> {
        let binary = find_binary().ok_or(SupervisorError::NotFound)?;
        let run = cfg.exec_root.join("containerd");
        let data = cfg.data_root.join("containerd");
        for d in [&run, &data] {
            std::fs::create_dir_all(d).map_err(|source| SupervisorError::Io {
                what: "create",
                path: d.clone(),
                source,
            })?;
        }
        Ok(Self {
            binary,
            address: run.join("containerd.sock"),
            root: data.join("daemon"),
            state: run.join("daemon"),
            pidfile: run.join("containerd-lite.pid"),
            log: data.join("containerd-lite.log"),
            log_level: match cfg.log_level.as_str() {
                "debug" | "trace" => "debug".into(),
                _ => "info".into(),
            },
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Uses the containerd-lite a previous engined left running, or starts one;
    /// then watches it for the rest of engined's life.
    pub async fn ensure_running(self) -> Result<Self, SupervisorError> {
        if self.answers().await {
            info!(pid = ?self.recorded_pid(), "using the running containerd-lite");
            tokio::spawn(self.clone().watch(None));
            return Ok(self);
        }
        let child = self.spawn()?;
        self.wait_ready().await?;
        tokio::spawn(self.clone().watch(Some(child)));
        Ok(self)
    }

    async fn answers(&self) -> bool {
        if !self.address.exists() {
            return false;
        }
        let probe = async {
            let ch = containerd_client::connect(&self.address).await.ok()?;
            containerd_client::services::v1::version_client::VersionClient::new(ch)
                .version(())
                .await
                .ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Some(_))
        )
    }

    fn recorded_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    fn spawn(&self) -> Result<Child, SupervisorError> {
        let io_err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| SupervisorError::Io { what, path, source }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err("open", &self.log))?;
        let log2 = log.try_clone().map_err(io_err("dup", &self.log))?;
        // A socket left by a containerd-lite that died would refuse the bind.
        let _ = std::fs::remove_file(&self.address);
        let child = Command::new(&self.binary)
            .arg("--address")
            .arg(&self.address)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--log-level")
            .arg(&self.log_level)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own group: a ^C or a signal to engined's group does not reach it.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(io_err("start", &self.binary))?;
        if let Some(pid) = child.id() {
            common::atomic_write(&self.pidfile, pid.to_string().as_bytes(), 0o644)
                .map_err(io_err("write", &self.pidfile))?;
            info!(pid, address = %self.address.display(), "started containerd-lite");
        }
        Ok(child)
    }

    async fn wait_ready(&self) -> Result<(), SupervisorError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if self.answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(SupervisorError::NotReady {
            address: self.address.display().to_string(),
            log: self.log.display().to_string(),
        })
    }

    /// Restarts containerd-lite whenever it goes away: our child is waited for; one
    /// we adopted is looked at every second.
    async fn watch(self, mut child: Option<Child>) {
        let mut delay = Duration::from_millis(100);
        loop {
            match child.take() {
                Some(mut c) => {
                    let status = c.wait().await;
                    warn!(?status, "containerd-lite exited: starting it again");
                }
                None => loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let gone = self
                        .recorded_pid()
                        .is_none_or(|pid| kill(Pid::from_raw(pid), None).is_err());
                    if gone && !self.answers().await {
                        warn!("containerd-lite is gone: starting it again");
                        break;
                    }
                },
            }
            loop {
                tokio::time::sleep(delay).await;
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                match self.spawn() {
                    Ok(c) => {
                        if let Err(e) = self.wait_ready().await {
                            warn!(error = %e, "containerd-lite did not come back");
                        } else {
                            delay = Duration::from_millis(100);
                        }
                        child = Some(c);
                        break;
                    }
                    Err(e) => warn!(error = %e, "restarting containerd-lite failed"),
                }
            }
        }
    }

    /// On a clean shutdown, as dockerd stops its containerd: SIGTERM (the shims and
    /// their containers stay), SIGKILL if it lingers.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let Some(pid) = self.recorded_pid() else {
            return;
        };
        let pid = Pid::from_raw(pid);
        if kill(pid, Signal::SIGTERM).is_err() {
            return;
        }
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if kill(pid, None).is_err() {
                return;
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}
