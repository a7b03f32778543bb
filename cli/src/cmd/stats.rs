//! `stats`: CPU, memory, network, block I/O and pids per container, computed
//! from the daemon's samples with docker's formulas; `--no-stream` prints one
//! table, otherwise the table is redrawn as new samples come.

use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{i64_at, print, str_at, to_value};
use crate::client::Engine;
use crate::error::{CliError, Result};
use crate::table::{Format, render};
use crate::units::{bytes_size, human_size, short_id};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const DEFAULT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn f64_at(v: &Value, p: &str) -> f64 {
    v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0)
}

/// One sample as docker's stats formatter shows it.
pub fn row(s: &Value, container: &str, trunc: bool) -> Value {
    let cpu_delta = f64_at(s, "/cpu_stats/cpu_usage/total_usage")
        - f64_at(s, "/precpu_stats/cpu_usage/total_usage");
    let sys_delta =
        f64_at(s, "/cpu_stats/system_cpu_usage") - f64_at(s, "/precpu_stats/system_cpu_usage");
    let mut cpus = f64_at(s, "/cpu_stats/online_cpus");
    if cpus == 0.0 {
        cpus = s
            .pointer("/cpu_stats/cpu_usage/percpu_usage")
            .and_then(Value::as_array)
            .map_or(0, Vec::len) as f64;
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let usage = f64_at(s, "/memory_stats/usage");
    // The page cache is not the container's: cgroup v1 reports it as
    // total_inactive_file, v2 as inactive_file (docker's calculateMemUsageUnixNoCache).
    let inactive = s
        .pointer("/memory_stats/stats/total_inactive_file")
        .or_else(|| s.pointer("/memory_stats/stats/inactive_file"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let mem = if inactive < usage {
        usage - inactive
    } else {
        usage
    };
    let limit = f64_at(s, "/memory_stats/limit");
    let mem_perc = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s.get("networks").and_then(Value::as_object) {
        for n in nets.values() {
            rx += f64_at(n, "/rx_bytes");
            tx += f64_at(n, "/tx_bytes");
        }
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    if let Some(list) = s
        .pointer("/blkio_stats/io_service_bytes_recursive")
        .and_then(Value::as_array)
    {
        for e in list {
            match str_at(e, "/op").to_ascii_lowercase().as_str() {
                "read" => rd += f64_at(e, "/value"),
                "write" => wr += f64_at(e, "/value"),
                _ => {}
            }
        }
    }
    let id = str_at(s, "/id");
    let name = str_at(s, "/name");
    json!({
        "ID": if trunc { short_id(&id) } else { id.clone() },
        "Container": container,
        "Name": name.trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        "MemPerc": format!("{mem_perc:.2}%"),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "PIDs": i64_at(s, "/pids_stats/current").to_string(),
    })
}

async fn sample(e: &Engine, name: &str) -> Result<Value> {
    let mut s = e.docker.stats(
        name,
        Some(StatsOptions {
            stream: false,
            one_shot: false,
        }),
    );
    match s.next().await {
        Some(r) => Ok(to_value(&r?)),
        None => Err(CliError::Other(format!("no stats for {name}"))),
    }
}

pub async fn stats(e: &Engine, a: StatsArgs) -> Result<i32> {
    let format = Format::parse(a.format.as_deref(), DEFAULT)?;
    let trunc = !a.no_trunc;
    let named = !a.containers.is_empty();
    let terminal = crate::tty::stdout_is_terminal();
    loop {
        let names: Vec<String> = if named {
            a.containers.clone()
        } else {
            e.docker
                .list_containers(Some(ListContainersOptions {
                    all: a.all,
                    ..Default::default()
                }))
                .await?
                .iter()
                .map(|c| short_id(c.id.as_deref().unwrap_or("")))
                .collect()
        };
        let samples = futures_util::future::join_all(names.iter().map(|n| sample(e, n))).await;
        let mut rows = Vec::new();
        for (n, s) in names.iter().zip(samples) {
            match s {
                Ok(s) => rows.push(row(&s, n, trunc)),
                // A named container that is gone is an error, as in docker.
                Err(err) if named => return Err(err),
                Err(_) => {}
            }
        }
        let table = render(&format, HEADERS, &rows)?;
        if a.no_stream {
            print(&table);
            return Ok(0);
        }
        if terminal {
            print(&format!("\x1b[2J\x1b[H{table}"));
        } else {
            print(&table);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_docker() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3_145_728, "limit": 67_108_864, "stats": {"total_inactive_file": 1_048_576}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 0}]},
            "pids_stats": {"current": 3}
        });
        let r = row(&s, "web", true);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 64MiB");
        assert_eq!(r["MemPerc"], "3.12%");
        assert_eq!(r["NetIO"], "0B / 0B");
        assert_eq!(r["BlockIO"], "4.1kB / 0B");
        assert_eq!(r["PIDs"], "3");
    }
}
