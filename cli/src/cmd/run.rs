//! `run`, `create` and `attach`, in the order docker's CLI talks to the daemon:
//! create (a 404 pulls the image and creates again), attach, wait (its response
//! head must be in before the start), start, then the streams; the exit status
//! is the container's, from the wait.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, RemoveContainerOptions, ResizeContainerTTYOptions,
};
use clap::Args;
use hyper::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{println, str_at};
use crate::client::{Engine, query};
use crate::error::{CliError, Result};
use crate::streams::{self, Stdio};
use crate::tty::{self, EscapeScanner, RawMode, Scan};
use crate::units;

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", value_name = "list")]
    pub volume: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "string")]
    pub workdir: Option<String>,
    /// Assign a name to the container
    #[arg(long, value_name = "string")]
    pub name: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string")]
    pub restart: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long, value_name = "string")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Connect a container to a network
    #[arg(long, alias = "net", value_name = "network")]
    pub network: Option<String>,
    /// Container host name
    #[arg(long, value_name = "string")]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish", value_name = "list")]
    pub publish: Vec<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "list")]
    pub log_opt: Vec<String>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "bool")]
    pub sig_proxy: bool,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "string")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", value_name = "int")]
    pub stop_timeout: Option<i64>,
    /// Runtime to use for this container
    #[arg(long, value_name = "string")]
    pub runtime: Option<String>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    pub args: Vec<String>,
}

/// docker's exit status for a failed `run`: 127 when the command is not found,
/// 126 when it cannot be invoked, else 125 (the daemon's or our own error).
pub fn run_status(e: CliError) -> CliError {
    if let CliError::Status(_) | CliError::Coded { .. } = e {
        return e;
    }
    let m = e.to_string();
    let code = if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("system cannot find the file specified")
    {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        125
    };
    CliError::Coded {
        code,
        source: Box::new(e),
    }
}

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

/// `-e NAME` takes NAME from our environment (and is dropped if it is unset).
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

fn read_env_file(p: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(p).map_err(CliError::io(format!("open {}", p.display())))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

fn restart_policy(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            Some(c.parse::<i64>().map_err(|_| {
                usage(format!(
                    "invalid restart policy format: maximum retry count must be an integer: {s}"
                ))
            })?),
        ),
        None => (s, None),
    };
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => {
            return Err(usage(format!(
                "invalid restart policy format: unknown policy {other:?}"
            )));
        }
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(usage(format!(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure': {s}"
        )));
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: count,
    })
}

/// `[ip:][host_port:]container_port[/proto]`.
fn parse_publish(p: &str) -> Result<(String, PortBinding)> {
    let (spec, proto) = p.rsplit_once('/').unwrap_or((p, "tcp"));
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (ctr, host_port, ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => return Err(usage(format!("invalid publish spec {p:?}"))),
    };
    if ctr.parse::<u16>().is_err() {
        return Err(usage(format!("invalid containerPort: {ctr}")));
    }
    Ok((
        format!("{ctr}/{proto}"),
        PortBinding {
            host_ip: Some(ip.to_string()),
            host_port: Some(host_port.to_string()),
        },
    ))
}

/// The create body and name that the flags ask for.
pub fn create_body(
    a: &RunArgs,
    console: Option<(u16, u16)>,
) -> Result<(ContainerCreateBody, Option<String>)> {
    let image = a
        .args
        .first()
        .cloned()
        .ok_or_else(|| usage("\"run\" requires at least 1 argument.".into()))?;
    if a.rm && a.restart.as_deref().is_some_and(|r| r != "no") {
        return Err(usage("Conflicting options: --restart and --rm".into()));
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().filter_map(|e| env_entry(e)));
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for v in &a.volume {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.len() == 1 {
            if !v.starts_with('/') {
                return Err(usage(format!("invalid volume specification: '{v}'")));
            }
            volumes.push(v.clone());
            continue;
        }
        // A relative host path is taken from the current directory, as docker 23+ does.
        let src = parts[0];
        let src = if src.starts_with('.') {
            std::env::current_dir()
                .map(|d| d.join(src).to_string_lossy().into_owned())
                .unwrap_or_else(|_| src.to_string())
        } else {
            src.to_string()
        };
        let mut spec = vec![src];
        spec.extend(parts[1..].iter().map(|s| s.to_string()));
        binds.push(spec.join(":"));
    }
    let memory = match &a.memory {
        Some(m) => Some(units::parse_ram(m).ok_or_else(|| {
            usage(format!(
                "invalid argument {m:?} for \"-m, --memory\" flag: invalid size: '{m}'"
            ))
        })?),
        None => None,
    };
    let nano_cpus = match &a.cpus {
        Some(c) => {
            let f: f64 = c
                .parse()
                .map_err(|_| usage(format!("invalid argument {c:?} for \"--cpus\" flag: failed to parse {c} as a rational number")))?;
            Some((f * 1e9).round() as i64)
        }
        None => None,
    };
    let restart = a.restart.as_deref().map(restart_policy).transpose()?;
    let mut labels = HashMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &a.publish {
        let (port, b) = parse_publish(p)?;
        port_bindings
            .entry(port)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(b);
    }
    let mut log_config = HashMap::new();
    for o in &a.log_opt {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| usage(format!("invalid key-value pair for --log-opt: {o}")))?;
        log_config.insert(k.to_string(), v.to_string());
    }
    let attach = !a.detach;
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        memory,
        nano_cpus,
        restart_policy: restart,
        readonly_rootfs: a.read_only.then_some(true),
        auto_remove: Some(a.rm),
        network_mode: Some(a.network.clone().unwrap_or_else(|| "default".into())),
        console_size: match (a.tty, console) {
            (true, Some((r, c))) => Some(vec![r as usize, c as usize]),
            _ => Some(vec![0, 0]),
        },
        pids_limit: a.pids_limit,
        cap_add: (!a.cap_add.is_empty()).then(|| a.cap_add.clone()),
        cap_drop: (!a.cap_drop.is_empty()).then(|| a.cap_drop.clone()),
        privileged: a.privileged.then_some(true),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings.clone()),
        log_config: (!log_config.is_empty()).then_some(HostConfigLogConfig {
            typ: None,
            config: Some(log_config),
        }),
        runtime: a.runtime.clone(),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        hostname: a.hostname.clone(),
        user: a.user.clone(),
        attach_stdin: Some(attach && a.interactive),
        attach_stdout: Some(attach),
        attach_stderr: Some(attach),
        tty: Some(a.tty),
        open_stdin: Some(a.interactive),
        stdin_once: Some(attach && a.interactive),
        env: (!env.is_empty()).then_some(env),
        cmd: (a.args.len() > 1).then(|| a.args[1..].to_vec()),
        image: Some(image),
        volumes: (!volumes.is_empty()).then_some(volumes),
        working_dir: a.workdir.clone(),
        entrypoint: a.entrypoint.clone().map(|e| vec![e]),
        labels: Some(labels),
        exposed_ports: (!port_bindings.is_empty()).then(|| port_bindings.keys().cloned().collect()),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        host_config: Some(host_config),
        ..Default::default()
    };
    Ok((body, a.name.clone()))
}

async fn create_once(e: &Engine, body: &ContainerCreateBody, name: Option<&str>) -> Result<String> {
    let opts = CreateContainerOptions {
        name: name.map(str::to_string),
        platform: String::new(),
    };
    let r = e.docker.create_container(Some(opts), body.clone()).await?;
    for w in r.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(r.id)
}

/// Creates the container; a 404 means the image is missing: pull it (progress on
/// stderr, as docker shows it for run) and create again.
pub async fn create_with_pull(
    e: &Engine,
    body: &ContainerCreateBody,
    name: Option<&str>,
) -> Result<String> {
    match create_once(e, body, name).await {
        Err(err) if err.status() == Some(404) => {
            let image = body.image.clone().unwrap_or_default();
            eprintln!("Unable to find image '{}' locally", familiar(&image));
            super::images::pull_image(e, &image, false, true).await?;
            create_once(e, body, name).await
        }
        other => other,
    }
}

fn familiar(image: &str) -> String {
    crate::reference::Reference::parse(image)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| image.to_string())
}

pub async fn create(e: &Engine, a: RunArgs) -> Result<i32> {
    let (body, name) = create_body(&a, tty::size())?;
    let id = create_with_pull(e, &body, name.as_deref()).await?;
    println(&id);
    Ok(0)
}

pub async fn run(e: &Engine, a: RunArgs) -> Result<i32> {
    if a.tty && a.interactive && !a.detach && !tty::stdin_is_terminal() {
        return Err(CliError::Other("the input device is not a TTY".into()));
    }
    let (body, name) = create_body(&a, tty::size())?;
    let id = create_with_pull(e, &body, name.as_deref())
        .await
        .map_err(run_status)?;
    if a.detach {
        // As docker: a wait is open across the start (and dropped after it).
        let wait = e
            .request_json(
                Method::POST,
                &format!("/containers/{id}/wait?condition=next-exit"),
                None,
            )
            .await
            .map_err(run_status)?;
        let started = e.docker.start_container(&id, None).await;
        drop(wait);
        started.map_err(|err| run_status(err.into()))?;
        println(&id);
        return Ok(0);
    }
    let condition = if a.rm { "removed" } else { "next-exit" };
    let session = Session {
        id: id.clone(),
        tty: a.tty,
        stdin: a.interactive,
        detach_keys: a.detach_keys.clone(),
        sig_proxy: a.sig_proxy && !a.tty,
        exec: false,
    };
    let streams = session.attach(e).await.map_err(run_status)?;
    let wait = e
        .request_json(
            Method::POST,
            &format!("/containers/{id}/wait?condition={condition}"),
            None,
        )
        .await
        .map_err(run_status)?;
    let status = tokio::spawn(read_wait(wait.into_body()));
    let raw = session.raw_mode()?;
    if let Err(err) = e.docker.start_container(&id, None).await {
        drop(raw);
        if a.rm {
            // The container never ran: nothing is left for --rm to remove later.
            let _ = e
                .docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
        return Err(run_status(err.into()));
    }
    match session.pump(e, streams).await? {
        Outcome::Detached => Ok(0),
        Outcome::Ended => {
            drop(raw);
            match status.await {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(err)) => Err(run_status(err)),
                Err(join) => Err(CliError::Other(format!(
                    "waiting for the container: {join}"
                ))),
            }
        }
    }
}

/// The body of a `/wait` response: the exit status, or the error it reports.
pub async fn read_wait(body: hyper::body::Incoming) -> Result<i32> {
    let bytes = streams::read_all(body).await?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
        CliError::Other(format!(
            "the daemon ended the wait without a status: {:?}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    let msg = str_at(&v, "/Error/Message");
    if !msg.is_empty() {
        return Err(CliError::Other(msg));
    }
    Ok(v.get("StatusCode").and_then(Value::as_i64).unwrap_or(0) as i32)
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "bool")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    pub container: String,
}

pub async fn attach(e: &Engine, a: AttachArgs) -> Result<i32> {
    let wait = e
        .request_json(
            Method::POST,
            &format!("/containers/{}/wait", a.container),
            None,
        )
        .await?;
    let status = tokio::spawn(read_wait(wait.into_body()));
    let c = super::to_value(&e.docker.inspect_container(&a.container, None).await?);
    if c.pointer("/State/Running") != Some(&Value::Bool(true)) {
        return Err(CliError::Other(
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    if c.pointer("/State/Paused") == Some(&Value::Bool(true)) {
        return Err(CliError::Other(
            "You cannot attach to a paused container, unpause it first".into(),
        ));
    }
    let tty = c.pointer("/Config/Tty") == Some(&Value::Bool(true));
    let open_stdin = c.pointer("/Config/OpenStdin") == Some(&Value::Bool(true));
    let session = Session {
        id: str_at(&c, "/Id"),
        tty,
        stdin: open_stdin && !a.no_stdin,
        detach_keys: a.detach_keys,
        sig_proxy: a.sig_proxy && !tty,
        exec: false,
    };
    let streams = session.attach(e).await?;
    let raw = session.raw_mode()?;
    if tty {
        session.resize(e).await;
    }
    match session.pump(e, streams).await? {
        Outcome::Detached => Ok(0),
        Outcome::Ended => {
            drop(raw);
            match status.await {
                Ok(r) => r,
                Err(join) => Err(CliError::Other(format!(
                    "waiting for the container: {join}"
                ))),
            }
        }
    }
}

/// How an attached session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The output ended (the process exited, or closed it).
    Ended,
    /// The detach keys were typed.
    Detached,
}

/// The terminal side of an attach or exec stream.
#[derive(Debug, Clone)]
pub struct Session {
    /// Container id, or exec id when `exec`.
    pub id: String,
    pub tty: bool,
    pub stdin: bool,
    pub detach_keys: Option<String>,
    pub sig_proxy: bool,
    pub exec: bool,
}

impl Session {
    async fn attach(&self, e: &Engine) -> Result<crate::client::Hijacked> {
        let mut q = vec![("stderr", "1"), ("stdout", "1"), ("stream", "1")];
        if self.stdin {
            q.push(("stdin", "1"));
        }
        if let Some(k) = &self.detach_keys {
            q.push(("detachKeys", k.as_str()));
        }
        e.hijack(
            &format!("/containers/{}/attach{}", self.id, query(&q)),
            None,
        )
        .await
    }

    /// Raw mode on our terminal when the session reads it and the container has one.
    pub fn raw_mode(&self) -> Result<Option<RawMode>> {
        if self.tty && self.stdin && tty::stdin_is_terminal() {
            RawMode::enable().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sends our terminal's size to the container's (or exec's) terminal.
    pub async fn resize(&self, e: &Engine) {
        let Some((h, w)) = tty::size() else {
            return;
        };
        if self.exec {
            let _ = e
                .docker
                .resize_exec(
                    &self.id,
                    bollard::query_parameters::ResizeExecOptions {
                        h: h.into(),
                        w: w.into(),
                    },
                )
                .await;
        } else {
            let _ = e
                .docker
                .resize_container_tty(
                    &self.id,
                    ResizeContainerTTYOptions {
                        h: h.into(),
                        w: w.into(),
                    },
                )
                .await;
        }
    }

    /// Runs the streams: output to our stdout/stderr until it ends; our stdin to
    /// the process (half-closed at EOF off a terminal); terminal resizes; and,
    /// without a terminal, our signals forwarded to the container.
    pub async fn pump(&self, e: &Engine, (rd, mut wr): crate::client::Hijacked) -> Result<Outcome> {
        let mut tasks = Vec::new();
        if self.tty {
            self.resize(e).await;
            let (me, eng) = (self.clone(), e.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut winch) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                else {
                    return;
                };
                while winch.recv().await.is_some() {
                    me.resize(&eng).await;
                }
            }));
        }
        if self.sig_proxy && !self.exec {
            tasks.extend(forward_signals(e, &self.id));
        }
        let (detach_tx, mut detach_rx) = tokio::sync::mpsc::channel::<()>(1);
        if self.stdin {
            let keys = if self.tty {
                Some(tty::parse_detach_keys(
                    self.detach_keys
                        .as_deref()
                        .unwrap_or(tty::DEFAULT_DETACH_KEYS),
                )?)
            } else {
                None
            };
            let tty = self.tty;
            tasks.push(tokio::spawn(async move {
                let mut input = tty::stdin_chunks();
                let mut scanner = keys.map(EscapeScanner::new);
                while let Some(Some(chunk)) = input.recv().await {
                    let (data, detach) = match scanner.as_mut().map(|s| s.scan(&chunk)) {
                        Some(Scan::Send(d)) => (d, false),
                        Some(Scan::Detach(d)) => (d, true),
                        None => (chunk, false),
                    };
                    if !data.is_empty()
                        && (wr.write_all(&data).await.is_err() || wr.flush().await.is_err())
                    {
                        return;
                    }
                    if detach {
                        let _ = detach_tx.send(()).await;
                        return;
                    }
                }
                // EOF: off a terminal the process sees its stdin close; on one,
                // docker keeps the stream open (the terminal still shows output).
                if !tty {
                    let _ = wr.shutdown().await;
                }
                std::future::pending::<()>().await;
            }));
        } else {
            drop(wr);
        }
        let mut sink = Stdio;
        let outcome = tokio::select! {
            r = streams::copy_output(rd, self.tty, &mut sink) => { r?; Outcome::Ended }
            Some(()) = detach_rx.recv() => Outcome::Detached,
        };
        for t in tasks {
            t.abort();
        }
        Ok(outcome)
    }
}

/// docker's sig-proxy: the signals we receive go to the container's process.
fn forward_signals(e: &Engine, id: &str) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ];
    let mut out = Vec::new();
    for (kind, name) in kinds {
        let Ok(mut s) = signal(kind) else {
            continue;
        };
        let (e, id) = (e.clone(), id.to_string());
        out.push(tokio::spawn(async move {
            while s.recv().await.is_some() {
                let _ = e
                    .docker
                    .kill_container(
                        &id,
                        Some(KillContainerOptions {
                            signal: name.into(),
                        }),
                    )
                    .await;
            }
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> RunArgs {
        let mut v = vec!["engine", "run"];
        v.extend_from_slice(args);
        match crate::Cli::try_parse_from(v).unwrap().command {
            crate::Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let a = parse(&["-it", "--rm", "-e", "A=1", "busybox", "ls", "-l", "--rm"]);
        assert!(a.interactive && a.tty && a.rm);
        assert_eq!(a.args, vec!["busybox", "ls", "-l", "--rm"]);
        assert!(a.label.is_empty());
    }

    #[test]
    fn body_maps_flags_as_docker() {
        let a = parse(&[
            "-d",
            "--name",
            "web",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--restart",
            "on-failure:3",
            "--read-only",
            "-u",
            "65534:65534",
            "--entrypoint",
            "/bin/sh",
            "--network",
            "none",
            "-w",
            "/tmp",
            "-v",
            "/h:/c:ro",
            "-v",
            "/anon",
            "busybox",
            "-c",
            "true",
        ]);
        let (b, name) = create_body(&a, None).unwrap();
        assert_eq!(name.as_deref(), Some("web"));
        let h = b.host_config.clone().unwrap();
        assert_eq!(h.memory, Some(64 << 20));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.restart_policy.unwrap().maximum_retry_count, Some(3));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.binds, Some(vec!["/h:/c:ro".to_string()]));
        assert_eq!(b.volumes, Some(vec!["/anon".to_string()]));
        assert_eq!(b.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(b.cmd, Some(vec!["-c".to_string(), "true".to_string()]));
        assert_eq!(b.attach_stdout, Some(false));
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["Volumes"], serde_json::json!({"/anon": {}}));
        assert!(create_body(&parse(&["--rm", "--restart", "always", "x"]), None).is_err());
        assert!(create_body(&parse(&["-m", "lots", "x"]), None).is_err());
    }

    #[test]
    fn statuses_follow_docker() {
        let code = |m: &str| {
            run_status(CliError::Daemon {
                status: 500,
                message: m.into(),
            })
            .exit_code()
        };
        assert_eq!(
            code("exec: \"nosuch\": executable file not found in $PATH"),
            127
        );
        assert_eq!(code("exec: \"/etc\": permission denied"), 126);
        assert_eq!(code("No such image: x"), 125);
    }
}
