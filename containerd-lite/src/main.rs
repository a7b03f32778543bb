//! `containerd-lite`: the daemon (no subcommand), plus `import`, `export`, `pull`
//! and `publish`.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use containerd_lite::{Config, Daemon, server, tools};

#[derive(Debug, Parser)]
#[command(
    name = "containerd-lite",
    version,
    about = "containerd 1.6 API-compatible daemon (images, content, snapshots, containers, leases, events)"
)]
struct Cli {
    /// Socket to serve the gRPC API on.
    #[arg(short = 'a', long, global = true)]
    address: Option<PathBuf>,
    /// Persistent state (content, metadata, snapshots).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Runtime state.
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// containerd-style TOML config (root, state, [grpc] address, [debug] level).
    #[arg(short = 'c', long, global = true)]
    config: Option<PathBuf>,
    /// trace, debug, info, warn or error.
    #[arg(short = 'l', long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a `docker save` or OCI-layout tar (offline: the daemon must not run on this root).
    Import {
        file: PathBuf,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "overlayfs")]
        snapshotter: String,
        #[arg(long)]
        no_unpack: bool,
    },
    /// Export images to an OCI-layout tar (offline).
    Export {
        file: PathBuf,
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Pull an image from a registry (offline).
    Pull {
        reference: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        plain_http: bool,
        /// user:password for basic auth.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        no_unpack: bool,
    },
    /// Push an image's host-platform manifest, config and layers to a registry (offline).
    Push {
        image: String,
        reference: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(long)]
        plain_http: bool,
        /// user:password for basic auth.
        #[arg(long)]
        user: Option<String>,
    },
    /// Forward an event (a protobuf Any on stdin) to the running daemon.
    Publish {
        #[arg(long)]
        topic: String,
        #[arg(short = 'n', long)]
        namespace: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if cli.address.is_some() {
        config.grpc.address = cli.address.clone();
    }
    if cli.root.is_some() {
        config.root = cli.root.clone();
    }
    if cli.state.is_some() {
        config.state = cli.state.clone();
    }
    let level = cli
        .log_level
        .clone()
        .or_else(|| config.debug.level.clone())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
    // Two workers are plenty: storage work runs on the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(run(cli.command, config))
}

async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command {
        None => {
            let daemon = Daemon::open(&config.root(), &config.state())?;
            let listener = server::bind(&config.address())?;
            let tasks = Arc::new(containerd_lite::runtime::TaskManager::new(
                &config,
                &config.state(),
            ));
            {
                let tasks = tasks.clone();
                tokio::task::spawn_blocking(move || tasks.recover()).await?;
            }
            tracing::info!(address = %config.address().display(), root = %config.root().display(), "serving");
            let shutdown = async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "SIGTERM handler");
                            return std::future::pending().await;
                        }
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("shutting down");
            };
            server::serve(daemon, tasks, listener, shutdown).await?;
            let _ = std::fs::remove_file(config.address());
            Ok(())
        }
        Some(Command::Import {
            file,
            namespace,
            snapshotter,
            no_unpack,
        }) => {
            let d = Daemon::open(&config.root(), &config.state())?;
            let sn = (!no_unpack).then_some(snapshotter);
            let names = tokio::task::spawn_blocking(move || {
                tools::import_file(&d, &namespace, &file, sn.as_deref())
            })
            .await??;
            for n in names {
                println!("{n}");
            }
            Ok(())
        }
        Some(Command::Export {
            file,
            images,
            namespace,
        }) => {
            let d = Daemon::open(&config.root(), &config.state())?;
            tokio::task::spawn_blocking(move || tools::export_file(&d, &namespace, &images, &file))
                .await??;
            Ok(())
        }
        Some(Command::Pull {
            reference,
            namespace,
            plain_http,
            user,
            no_unpack,
        }) => {
            let d: Arc<Daemon> = Daemon::open(&config.root(), &config.state())?;
            let auth = auth(user);
            let opts = containerd_lite::pull::PullOptions {
                plain_http,
                unpack: (!no_unpack).then(|| containerd_lite::DEFAULT_SNAPSHOTTER.to_string()),
            };
            let pulled =
                containerd_lite::pull::pull(&d, &namespace, &reference, &auth, &opts).await?;
            println!("{} {}", pulled.name, pulled.target.digest);
            Ok(())
        }
        Some(Command::Push {
            image,
            reference,
            namespace,
            plain_http,
            user,
        }) => {
            let d: Arc<Daemon> = Daemon::open(&config.root(), &config.state())?;
            let url = containerd_lite::pull::push(
                &d,
                &namespace,
                &image,
                &reference,
                &auth(user),
                plain_http,
            )
            .await?;
            println!("{url}");
            Ok(())
        }
        Some(Command::Publish { topic, namespace }) => {
            tools::publish(
                &config.address(),
                &namespace,
                &topic,
                std::io::stdin().lock(),
            )
            .await?;
            Ok(())
        }
    }
}

fn auth(user: Option<String>) -> oci_client::secrets::RegistryAuth {
    match user {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u.as_str(), ""));
            oci_client::secrets::RegistryAuth::Basic(user.to_string(), pass.to_string())
        }
        None => oci_client::secrets::RegistryAuth::Anonymous,
    }
}
