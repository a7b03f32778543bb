//! Lifecycle commands on existing containers (start, stop, restart, kill, rm,
//! wait, rename, pause, unpause), inspect, top, diff and prune.

use bollard::query_parameters::{
    KillContainerOptions, PruneContainersOptions, RemoveContainerOptions, RenameContainerOptions,
    RestartContainerOptions, StopContainerOptions, TopOptions, WaitContainerOptions,
};
use clap::Args;
use futures_util::StreamExt;
use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use super::run::{Outcome, Session, read_wait};
use super::{each, filters, print, println, str_at, to_value};
use crate::ForceArg;
use crate::client::Engine;
use crate::error::{CliError, Result};
use crate::table::{parse_template, tabwrite_with};
use crate::units::human_size4;

#[derive(Debug, Args)]
pub struct Names {
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OneName {
    #[arg(value_name = "CONTAINER")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, value_name = "string")]
    pub signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        alias = "time",
        value_name = "int",
        allow_hyphen_values = true
    )]
    pub timeout: Option<i32>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, value_name = "string")]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template ('json', or a Go template)
    #[arg(short = 'f', long, value_name = "string")]
    pub format: Option<String>,
    /// Return JSON for specified type (container, image, volume)
    #[arg(long = "type", value_name = "string")]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options (default -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub async fn start(e: &Engine, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        if a.names.len() > 1 {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            ));
        }
        return start_attached(e, &a).await;
    }
    let mut failed = Vec::new();
    for n in &a.names {
        match e.docker.start_container(n, None).await {
            Ok(()) => println(n),
            Err(err) => {
                let err = CliError::from(err);
                if let CliError::Connect { .. } = err {
                    return Err(err);
                }
                eprintln!("{err}");
                failed.push(n.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(CliError::Other(format!(
            "Error: failed to start containers: {}",
            failed.join(", ")
        )))
    }
}

async fn start_attached(e: &Engine, a: &StartArgs) -> Result<i32> {
    let name = &a.names[0];
    let c = to_value(&e.docker.inspect_container(name, None).await?);
    let tty = c.pointer("/Config/Tty") == Some(&Value::Bool(true));
    let session = Session {
        id: str_at(&c, "/Id"),
        tty,
        stdin: a.interactive && c.pointer("/Config/OpenStdin") == Some(&Value::Bool(true)),
        detach_keys: a.detach_keys.clone(),
        sig_proxy: !tty,
        exec: false,
    };
    let mut q = vec![("stderr", "1"), ("stdout", "1"), ("stream", "1")];
    if session.stdin {
        q.push(("stdin", "1"));
    }
    let streams = e
        .hijack(
            &format!(
                "/containers/{}/attach{}",
                session.id,
                crate::client::query(&q)
            ),
            None,
        )
        .await?;
    let wait = e
        .request_json(
            Method::POST,
            &format!("/containers/{}/wait?condition=next-exit", session.id),
            None,
        )
        .await?;
    let status = tokio::spawn(read_wait(wait.into_body()));
    let raw = session.raw_mode()?;
    e.docker.start_container(&session.id, None).await?;
    let outcome = session.pump(e, streams).await?;
    drop(raw);
    if outcome == Outcome::Detached {
        return Ok(0);
    }
    status
        .await
        .map_err(|j| CliError::Other(format!("waiting for the container: {j}")))?
}

pub async fn stop(e: &Engine, a: StopArgs, restart: bool) -> Result<i32> {
    each(&a.names, |n| {
        let (signal, t) = (a.signal.clone(), a.timeout);
        async move {
            if restart {
                e.docker
                    .restart_container(&n, Some(RestartContainerOptions { signal, t }))
                    .await?;
            } else {
                e.docker
                    .stop_container(&n, Some(StopContainerOptions { signal, t }))
                    .await?;
            }
            Ok(Some(n))
        }
    })
    .await
}

pub async fn kill(e: &Engine, a: KillArgs) -> Result<i32> {
    each(&a.names, |n| {
        let signal = a.signal.clone().unwrap_or_else(|| "KILL".into());
        async move {
            e.docker
                .kill_container(&n, Some(KillContainerOptions { signal }))
                .await?;
            Ok(Some(n))
        }
    })
    .await
}

pub async fn rm(e: &Engine, a: RmArgs) -> Result<i32> {
    each(&a.names, |n| async move {
        e.docker
            .remove_container(
                &n,
                Some(RemoveContainerOptions {
                    force: a.force,
                    v: a.volumes,
                    link: false,
                }),
            )
            .await?;
        Ok(Some(n))
    })
    .await
}

pub async fn wait(e: &Engine, a: Names) -> Result<i32> {
    each(&a.names, |n| async move {
        let mut s = e.docker.wait_container(
            &n,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match s.next().await {
            Some(Ok(r)) => Ok(Some(r.status_code.to_string())),
            // bollard reports a non-zero status as an error.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, error }))
                if error.is_empty() =>
            {
                Ok(Some(code.to_string()))
            }
            Some(Err(err)) => Err(err.into()),
            None => Err(CliError::Other(format!("no status for {n}"))),
        }
    })
    .await
}

pub async fn rename(e: &Engine, a: RenameArgs) -> Result<i32> {
    if a.new_name.trim().is_empty() {
        return Err(CliError::Usage(
            "Error: Neither old nor new names may be empty".into(),
        ));
    }
    e.docker
        .rename_container(&a.container, RenameContainerOptions { name: a.new_name })
        .await?;
    Ok(0)
}

pub async fn pause(e: &Engine, a: Names, pause: bool) -> Result<i32> {
    each(&a.names, |n| async move {
        if pause {
            e.docker.pause_container(&n).await?;
        } else {
            e.docker.unpause_container(&n).await?;
        }
        Ok(Some(n))
    })
    .await
}

pub async fn top(e: &Engine, a: TopArgs) -> Result<i32> {
    // dockerd's default when the CLI sends none; an empty value would mean "no args".
    let ps_args = if a.ps_args.is_empty() {
        "-ef".to_string()
    } else {
        a.ps_args.join(" ")
    };
    let t = e
        .docker
        .top_processes(&a.container, Some(TopOptions { ps_args }))
        .await?;
    let mut text = t.titles.unwrap_or_default().join("\t");
    text.push('\n');
    for p in t.processes.unwrap_or_default() {
        text.push_str(&p.join("\t"));
        text.push('\n');
    }
    print(&tabwrite_with(&text, 20, 3));
    Ok(0)
}

pub async fn diff(e: &Engine, a: OneName) -> Result<i32> {
    let changes = e
        .docker
        .container_changes(&a.name)
        .await?
        .unwrap_or_default();
    let mut out = String::new();
    for c in changes {
        let kind = match to_value(&c.kind).as_i64() {
            Some(0) => 'C',
            Some(1) => 'A',
            Some(2) => 'D',
            _ => '?',
        };
        out.push_str(&format!("{kind} {}\n", c.path));
    }
    print(&out);
    Ok(0)
}

pub async fn prune(e: &Engine, a: ForceArg) -> Result<i32> {
    if !super::confirm(a.force, "WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let f = filters(&a.filter)?;
    let r = e
        .docker
        .prune_containers(Some(PruneContainersOptions {
            filters: (!f.is_empty()).then_some(f),
        }))
        .await?;
    let deleted = r.containers_deleted.unwrap_or_default();
    let mut out = String::new();
    if !deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for d in deleted {
            out.push_str(&d);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size4(r.space_reclaimed.unwrap_or(0) as f64)
    ));
    print(&out);
    Ok(0)
}

/// What `inspect` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Any,
    Container,
    Image,
    Volume,
}

/// The typed object, printed in the API's field order, and its JSON for templates.
struct Found {
    pretty: Value,
    ordered: Box<dyn ErasedSerialize>,
}

trait ErasedSerialize: Send {
    fn to_pretty(&self) -> String;
}

impl<T: Serialize + Send> ErasedSerialize for T {
    fn to_pretty(&self) -> String {
        pretty(self)
    }
}

/// JSON indented by four spaces, as docker prints inspect output.
pub fn pretty<T: Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

async fn find(e: &Engine, name: &str, kind: Kind, size: bool) -> Result<Option<Found>> {
    let missing = |r: &Result<Found>| matches!(r, Err(err) if err.status() == Some(404));
    if matches!(kind, Kind::Any | Kind::Container) {
        let r = e
            .docker
            .inspect_container(
                name,
                Some(bollard::query_parameters::InspectContainerOptions { size }),
            )
            .await
            .map(|c| Found {
                pretty: to_value(&c),
                ordered: Box::new(c),
            })
            .map_err(CliError::from);
        if !missing(&r) {
            return r.map(Some);
        }
    }
    if matches!(kind, Kind::Any | Kind::Image) {
        let r = e
            .docker
            .inspect_image(name)
            .await
            .map(|i| Found {
                pretty: to_value(&i),
                ordered: Box::new(i),
            })
            .map_err(CliError::from);
        if !missing(&r) {
            return r.map(Some);
        }
    }
    if matches!(kind, Kind::Any | Kind::Volume) {
        let r = e
            .docker
            .inspect_volume(name)
            .await
            .map(|v| Found {
                pretty: to_value(&v),
                ordered: Box::new(v),
            })
            .map_err(CliError::from);
        if !missing(&r) {
            return r.map(Some);
        }
    }
    Ok(None)
}

pub async fn inspect(e: &Engine, a: InspectArgs, kind: Kind) -> Result<i32> {
    let kind = match a.kind.as_deref() {
        None | Some("") => kind,
        Some("container") => Kind::Container,
        Some("image") => Kind::Image,
        Some("volume") => Kind::Volume,
        Some(other) => {
            return Err(CliError::Usage(format!(
                "\"{other}\" is not a valid value for --type"
            )));
        }
    };
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(parse_template(f)?),
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in &a.names {
        match find(e, n, kind, a.size).await? {
            Some(f) => found.push(f),
            None => missing.push(n.clone()),
        }
    }
    match &template {
        Some(t) => {
            let mut out = String::new();
            for f in &found {
                out.push_str(
                    &t.render(&f.pretty)
                        .map_err(|e| CliError::Other(e.to_string()))?,
                );
                out.push('\n');
            }
            print(&out);
        }
        None => {
            let items: Vec<String> = found
                .iter()
                .map(|f| indent(&f.ordered.to_pretty()))
                .collect();
            if items.is_empty() {
                println("[]");
            } else {
                println(&format!("[\n{}\n]", items.join(",\n")));
            }
        }
    }
    if missing.is_empty() {
        return Ok(0);
    }
    let what = match kind {
        Kind::Image => "image",
        Kind::Volume => "volume",
        Kind::Container => "container",
        Kind::Any => "object",
    };
    for m in &missing {
        eprintln!("Error: No such {what}: {m}");
    }
    Ok(1)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
