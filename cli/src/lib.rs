//! `engine`: a docker-like command line for engined, over the Docker Engine API
//! with the bollard client. The commands, flags, tables and exit statuses follow
//! the docker CLI's, so scripts written for `docker` read the same here.
#![forbid(unsafe_code)]

pub mod client;
pub mod cmd;
pub mod error;
pub mod host;
pub mod progress;
pub mod reference;
pub mod streams;
pub mod table;
pub mod template;
pub mod tty;
pub mod units;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::Engine;
use crate::error::{CliError, Result};

#[derive(Debug, Parser)]
#[command(
    name = "engine",
    version,
    about = "A command-line client for engined (the Docker Engine API)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path or tcp://host:port)
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Name of the context to use (from docker's context store)
    #[arg(short = 'c', long)]
    pub context: Option<String>,
    /// Location of the client config files (default ~/.docker, or $DOCKER_CONFIG)
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and run a new container from an image
    Run(cmd::run::RunArgs),
    /// Create a new container
    Create(cmd::run::RunArgs),
    /// List containers
    Ps(cmd::ps::PsArgs),
    /// Fetch the logs of a container
    Logs(cmd::logs::LogsArgs),
    /// Execute a command in a running container
    Exec(cmd::exec::ExecArgs),
    /// Start one or more stopped containers
    Start(cmd::container::StartArgs),
    /// Stop one or more running containers
    Stop(cmd::container::StopArgs),
    /// Restart one or more containers
    Restart(cmd::container::StopArgs),
    /// Kill one or more running containers
    Kill(cmd::container::KillArgs),
    /// Remove one or more containers
    Rm(cmd::container::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(cmd::container::Names),
    /// Return low-level information on containers, images or volumes
    Inspect(cmd::container::InspectArgs),
    /// Display the running processes of a container
    Top(cmd::container::TopArgs),
    /// Display a live stream of container resource usage statistics
    Stats(cmd::stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cmd::cp::CpArgs),
    /// Rename a container
    Rename(cmd::container::RenameArgs),
    /// Pause all processes within one or more containers
    Pause(cmd::container::Names),
    /// Unpause all processes within one or more containers
    Unpause(cmd::container::Names),
    /// Attach local standard input, output, and error streams to a running container
    Attach(cmd::run::AttachArgs),
    /// Create a new image from a container's changes
    Commit(cmd::images::CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(cmd::images::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(cmd::container::OneName),
    /// List images
    Images(cmd::images::ImagesArgs),
    /// Download an image from a registry
    Pull(cmd::images::PullArgs),
    /// Upload an image to a registry
    Push(cmd::images::PushArgs),
    /// Load an image from a tar archive or STDIN
    Load(cmd::images::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(cmd::images::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(cmd::images::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(cmd::images::TagArgs),
    /// Remove one or more images
    Rmi(cmd::images::RmiArgs),
    /// Build an image from a Dockerfile
    Build(cmd::build::BuildArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCommand),
    /// Manage the daemon's data
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// Display system-wide information
    Info(cmd::system::FormatArg),
    /// Show the engine version information
    Version(cmd::system::FormatArg),
    /// Get real time events from the server
    Events(cmd::system::EventsArgs),
    /// Log in to a registry
    Login(cmd::login::LoginArgs),
    /// Log out from a registry
    Logout(cmd::login::LogoutArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make an image from a root filesystem directory (a tar of it, imported)
    #[command(name = "import-rootfs")]
    ImportRootfs(cmd::images::ImportRootfsArgs),
    /// List images
    #[command(alias = "list")]
    Ls(cmd::images::ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(cmd::images::RmiArgs),
    /// Display detailed information on one or more images
    Inspect(cmd::container::InspectArgs),
    /// Download an image from a registry
    Pull(cmd::images::PullArgs),
    /// Upload an image to a registry
    Push(cmd::images::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(cmd::images::TagArgs),
    /// Load an image from a tar archive or STDIN
    Load(cmd::images::LoadArgs),
    /// Save one or more images to a tar archive
    Save(cmd::images::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(cmd::images::ImportArgs),
    /// Build an image from a Dockerfile
    Build(cmd::build::BuildArgs),
    /// Remove unused images
    Prune(cmd::images::PruneArgs),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(alias = "list")]
    Ls(cmd::ps::PsArgs),
    /// Remove all stopped containers
    Prune(ForceArg),
    /// Create and run a new container from an image
    Run(Box<cmd::run::RunArgs>),
    /// Display detailed information on one or more containers
    Inspect(cmd::container::InspectArgs),
}

#[derive(Debug, Args)]
pub struct ForceArg {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// Parses the command line and runs it; returns the exit status (docker's:
/// 125 for a bad command line or, for `run`, a daemon error; 126/127 when the
/// container's command cannot be invoked or found; else the command's own).
pub fn main_with_args(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 125,
            };
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("engine: cannot start the runtime: {e}");
            return 1;
        }
    };
    let is_run = matches!(
        cli.command,
        Command::Run(_) | Command::Container(ContainerCommand::Run(_))
    );
    let result = rt.block_on(dispatch(cli));
    let code = match result {
        Ok(code) => code,
        Err(CliError::Status(code)) => code,
        Err(e) => {
            report(&e, is_run);
            e.exit_code()
        }
    };
    // Blocking stdin readers may still sit in read(2); they end with the process.
    rt.shutdown_background();
    code
}

fn report(e: &CliError, is_run: bool) {
    if is_run {
        eprintln!("engine: {e}\n\nRun 'engine run --help' for more information");
    } else {
        eprintln!("{e}");
    }
}

/// Connects to the daemon the flags, environment and contexts name.
pub async fn connect(cli: &Cli) -> Result<Engine> {
    let env = host::Env::from_process();
    let config = host::config_dir(cli.config.as_deref());
    let endpoint = host::resolve(cli.host.as_deref(), cli.context.as_deref(), &env, &config)?;
    Engine::connect(endpoint).await
}

async fn dispatch(cli: Cli) -> Result<i32> {
    if let Some(c) = &cli.config {
        host::remember_config_flag(c);
    }
    if let Command::Logout(a) = cli.command {
        return cmd::login::logout(a, cli.config.as_deref());
    }
    // `version` prints the client's part even when no daemon answers.
    if matches!(cli.command, Command::Version(_)) {
        let e = connect(&cli).await;
        if let Command::Version(a) = cli.command {
            return cmd::system::version(e, a).await;
        }
    }
    let e = connect(&cli).await.map_err(|err| match err {
        // The run command's daemon errors are 125 too.
        CliError::Connect { .. } if matches!(cli.command, Command::Run(_)) => CliError::Coded {
            code: 125,
            source: Box::new(err),
        },
        other => other,
    })?;
    use cmd::*;
    match cli.command {
        Command::Run(a) => run::run(&e, a).await,
        Command::Container(ContainerCommand::Run(a)) => run::run(&e, *a).await,
        Command::Create(a) => run::create(&e, a).await,
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => ps::ps(&e, a).await,
        Command::Logs(a) => logs::logs(&e, a).await,
        Command::Exec(a) => exec::exec(&e, a).await,
        Command::Start(a) => container::start(&e, a).await,
        Command::Stop(a) => container::stop(&e, a, false).await,
        Command::Restart(a) => container::stop(&e, a, true).await,
        Command::Kill(a) => container::kill(&e, a).await,
        Command::Rm(a) => container::rm(&e, a).await,
        Command::Wait(a) => container::wait(&e, a).await,
        Command::Inspect(a) | Command::Container(ContainerCommand::Inspect(a)) => {
            container::inspect(&e, a, container::Kind::Any).await
        }
        Command::Top(a) => container::top(&e, a).await,
        Command::Stats(a) => stats::stats(&e, a).await,
        Command::Cp(a) => cp::cp(&e, a).await,
        Command::Rename(a) => container::rename(&e, a).await,
        Command::Pause(a) => container::pause(&e, a, true).await,
        Command::Unpause(a) => container::pause(&e, a, false).await,
        Command::Attach(a) => run::attach(&e, a).await,
        Command::Commit(a) => images::commit(&e, a).await,
        Command::Export(a) => images::export(&e, a).await,
        Command::Diff(a) => container::diff(&e, a).await,
        Command::Container(ContainerCommand::Prune(a)) => container::prune(&e, a).await,
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::images(&e, a).await,
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => images::pull(&e, a).await,
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => images::push(&e, a).await,
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(&e, a).await,
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(&e, a).await,
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => images::import(&e, a).await,
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(&e, a).await,
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::rmi(&e, a).await,
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(&e, a).await,
        Command::Image(ImageCommand::ImportRootfs(a)) => images::import_rootfs(&e, a).await,
        Command::Image(ImageCommand::Inspect(a)) => {
            container::inspect(&e, a, container::Kind::Image).await
        }
        Command::Image(ImageCommand::Prune(a)) => images::prune(&e, a).await,
        Command::Volume(c) => volume::volume(&e, c).await,
        Command::System(c) => system::system(&e, c).await,
        Command::Info(a) => system::info(&e, a).await,
        Command::Version(a) => system::version(Ok(e), a).await,
        Command::Events(a) => system::events(&e, a).await,
        Command::Login(a) => login::login(&e, a, cli.config.as_deref()).await,
        Command::Logout(_) => Ok(0),
    }
}
