//! `ps`: the container list with docker's columns and `--format` fields.

use bollard::query_parameters::ListContainersOptions;
use clap::Args;
use serde_json::{Map, Value, json};

use super::{filters, i64_at, print, str_at, to_value};
use crate::client::Engine;
use crate::error::Result;
use crate::table::{Format, render};
use crate::units::{ago, ellipsis, go_time_string, human_size, short_id};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, value_name = "int")]
    pub last: Option<i32>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

pub const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

const DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// `0.0.0.0:8080->80/tcp, 443/tcp`.
fn ports(c: &Value) -> String {
    let Some(list) = c.get("Ports").and_then(Value::as_array) else {
        return String::new();
    };
    list.iter()
        .map(|p| {
            let private = i64_at(p, "/PrivatePort");
            let typ = str_at(p, "/Type");
            match p.get("PublicPort").and_then(Value::as_i64) {
                Some(public) if public != 0 => {
                    format!("{}:{public}->{private}/{typ}", str_at(p, "/IP"))
                }
                _ => format!("{private}/{typ}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One container as docker's ps formatter exposes it to templates.
pub fn row(c: &Value, trunc: bool) -> Value {
    let id = str_at(c, "/Id");
    let names: Vec<String> = c
        .get("Names")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| n.trim_start_matches('/').to_string())
                // Truncated output hides link aliases (`other/alias`).
                .filter(|n| !trunc || !n.contains('/'))
                .collect()
        })
        .unwrap_or_default();
    let mut image = str_at(c, "/Image");
    if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    let command = str_at(c, "/Command");
    let command = if trunc {
        ellipsis(&command, 20)
    } else {
        command
    };
    let created = i64_at(c, "/Created");
    let labels: Map<String, Value> = c
        .get("Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut label_list: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    label_list.sort();
    let mounts: Vec<String> = c
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|m| {
                    let n = str_at(m, "/Name");
                    let n = if n.is_empty() {
                        str_at(m, "/Source")
                    } else {
                        n
                    };
                    if trunc { ellipsis(&n, 15) } else { n }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = c
        .get("Mounts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|m| str_at(m, "/Driver") == "local").count())
        .unwrap_or(0);
    let networks: Vec<String> = c
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let size_rw = i64_at(c, "/SizeRw");
    let size_root = i64_at(c, "/SizeRootFs");
    let mut size = human_size(size_rw as f64);
    if size_root > 0 {
        size = format!("{size} (virtual {})", human_size(size_root as f64));
    }
    json!({
        "ID": if trunc { short_id(&id) } else { id },
        "Image": image,
        "Command": serde_json::to_string(&command).unwrap_or_default(),
        "CreatedAt": go_time_string(created),
        "RunningFor": ago(created),
        "Ports": ports(c),
        "State": str_at(c, "/State"),
        "Status": str_at(c, "/Status"),
        "Size": size,
        "Names": names.join(","),
        "Labels": label_list.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        // docker 28 shows the image platform when the daemon reports one (API 1.46+).
        "Platform": c.pointer("/ImageManifestDescriptor/platform").cloned().unwrap_or(Value::Null),
        "LocalVolumes": local_volumes.to_string(),
        "_labels": Value::Object(labels),
    })
}

pub async fn ps(e: &Engine, a: PsArgs) -> Result<i32> {
    let f = filters(&a.filter)?;
    let limit = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n > 0)
    };
    let wants_size = a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"));
    let list = e
        .docker
        .list_containers(Some(ListContainersOptions {
            all: a.all || limit.is_some(),
            limit,
            size: wants_size,
            filters: (!f.is_empty()).then_some(f),
        }))
        .await?;
    let values: Vec<Value> = list.iter().map(to_value).collect();
    let trunc = !a.no_trunc;
    if a.quiet {
        let mut out = String::new();
        for c in &values {
            let id = str_at(c, "/Id");
            out.push_str(&if trunc { short_id(&id) } else { id });
            out.push('\n');
        }
        print(&out);
        return Ok(0);
    }
    let default = if a.size {
        format!("{DEFAULT}\t{{{{.Size}}}}")
    } else {
        DEFAULT.to_string()
    };
    let format = Format::parse(a.format.as_deref(), &default)?;
    let rows: Vec<Value> = values.iter().map(|c| row(c, trunc)).collect();
    print(&render(&format, HEADERS, &rows)?);
    Ok(0)
}
