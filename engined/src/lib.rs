//! engined: the Docker Engine API (as the docker CLI 28 speaks it at API 1.41) on a
//! Unix socket, backed by containerd's gRPC API (containerd-lite or containerd 1.6).
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod api;
pub mod archive;
pub mod build;
pub mod changes;
pub mod clientcompat;
pub mod config;
pub mod ctrd;
pub mod daemon;
pub mod distribution;
pub mod error;
pub mod events;
pub mod filters;
pub mod follow;
pub mod fstree;
pub mod images;
pub mod import;
pub mod layerdiff;
pub mod listen;
pub mod prune;
pub mod reference;
pub mod restart;
pub mod rootfs;
pub mod save;
pub mod server;
pub mod spec;
pub mod stats;
pub mod supervisor;
pub mod sysinfo;
pub mod top;
pub mod util;
pub mod volumes;

use std::sync::Arc;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] ctrd::ConnectError),
    #[error("{0}")]
    Setup(#[from] error::ApiError),
    #[error("{0}")]
    Config(String),
    #[error("listen on {path}: {source}")]
    Listen {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Supervisor(#[from] supervisor::SupervisorError),
    #[error("write pid file {path}: {source}")]
    Pidfile {
        path: String,
        source: std::io::Error,
    },
}

/// Connects to containerd, restores state, serves every socket until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let endpoints = listen::endpoints(&cfg).map_err(StartError::Config)?;
    let sockets = cfg.sockets();
    let (address, managed) = match &cfg.containerd {
        Some(a) => (a.clone(), None),
        None => {
            let m = supervisor::Managed::new(&cfg)?.ensure_running().await?;
            (m.address.clone(), Some(m))
        }
    };
    let ctrd = ctrd::Ctrd::connect(&address, &cfg.containerd_namespace, &cfg.snapshotter).await?;
    let pidfile = cfg.pidfile.clone();
    let daemon = daemon::Daemon::new(cfg, ctrd).await?;
    tokio::spawn(events::watch_containerd(Arc::clone(&daemon)));
    let mut unix = Vec::new();
    let mut tcp = Vec::new();
    for e in &endpoints {
        let failed = |source| StartError::Listen {
            path: format!("{e:?}"),
            source,
        };
        match e {
            listen::Endpoint::Unix(p) => unix.push(server::bind(p).map_err(failed)?),
            listen::Endpoint::Tcp { addr, tls } => {
                tcp.push((listen::bind_tcp(*addr).map_err(failed)?, tls.clone()))
            }
        }
    }
    common::atomic_write(
        &pidfile,
        format!("{}", std::process::id()).as_bytes(),
        0o644,
    )
    .map_err(|source| StartError::Pidfile {
        path: pidfile.display().to_string(),
        source,
    })?;
    for l in unix {
        tokio::spawn(server::serve(Arc::clone(&daemon), l));
    }
    for (l, tls) in tcp {
        tokio::spawn(listen::serve_tcp(Arc::clone(&daemon), l, tls));
    }
    tracing::info!(endpoints = ?endpoints, "engined is serving");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| StartError::Listen {
            path: "SIGTERM handler".into(),
            source,
        })?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    daemon.shutdown().await;
    if let Some(m) = managed {
        m.stop().await;
    }
    for s in &sockets {
        let _ = std::fs::remove_file(s);
    }
    let _ = std::fs::remove_file(&pidfile);
    Ok(())
}
