//! The full statistics document of `runc events --stats` (runc's `types.Stats`), with
//! its field names and its omit-when-zero rules, read from cgroupfs. Missing files
//! count as zero, as in [`crate::Stats`].
use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::fs;
use crate::{Cgroup, Result};

/// cpuacct.stat counts USER_HZ ticks, fixed at 100 per second by the kernel ABI.
const NS_PER_TICK: u64 = 10_000_000;

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: BTreeMap<String, u64>,
    /// Always null: runc fills it only from a network namespace it manages itself.
    pub network_interfaces: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// 0 (left out) when unlimited.
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

pub(crate) fn read(cg: &Cgroup) -> Result<EventStats> {
    if cg.is_v2() { v2(cg) } else { v1(cg) }
}

fn v1(cg: &Cgroup) -> Result<EventStats> {
    let mut s = EventStats::default();
    if let Some(dir) = cg.dir("cpuacct") {
        let u = &mut s.cpu.usage;
        u.total = fs::read_u64(dir, "cpuacct.usage", 0)?;
        u.percpu = numbers(fs::read_opt(dir, "cpuacct.usage_percpu")?.as_deref());
        // "cpu user system" then one line per cpu, in nanoseconds.
        if let Some(all) = fs::read_opt(dir, "cpuacct.usage_all")? {
            for line in all.lines().skip(1) {
                let f: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if let [_, user, system] = f[..] {
                    u.percpu_user.push(user);
                    u.percpu_kernel.push(system);
                }
            }
        }
        let st = fs::read_flat_keyed(dir, "cpuacct.stat")?;
        u.user = st
            .get("user")
            .copied()
            .unwrap_or(0)
            .saturating_mul(NS_PER_TICK);
        u.kernel = st
            .get("system")
            .copied()
            .unwrap_or(0)
            .saturating_mul(NS_PER_TICK);
    }
    if let Some(dir) = cg.dir("cpu") {
        let st = fs::read_flat_keyed(dir, "cpu.stat")?;
        s.cpu.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(dir) = cg.dir("cpuset") {
        s.cpuset = cpuset(dir, "cpuset.cpus", "cpuset.mems")?;
        let c = &mut s.cpuset;
        let n = |f: &str| fs::read_u64(dir, f, 0);
        c.cpu_exclusive = n("cpuset.cpu_exclusive")?;
        c.mem_hardwall = n("cpuset.mem_hardwall")?;
        c.mem_exclusive = n("cpuset.mem_exclusive")?;
        c.memory_migrate = n("cpuset.memory_migrate")?;
        c.memory_spread_page = n("cpuset.memory_spread_page")?;
        c.memory_spread_slab = n("cpuset.memory_spread_slab")?;
        c.memory_pressure = n("cpuset.memory_pressure")?;
        c.sched_load_balance = n("cpuset.sched_load_balance")?;
        c.sched_relax_domain_level = fs::read_opt(dir, "cpuset.sched_relax_domain_level")?
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
    }
    if let Some(dir) = cg.dir("memory") {
        let entry = |prefix: &str| -> Result<MemoryEntry> {
            Ok(MemoryEntry {
                limit: fs::read_u64(dir, &format!("{prefix}.limit_in_bytes"), u64::MAX)?,
                usage: fs::read_u64(dir, &format!("{prefix}.usage_in_bytes"), 0)?,
                max: fs::read_u64(dir, &format!("{prefix}.max_usage_in_bytes"), 0)?,
                failcnt: fs::read_u64(dir, &format!("{prefix}.failcnt"), 0)?,
            })
        };
        let m = &mut s.memory;
        m.usage = entry("memory")?;
        m.swap = entry("memory.memsw")?;
        m.kernel = entry("memory.kmem")?;
        m.kernel_tcp = entry("memory.kmem.tcp")?;
        m.raw = fs::read_flat_keyed(dir, "memory.stat")?;
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
    }
    if let Some(dir) = cg.dir("pids") {
        s.pids = Pids {
            current: fs::read_u64(dir, "pids.current", 0)?,
            limit: fs::read_u64(dir, "pids.max", 0)?,
        };
    }
    if let Some(dir) = cg.dir("blkio") {
        // BFQ's counters when the scheduler is BFQ, else the throttle layer's (which
        // count every I/O whatever the scheduler).
        for prefix in ["blkio.bfq", "blkio.throttle"] {
            let bytes = blkio_entries(fs::read_opt(
                dir,
                &format!("{prefix}.io_service_bytes_recursive"),
            )?);
            let ios = blkio_entries(fs::read_opt(
                dir,
                &format!("{prefix}.io_serviced_recursive"),
            )?);
            if !bytes.is_empty() || !ios.is_empty() {
                s.blkio.io_service_bytes_recursive = bytes;
                s.blkio.io_serviced_recursive = ios;
                break;
            }
        }
    }
    if let Some(dir) = cg.dir("hugetlb") {
        for size in hugepage_sizes() {
            let n = |f: &str| fs::read_u64(dir, &format!("hugetlb.{size}.{f}"), u64::MAX);
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: n("usage_in_bytes")?,
                    max: n("max_usage_in_bytes")?,
                    failcnt: n("failcnt")?,
                },
            );
        }
    }
    Ok(s)
}

fn v2(cg: &Cgroup) -> Result<EventStats> {
    let mut s = EventStats::default();
    let Some(dir) = cg.unified_dir() else {
        return Ok(s);
    };
    let cpu = fs::read_flat_keyed(dir, "cpu.stat")?;
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0).saturating_mul(1000);
    s.cpu.usage.total = us("usage_usec");
    s.cpu.usage.user = us("user_usec");
    s.cpu.usage.kernel = us("system_usec");
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    s.cpuset = cpuset(dir, "cpuset.cpus.effective", "cpuset.mems.effective")?;
    let events = fs::read_flat_keyed(dir, "memory.events")?;
    let m = &mut s.memory;
    m.usage = MemoryEntry {
        limit: fs::read_u64(dir, "memory.max", u64::MAX)?,
        usage: fs::read_u64(dir, "memory.current", 0)?,
        max: fs::read_u64(dir, "memory.peak", 0)?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // As runc: v2 "swap" is memory plus swap, to compare with v1's memsw.
    let swap_limit = fs::read_u64(dir, "memory.swap.max", u64::MAX)?;
    m.swap = MemoryEntry {
        limit: if swap_limit == u64::MAX || m.usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit.saturating_add(m.usage.limit)
        },
        usage: fs::read_u64(dir, "memory.swap.current", 0)?.saturating_add(m.usage.usage),
        max: 0,
        failcnt: 0,
    };
    m.raw = fs::read_flat_keyed(dir, "memory.stat")?;
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    s.pids = Pids {
        current: fs::read_u64(dir, "pids.current", 0)?,
        limit: fs::read_u64(dir, "pids.max", 0)?,
    };
    if let Some(io) = fs::read_opt(dir, "io.stat")? {
        // "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=.."
        for line in io.lines() {
            let mut it = line.split_whitespace();
            let Some((major, minor)) = it.next().and_then(dev_numbers) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse() else { continue };
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.into(),
                    value,
                });
            }
        }
    }
    for size in hugepage_sizes() {
        if !fs::exists(dir, &format!("hugetlb.{size}.current")) {
            continue;
        }
        let ev = fs::read_flat_keyed(dir, &format!("hugetlb.{size}.events"))?;
        s.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage: fs::read_u64(dir, &format!("hugetlb.{size}.current"), 0)?,
                max: 0,
                failcnt: ev.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(s)
}

fn cpuset(dir: &Path, cpus: &str, mems: &str) -> Result<CpuSet> {
    Ok(CpuSet {
        cpus: ranges(fs::read_opt(dir, cpus)?.as_deref().unwrap_or("")),
        mems: ranges(fs::read_opt(dir, mems)?.as_deref().unwrap_or("")),
        ..CpuSet::default()
    })
}

fn numbers(text: Option<&str>) -> Vec<u64> {
    text.unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// "0-2,5" -> [0, 1, 2, 5]; unparsable parts are skipped.
fn ranges(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn dev_numbers(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// v1 blkio lines: "MAJ:MIN Op value" (the "Total" line is skipped, as runc does).
fn blkio_entries(text: Option<String>) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.as_deref().unwrap_or("").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some((major, minor)) = f.first().and_then(|d| dev_numbers(d)) else {
            continue;
        };
        let (op, value) = match f[..] {
            [_, op, v] => (op.to_string(), v),
            [_, v] => (String::new(), v),
            _ => continue,
        };
        let Ok(value) = value.parse() else { continue };
        out.push(BlkioEntry {
            major,
            minor,
            op,
            value,
        });
    }
    out
}

/// Huge page sizes as cgroup file names spell them ("2MB", "1GB"), from sysfs.
fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_blkio() {
        assert_eq!(ranges("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(ranges("").is_empty());
        let e = blkio_entries(Some("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n".into()));
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].major, e[0].op.as_str(), e[0].value),
            (8, "Read", 4096)
        );
    }

    #[test]
    fn serializes_with_runc_names_and_omissions() {
        let v = serde_json::to_value(EventStats::default()).unwrap();
        assert_eq!(v["cpu"]["throttling"], serde_json::json!({}));
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert_eq!(
            v["memory"]["kernelTCP"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(v["pids"], serde_json::json!({}));
        assert!(v["network_interfaces"].is_null());
        assert_eq!(v["blkio"], serde_json::json!({}));
    }
}
