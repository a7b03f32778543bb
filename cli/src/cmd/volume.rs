//! `volume create/ls/inspect/rm/prune`.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::container::{InspectArgs, Kind, inspect};
use super::{each, filters, print, println, to_value};
use crate::client::Engine;
use crate::error::{CliError, Result};
use crate::table::{Format, render};
use crate::units::human_size4;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local", value_name = "string")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    pub opt: Vec<String>,
    /// [VOLUME]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
}

const HEADERS: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Size", "SIZE"),
    ("Links", "LINKS"),
    ("CreatedAt", "CREATED AT"),
];

fn kv_map(items: &[String], what: &str) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None if what == "label" => m.insert(i.clone(), String::new()),
            None => {
                return Err(CliError::Usage(format!(
                    "invalid {what} {i:?}: expected key=value"
                )));
            }
        };
    }
    Ok(m)
}

/// One volume as docker's volume formatter shows it.
pub fn row(v: &Value) -> Value {
    let labels = v
        .get("Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut l: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    l.sort();
    let size = v.pointer("/UsageData/Size").and_then(Value::as_i64);
    let links = v.pointer("/UsageData/RefCount").and_then(Value::as_i64);
    json!({
        "Driver": v.get("Driver").cloned().unwrap_or(Value::Null),
        "Name": v.get("Name").cloned().unwrap_or(Value::Null),
        "Scope": v.get("Scope").cloned().unwrap_or(json!("local")),
        "Mountpoint": v.get("Mountpoint").cloned().unwrap_or(Value::Null),
        "Labels": l.join(","),
        "Size": match size { Some(s) if s >= 0 => human_size4(s as f64), _ => "N/A".into() },
        "Links": match links { Some(n) if n >= 0 => n.to_string(), _ => "N/A".into() },
        "CreatedAt": v.get("CreatedAt").cloned().unwrap_or(Value::Null),
        "_labels": Value::Object(labels),
    })
}

pub async fn volume(e: &Engine, c: VolumeCommand) -> Result<i32> {
    match c {
        VolumeCommand::Create(a) => {
            let v = e
                .docker
                .create_volume(VolumeCreateRequest {
                    name: a.name.clone(),
                    driver: Some(a.driver.clone()),
                    driver_opts: Some(kv_map(&a.opt, "option")?),
                    labels: Some(kv_map(&a.label, "label")?),
                    ..Default::default()
                })
                .await?;
            println(&v.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let f = filters(&a.filter)?;
            let r = e
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: (!f.is_empty()).then_some(f),
                }))
                .await?;
            let vols: Vec<Value> = r.volumes.unwrap_or_default().iter().map(to_value).collect();
            for w in r.warnings.unwrap_or_default() {
                eprintln!("WARNING: {w}");
            }
            if a.quiet {
                let mut out = String::new();
                for v in &vols {
                    out.push_str(v.get("Name").and_then(Value::as_str).unwrap_or(""));
                    out.push('\n');
                }
                print(&out);
                return Ok(0);
            }
            let format = Format::parse(a.format.as_deref(), "table {{.Driver}}\t{{.Name}}")?;
            let rows: Vec<Value> = vols.iter().map(row).collect();
            print(&render(&format, HEADERS, &rows)?);
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            inspect(
                e,
                InspectArgs {
                    format: a.format,
                    kind: None,
                    size: false,
                    names: a.names,
                },
                Kind::Volume,
            )
            .await
        }
        VolumeCommand::Rm(a) => {
            each(&a.names, |n| async move {
                e.docker
                    .remove_volume(&n, Some(RemoveVolumeOptions { force: a.force }))
                    .await?;
                Ok(Some(n))
            })
            .await
        }
        VolumeCommand::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !super::confirm(a.force, warning) {
                return Ok(0);
            }
            let mut f = filters(&a.filter)?;
            if a.all {
                f.insert("all".into(), vec!["true".into()]);
            }
            let r = e
                .docker
                .prune_volumes(Some(PruneVolumesOptions {
                    filters: (!f.is_empty()).then_some(f),
                }))
                .await?;
            print(&prune_report(
                "Deleted Volumes:",
                &r.volumes_deleted.unwrap_or_default(),
                r.space_reclaimed.unwrap_or(0),
            ));
            Ok(0)
        }
    }
}

/// docker's prune summary: the deleted items, then the space reclaimed.
pub fn prune_report(title: &str, deleted: &[String], reclaimed: i64) -> String {
    let mut out = String::new();
    if !deleted.is_empty() {
        out.push_str(title);
        out.push('\n');
        for d in deleted {
            out.push_str(d);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size4(reclaimed as f64)
    ));
    out
}
