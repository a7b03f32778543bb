//! Usage counters. Every missing file counts as zero: controllers differ between
//! hosts, and a half-populated report beats no report.

use crate::fs;
use crate::{Cgroup, Result, Stats};

/// cpuacct.stat counts in USER_HZ ticks, which the kernel ABI fixes at 100 per second
/// on every architecture Linux exports it for (see times(2)).
const NS_PER_USER_HZ_TICK: u64 = 1_000_000_000 / 100;

pub(crate) fn v1(cg: &Cgroup) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(dir) = cg.dir("cpuacct") {
        s.cpu_usage_total_ns = fs::read_u64(dir, "cpuacct.usage", 0)?;
        if let Some(t) = fs::read_opt(dir, "cpuacct.usage_percpu")? {
            s.cpu_per_cpu_ns = t
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
        }
        let st = fs::read_flat_keyed(dir, "cpuacct.stat")?;
        s.cpu_usage_user_ns = st
            .get("user")
            .copied()
            .unwrap_or(0)
            .saturating_mul(NS_PER_USER_HZ_TICK);
        s.cpu_usage_kernel_ns = st
            .get("system")
            .copied()
            .unwrap_or(0)
            .saturating_mul(NS_PER_USER_HZ_TICK);
    }
    if let Some(dir) = cg.dir("cpu") {
        let st = fs::read_flat_keyed(dir, "cpu.stat")?;
        s.cpu_throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu_throttled_time_ns = st.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(dir) = cg.dir("memory") {
        s.memory_usage = fs::read_u64(dir, "memory.usage_in_bytes", u64::MAX)?;
        s.memory_max_usage = fs::read_u64(dir, "memory.max_usage_in_bytes", u64::MAX)?;
        s.memory_limit = fs::read_u64(dir, "memory.limit_in_bytes", u64::MAX)?;
        s.memory_failcnt = fs::read_u64(dir, "memory.failcnt", 0)?;
        s.memory_raw = fs::read_flat_keyed(dir, "memory.stat")?;
        s.memory_cache = s.memory_raw.get("cache").copied().unwrap_or(0);
        s.oom_kills = fs::read_flat_keyed(dir, "memory.oom_control")?
            .get("oom_kill")
            .copied()
            .unwrap_or(0);
    }
    if let Some(dir) = cg.dir("pids") {
        s.pids_current = fs::read_u64(dir, "pids.current", 0)?;
        s.pids_limit = fs::read_u64(dir, "pids.max", 0)?;
    }
    Ok(s)
}

pub(crate) fn v2(cg: &Cgroup) -> Result<Stats> {
    let mut s = Stats::default();
    let Some(dir) = cg.unified_dir() else {
        return Ok(s);
    };
    let cpu = fs::read_flat_keyed(dir, "cpu.stat")?;
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0).saturating_mul(1000);
    s.cpu_usage_total_ns = us("usage_usec");
    s.cpu_usage_user_ns = us("user_usec");
    s.cpu_usage_kernel_ns = us("system_usec");
    s.cpu_throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
    s.cpu_throttled_time_ns = us("throttled_usec");
    s.memory_usage = fs::read_u64(dir, "memory.current", u64::MAX)?;
    // memory.peak exists since 5.19.
    s.memory_max_usage = fs::read_u64(dir, "memory.peak", u64::MAX)?;
    s.memory_limit = fs::read_u64(dir, "memory.max", u64::MAX)?;
    s.memory_raw = fs::read_flat_keyed(dir, "memory.stat")?;
    s.memory_cache = s.memory_raw.get("file").copied().unwrap_or(0);
    let events = fs::read_flat_keyed(dir, "memory.events")?;
    // v2 has no failcnt; "max" counts the times usage hit memory.max, the closest thing.
    s.memory_failcnt = events.get("max").copied().unwrap_or(0);
    s.oom_kills = events.get("oom_kill").copied().unwrap_or(0);
    s.pids_current = fs::read_u64(dir, "pids.current", 0)?;
    s.pids_limit = fs::read_u64(dir, "pids.max", 0)?;
    Ok(s)
}

pub(crate) fn oom_kills(cg: &Cgroup) -> Result<u64> {
    let found = if cg.is_v2() {
        match cg.unified_dir() {
            Some(dir) => fs::read_flat_keyed(dir, "memory.events")?
                .get("oom_kill")
                .copied(),
            None => None,
        }
    } else {
        match cg.dir("memory") {
            Some(dir) => fs::read_flat_keyed(dir, "memory.oom_control")?
                .get("oom_kill")
                .copied(),
            None => None,
        }
    };
    Ok(found.unwrap_or(0))
}
