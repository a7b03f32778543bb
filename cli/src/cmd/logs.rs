//! `logs`: the container's json-file log through the daemon, demultiplexed by
//! the container's `Tty` setting as docker does.

use clap::Args;
use hyper::Method;

use super::{str_at, to_value};
use crate::client::{Engine, query};
use crate::error::{CliError, Result};
use crate::streams::{Stdio, copy_body};
use crate::units::parse_timestamp;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all", value_name = "string")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    pub container: String,
}

pub async fn logs(e: &Engine, a: LogsArgs) -> Result<i32> {
    let c = to_value(&e.docker.inspect_container(&a.container, None).await?);
    let id = str_at(&c, "/Id");
    let tty = c
        .pointer("/Config/Tty")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let since = a
        .since
        .as_deref()
        .map(|s| {
            parse_timestamp(s)
                .ok_or_else(|| CliError::Usage(format!("invalid value for \"since\": {s}")))
        })
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| {
            parse_timestamp(s)
                .ok_or_else(|| CliError::Usage(format!("invalid value for \"until\": {s}")))
        })
        .transpose()?;
    // Keys in alphabetical order, as docker sends them.
    let mut q: Vec<(&str, &str)> = Vec::new();
    if a.follow {
        q.push(("follow", "1"));
    }
    if let Some(s) = since.as_deref() {
        q.push(("since", s));
    }
    q.push(("stderr", "1"));
    q.push(("stdout", "1"));
    q.push(("tail", a.tail.as_str()));
    if a.timestamps {
        q.push(("timestamps", "1"));
    }
    if let Some(u) = until.as_deref() {
        q.push(("until", u));
    }
    let res = e
        .request_json(
            Method::GET,
            &format!("/containers/{id}/logs{}", query(&q)),
            None,
        )
        .await?;
    copy_body(res.into_body(), tty, &mut Stdio).await?;
    Ok(0)
}
