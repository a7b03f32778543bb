//! `exec`: create the exec, start it hijacked (or detached with `-d`), resize a
//! terminal, and exit with the process's status from the exec's inspect.

use bollard::exec::{CreateExecOptions, StartExecOptions};
use clap::Args;
use serde_json::json;

use super::run::{Outcome, Session};
use crate::client::Engine;
use crate::error::{CliError, Result};
use crate::tty;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "string")]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long, value_name = "string")]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(required = true, num_args = 2.., trailing_var_arg = true, value_name = "CONTAINER COMMAND [ARG...]")]
    pub args: Vec<String>,
}

pub async fn exec(e: &Engine, a: ExecArgs) -> Result<i32> {
    let container = &a.args[0];
    let cmd = a.args[1..].to_vec();
    if a.tty && a.interactive && !a.detach && !tty::stdin_is_terminal() {
        return Err(CliError::Other("the input device is not a TTY".into()));
    }
    // docker checks the container first, so a missing one says so plainly.
    e.docker.inspect_container(container, None).await?;
    let env: Vec<String> = a
        .env
        .iter()
        .filter_map(|v| {
            if v.contains('=') {
                Some(v.clone())
            } else {
                std::env::var(v).ok().map(|x| format!("{v}={x}"))
            }
        })
        .collect();
    let attach = !a.detach;
    let created = e
        .docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(attach && a.interactive),
                attach_stdout: Some(attach),
                attach_stderr: Some(attach),
                tty: Some(a.tty),
                env: (!env.is_empty()).then_some(env),
                cmd: Some(cmd),
                privileged: Some(a.privileged),
                user: a.user.clone(),
                working_dir: a.workdir.clone(),
                detach_keys: a.detach_keys.clone(),
            },
        )
        .await?;
    let id = created.id;
    if a.detach {
        e.docker
            .start_exec(
                &id,
                Some(StartExecOptions {
                    detach: true,
                    tty: a.tty,
                    output_capacity: None,
                }),
            )
            .await?;
        return Ok(0);
    }
    let streams = e
        .hijack(
            &format!("/exec/{id}/start"),
            Some(&json!({ "Detach": false, "Tty": a.tty })),
        )
        .await?;
    let session = Session {
        id: id.clone(),
        tty: a.tty,
        stdin: a.interactive,
        detach_keys: a.detach_keys.clone(),
        sig_proxy: false,
        exec: true,
    };
    let raw = session.raw_mode()?;
    let outcome = session.pump(e, streams).await;
    drop(raw);
    if outcome? == Outcome::Detached {
        return Ok(0);
    }
    let info = e.docker.inspect_exec(&id).await?;
    Ok(info.exit_code.unwrap_or(0) as i32)
}
