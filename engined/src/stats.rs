//! `GET /containers/{id}/stats`: containerd's task metrics (the cgroup counters the
//! shim reads, `io.containerd.cgroups.v1.Metrics` or `.v2.Metrics`) in the shape
//! dockerd sends, with the host's CPU time next to them so the CLI can work out
//! percentages.

use prost::Message;
use serde_json::{Value, json};

/// The parts of containerd/cgroups' v1 `Metrics` that `docker stats` shows
/// (field numbers as in stats/v1/metrics.proto; the rest is skipped).
pub mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub pids: Option<PidsStat>,
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "5")]
        pub blkio: Option<BlkIoStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PidsStat {
        #[prost(uint64, tag = "1")]
        pub current: u64,
        #[prost(uint64, tag = "2")]
        pub limit: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
        #[prost(message, optional, tag = "2")]
        pub throttling: Option<Throttle>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        #[prost(uint64, tag = "1")]
        pub total: u64,
        #[prost(uint64, tag = "2")]
        pub kernel: u64,
        #[prost(uint64, tag = "3")]
        pub user: u64,
        #[prost(uint64, repeated, tag = "4")]
        pub per_cpu: Vec<u64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Throttle {
        #[prost(uint64, tag = "1")]
        pub periods: u64,
        #[prost(uint64, tag = "2")]
        pub throttled_periods: u64,
        #[prost(uint64, tag = "3")]
        pub throttled_time: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "1")]
        pub cache: u64,
        #[prost(uint64, tag = "2")]
        pub rss: u64,
        #[prost(uint64, tag = "4")]
        pub mapped_file: u64,
        #[prost(uint64, tag = "11")]
        pub inactive_anon: u64,
        #[prost(uint64, tag = "12")]
        pub active_anon: u64,
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "14")]
        pub active_file: u64,
        #[prost(uint64, tag = "16")]
        pub hierarchical_memory_limit: u64,
        #[prost(uint64, tag = "18")]
        pub total_cache: u64,
        #[prost(uint64, tag = "19")]
        pub total_rss: u64,
        #[prost(uint64, tag = "30")]
        pub total_inactive_file: u64,
        #[prost(uint64, tag = "31")]
        pub total_active_file: u64,
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "1")]
        pub limit: u64,
        #[prost(uint64, tag = "2")]
        pub usage: u64,
        #[prost(uint64, tag = "3")]
        pub max: u64,
        #[prost(uint64, tag = "4")]
        pub failcnt: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoStat {
        #[prost(message, repeated, tag = "1")]
        pub io_service_bytes_recursive: Vec<BlkIoEntry>,
        #[prost(message, repeated, tag = "2")]
        pub io_serviced_recursive: Vec<BlkIoEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlkIoEntry {
        #[prost(string, tag = "1")]
        pub op: String,
        #[prost(uint64, tag = "3")]
        pub major: u64,
        #[prost(uint64, tag = "4")]
        pub minor: u64,
        #[prost(uint64, tag = "5")]
        pub value: u64,
    }
}

/// The parts of containerd/cgroups' v2 `Metrics` that `docker stats` shows.
pub mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "1")]
        pub pids: Option<super::v1::PidsStat>,
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
        #[prost(message, optional, tag = "6")]
        pub io: Option<IoStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
        #[prost(uint64, tag = "2")]
        pub user_usec: u64,
        #[prost(uint64, tag = "3")]
        pub system_usec: u64,
        #[prost(uint64, tag = "4")]
        pub nr_periods: u64,
        #[prost(uint64, tag = "5")]
        pub nr_throttled: u64,
        #[prost(uint64, tag = "6")]
        pub throttled_usec: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "1")]
        pub anon: u64,
        #[prost(uint64, tag = "2")]
        pub file: u64,
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "14")]
        pub active_file: u64,
        #[prost(uint64, tag = "32")]
        pub usage: u64,
        #[prost(uint64, tag = "33")]
        pub usage_limit: u64,
        #[prost(uint64, tag = "36")]
        pub max_usage: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoStat {
        #[prost(message, repeated, tag = "1")]
        pub usage: Vec<IoEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IoEntry {
        #[prost(uint64, tag = "1")]
        pub major: u64,
        #[prost(uint64, tag = "2")]
        pub minor: u64,
        #[prost(uint64, tag = "3")]
        pub rbytes: u64,
        #[prost(uint64, tag = "4")]
        pub wbytes: u64,
        #[prost(uint64, tag = "5")]
        pub rios: u64,
        #[prost(uint64, tag = "6")]
        pub wios: u64,
    }
}

pub const V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

/// The host's side of a sample: its CPU time in ns (all CPUs) and CPU count, from
/// /proc/stat, and its memory, which stands in for "no limit".
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    pub system_cpu_ns: u64,
    pub online_cpus: u64,
    pub mem_total: u64,
}

impl Host {
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // USER_HZ is 100 on every Linux ABI that matters here.
        const NS_PER_TICK: u64 = 10_000_000;
        let mut h = Host::default();
        for line in stat.lines() {
            if let Some(rest) = line.strip_prefix("cpu ") {
                let ticks: u64 = rest
                    .split_whitespace()
                    .take(8)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum();
                h.system_cpu_ns = ticks.saturating_mul(NS_PER_TICK);
            } else if line.starts_with("cpu") {
                h.online_cpus += 1;
            }
        }
        h.mem_total = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        h
    }
}

/// One sample in dockerd's JSON shape, without the "pre" half.
pub fn sample(type_url: &str, data: &[u8], host: Host) -> Value {
    match type_url {
        V2_TYPE => match v2::Metrics::decode(data) {
            Ok(m) => from_v2(&m, host),
            Err(_) => empty(host),
        },
        _ => match v1::Metrics::decode(data) {
            Ok(m) => from_v1(&m, host),
            Err(_) => empty(host),
        },
    }
}

fn limit_or_host(limit: u64, host: Host) -> u64 {
    if limit == 0 || (host.mem_total > 0 && limit > host.mem_total) {
        host.mem_total
    } else {
        limit
    }
}

fn from_v1(m: &v1::Metrics, host: Host) -> Value {
    let usage = m
        .cpu
        .as_ref()
        .and_then(|c| c.usage.clone())
        .unwrap_or_default();
    let throttle = m
        .cpu
        .as_ref()
        .and_then(|c| c.throttling.clone())
        .unwrap_or_default();
    let mem = m.memory.clone().unwrap_or_default();
    let mem_usage = mem.usage.clone().unwrap_or_default();
    let pids = m.pids.clone().unwrap_or_default();
    let blk = m.blkio.clone().unwrap_or_default();
    let blk_entries = |v: &[v1::BlkIoEntry]| -> Value {
        v.iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect()
    };
    json!({
        "pids_stats": pids_json(&pids),
        "blkio_stats": {
            "io_service_bytes_recursive": blk_entries(&blk.io_service_bytes_recursive),
            "io_serviced_recursive": blk_entries(&blk.io_serviced_recursive),
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": usage.total,
                "percpu_usage": usage.per_cpu,
                "usage_in_kernelmode": usage.kernel,
                "usage_in_usermode": usage.user,
            },
            "system_cpu_usage": host.system_cpu_ns,
            "online_cpus": host.online_cpus,
            "throttling_data": {
                "periods": throttle.periods,
                "throttled_periods": throttle.throttled_periods,
                "throttled_time": throttle.throttled_time,
            },
        },
        "memory_stats": {
            "usage": mem_usage.usage,
            "max_usage": mem_usage.max,
            "failcnt": mem_usage.failcnt,
            "limit": limit_or_host(mem_usage.limit, host),
            "stats": {
                "cache": mem.cache, "rss": mem.rss, "mapped_file": mem.mapped_file,
                "active_anon": mem.active_anon, "inactive_anon": mem.inactive_anon,
                "active_file": mem.active_file, "inactive_file": mem.inactive_file,
                "hierarchical_memory_limit": mem.hierarchical_memory_limit,
                "total_cache": mem.total_cache, "total_rss": mem.total_rss,
                "total_active_file": mem.total_active_file,
                "total_inactive_file": mem.total_inactive_file,
            },
        },
    })
}

fn from_v2(m: &v2::Metrics, host: Host) -> Value {
    let cpu = m.cpu.clone().unwrap_or_default();
    let mem = m.memory.clone().unwrap_or_default();
    let pids = m.pids.clone().unwrap_or_default();
    let io = m.io.clone().unwrap_or_default();
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for e in &io.usage {
        bytes.push(json!({"major": e.major, "minor": e.minor, "op": "read", "value": e.rbytes}));
        bytes.push(json!({"major": e.major, "minor": e.minor, "op": "write", "value": e.wbytes}));
        ios.push(json!({"major": e.major, "minor": e.minor, "op": "read", "value": e.rios}));
        ios.push(json!({"major": e.major, "minor": e.minor, "op": "write", "value": e.wios}));
    }
    json!({
        "pids_stats": pids_json(&pids),
        "blkio_stats": {
            "io_service_bytes_recursive": bytes, "io_serviced_recursive": ios,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu.usage_usec * 1000,
                "usage_in_kernelmode": cpu.system_usec * 1000,
                "usage_in_usermode": cpu.user_usec * 1000,
            },
            "system_cpu_usage": host.system_cpu_ns,
            "online_cpus": host.online_cpus,
            "throttling_data": {
                "periods": cpu.nr_periods,
                "throttled_periods": cpu.nr_throttled,
                "throttled_time": cpu.throttled_usec * 1000,
            },
        },
        "memory_stats": {
            "usage": mem.usage,
            "max_usage": mem.max_usage,
            "limit": limit_or_host(mem.usage_limit, host),
            "stats": {
                "anon": mem.anon, "file": mem.file,
                "active_file": mem.active_file, "inactive_file": mem.inactive_file,
            },
        },
    })
}

fn pids_json(p: &v1::PidsStat) -> Value {
    if p.limit == 0 {
        json!({ "current": p.current })
    } else {
        json!({ "current": p.current, "limit": p.limit })
    }
}

/// What a stopped container reports: zeros, as dockerd sends for one.
pub fn empty(host: Host) -> Value {
    json!({
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        },
        "memory_stats": {},
        "online_cpus": host.online_cpus,
    })
}

/// A full stats object: this sample, the previous one as `precpu_stats`, the times.
pub fn compose(
    now: &Value,
    pre: Option<&Value>,
    read: &str,
    preread: &str,
    name: &str,
    id: &str,
) -> Value {
    let mut v = now.clone();
    let pre_cpu = pre.map(|p| p["cpu_stats"].clone()).unwrap_or_else(|| {
        json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        })
    });
    v["precpu_stats"] = pre_cpu;
    v["read"] = json!(read);
    v["preread"] = json!(preread);
    v["name"] = json!(format!("/{name}"));
    v["id"] = json!(id);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_metrics_become_dockers_fields() {
        let m = v1::Metrics {
            pids: Some(v1::PidsStat {
                current: 3,
                limit: 50,
            }),
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage {
                    total: 1_000,
                    kernel: 400,
                    user: 600,
                    per_cpu: vec![500, 500],
                }),
                throttling: None,
            }),
            memory: Some(v1::MemoryStat {
                total_inactive_file: 4096,
                usage: Some(v1::MemoryEntry {
                    limit: 64 << 20,
                    usage: 1 << 20,
                    max: 2 << 20,
                    failcnt: 0,
                }),
                ..Default::default()
            }),
            blkio: None,
        };
        let host = Host {
            system_cpu_ns: 10_000,
            online_cpus: 2,
            mem_total: 1 << 30,
        };
        let v = sample(V1_TYPE, &m.encode_to_vec(), host);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(v["pids_stats"]["limit"], 50);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 1000);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["memory_stats"]["usage"], 1 << 20);
        assert_eq!(v["memory_stats"]["limit"], 64 << 20);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 4096);
        let full = compose(&v, None, "r", "p", "web", "abc");
        assert_eq!(full["name"], "/web");
        assert_eq!(full["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    }

    #[test]
    fn no_limit_shows_the_hosts_memory() {
        let m = v1::Metrics {
            memory: Some(v1::MemoryStat {
                usage: Some(v1::MemoryEntry {
                    limit: 9_223_372_036_854_771_712,
                    usage: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let host = Host {
            mem_total: 8 << 30,
            ..Default::default()
        };
        let v = sample(V1_TYPE, &m.encode_to_vec(), host);
        assert_eq!(v["memory_stats"]["limit"], 8u64 << 30);
    }
}
