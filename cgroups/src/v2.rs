//! cgroup v2: one directory, controllers enabled top-down through
//! cgroup.subtree_control (Documentation/admin-guide/cgroup-v2.rst).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxRdma, LinuxResources};

use crate::fs;
use crate::{Cgroup, CgroupError, Result};

/// Controllers a container cgroup gets when the host offers them.
pub(crate) const DEFAULT_CONTROLLERS: &[&str] =
    &["cpu", "memory", "pids", "io", "cpuset", "hugetlb"];

const DEFAULT_CFS_PERIOD: u64 = 100_000;

/// cpu.shares (2..=262144, default 1024) to cpu.weight (1..=10000, default 100), the
/// linear mapping runc, crun and systemd agree on. 0 (unset) stays 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (10..=1000) to io.weight (1..=10000). 0 (unset) stays 0.
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = weight.clamp(10, 1000);
    1 + (weight - 10) * 9999 / 990
}

/// "max" for negative (unlimited) values, as v2 files spell it.
pub(crate) fn limit_value(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// A hugepage size as used in file names ("2MB"); anything that could escape the
/// directory is refused.
pub(crate) fn page_size(size: &str) -> Result<&str> {
    if size.is_empty() || size.contains('/') || size.starts_with('.') {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.hugepageLimits.pageSize",
            reason: format!("{size:?}"),
        });
    }
    Ok(size)
}

/// Enables `wanted` (those the root offers) in cgroup.subtree_control of every level
/// from the root down to the parent of `leaf`; a controller's files only appear in a
/// child when its parent delegates it.
///
/// A level that already has processes cannot delegate ("no internal processes" rule,
/// EBUSY); that and other per-controller failures are logged, and the later write of
/// the controller's file reports the missing controller with its path.
pub(crate) fn enable_controllers(root: &Path, leaf: &Path, wanted: &[&str]) -> Result<()> {
    let Ok(rel) = leaf.strip_prefix(root) else {
        return Ok(());
    };
    let available = fs::read_opt(root, "cgroup.controllers")?.unwrap_or_default();
    let enable: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    if enable.is_empty() {
        return Ok(());
    }
    let mut level = root.to_path_buf();
    let mut comps = rel.components().peekable();
    loop {
        let current = fs::read_opt(&level, "cgroup.subtree_control")?.unwrap_or_default();
        let todo: Vec<&str> = enable
            .iter()
            .copied()
            .filter(|c| !current.split_whitespace().any(|a| a == *c))
            .collect();
        if !todo.is_empty() {
            let line = todo
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Err(e) = fs::write(&level, "cgroup.subtree_control", &line) {
                tracing::debug!(error = %e, "enabling controllers together failed, trying one by one");
                for c in &todo {
                    if let Err(e) = fs::write(&level, "cgroup.subtree_control", &format!("+{c}")) {
                        tracing::warn!(error = %e, controller = c, "cannot enable cgroup controller");
                    }
                }
            }
        }
        let Some(c) = comps.next() else { break };
        if comps.peek().is_none() {
            break;
        }
        level.push(c);
    }
    Ok(())
}

fn dir(cg: &Cgroup) -> Result<&Path> {
    cg.unified_dir().ok_or(CgroupError::NoCgroups)
}

/// Applies the resources on a v2 host. Device rules become a BPF device filter on
/// the directory (see `devices`), replacing the one attached before.
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    let dir = dir(cg)?;
    if let Some(cpu) = r.cpu() {
        set_cpu(dir, cpu)?;
    }
    if let Some(m) = r.memory() {
        set_memory(dir, m)?;
    }
    if let Some(p) = r.pids() {
        fs::write(dir, "pids.max", &crate::v1::pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        set_io(dir, b)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        for l in limits {
            let size = page_size(l.page_size())?;
            fs::write(dir, &format!("hugetlb.{size}.max"), &limit_value(l.limit()))?;
        }
    }
    if let Some(rules) = r.devices()
        && !rules.is_empty()
    {
        crate::devices::set_filter(dir, rules)?;
    }
    if let Some(n) = r.network()
        && (n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()))
    {
        tracing::warn!("network class and priorities are cgroup v1 features, ignored on cgroup v2");
    }
    if let Some(rdma) = r.rdma()
        && !rdma.is_empty()
    {
        set_rdma(dir, rdma)?;
    }
    if let Some(u) = r.unified() {
        set_unified(dir, u)?;
    }
    Ok(())
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(s) = cpu.shares().filter(|&s| s != 0) {
        fs::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        let p = period.unwrap_or(DEFAULT_CFS_PERIOD);
        fs::write(dir, "cpu.max", &format!("{q} {p}"))?;
    }
    if let Some(b) = cpu.burst() {
        fs::write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    if cpu.realtime_period().is_some_and(|p| p != 0)
        || cpu.realtime_runtime().is_some_and(|r| r != 0)
    {
        return Err(CgroupError::Unsupported(
            "realtime cpu limits (cpu.rt_*) do not exist on cgroup v2".into(),
        ));
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        fs::write(dir, "cpuset.cpus", c)?;
    }
    if let Some(m) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        fs::write(dir, "cpuset.mems", m)?;
    }
    Ok(())
}

/// OCI swap is memory+swap (the v1 memsw meaning); v2's memory.swap.max is swap alone.
/// Returns the memory.swap.max value, or None to leave it alone.
pub(crate) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let limit = limit.filter(|&v| v != 0);
    let swap = swap.filter(|&v| v != 0);
    match (limit, swap) {
        // Unlimited memory with swap unset: unlimited swap too, as on v1.
        (Some(-1), None) | (_, Some(-1)) => Ok(Some("max".into())),
        (_, None) => Ok(None),
        (None, Some(_)) | (Some(-1), Some(_)) => Err(CgroupError::InvalidValue {
            field: "linux.resources.memory.swap",
            reason: "a swap limit needs a memory limit".into(),
        }),
        (Some(l), Some(s)) if s < l || l < 0 => Err(CgroupError::InvalidValue {
            field: "linux.resources.memory.swap",
            reason: format!("memory+swap {s} is below the memory limit {l}"),
        }),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|&v| v != 0);
    if let Some(swap) = swap_max(limit, m.swap())? {
        if fs::exists(dir, "memory.swap.max") {
            fs::write(dir, "memory.swap.max", &swap)?;
        } else if swap != "max" {
            return Err(CgroupError::Unsupported(
                "swap limit requested but the kernel has no swap accounting".into(),
            ));
        }
    }
    if let Some(l) = limit {
        fs::write(dir, "memory.max", &limit_value(l))?;
    }
    if let Some(r) = m.reservation().filter(|&v| v != 0) {
        fs::write(dir, "memory.low", &limit_value(r))?;
    }
    if m.swappiness().is_some() {
        tracing::warn!("memory.swappiness is a cgroup v1 knob, ignored on cgroup v2");
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("disableOOMKiller is a cgroup v1 knob, ignored on cgroup v2");
    }
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        tracing::warn!(
            "memory.kernel and memory.kernelTCP are ignored: kernel memory limits are deprecated"
        );
    }
    Ok(())
}

fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // With the BFQ scheduler the weight file is io.bfq.weight and keeps the v1 scale.
    let bfq = fs::exists(dir, "io.bfq.weight");
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if bfq {
            fs::write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            fs::write(
                dir,
                "io.weight",
                &blkio_weight_to_io_weight(u64::from(w)).to_string(),
            )?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::warn!("blkio leafWeight does not exist on cgroup v2, ignored");
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            if bfq {
                fs::write(
                    dir,
                    "io.bfq.weight",
                    &format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            } else {
                let w = blkio_weight_to_io_weight(u64::from(w));
                fs::write(
                    dir,
                    "io.weight",
                    &format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            }
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, devs) in throttles {
        for d in devs.iter().flatten() {
            // v1 uses 0 to remove a limit; v2 spells that "max".
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            fs::write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}

/// rdma.max has the same syntax on v1 and v2: "DEVICE hca_handle=N hca_object=N".
pub(crate) fn set_rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    let mut devs: Vec<_> = rdma.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fs::write(dir, "rdma.max", &line)?;
    }
    Ok(())
}

/// The spec's `unified` map: file name to raw value, written as is. Sorted, so the
/// order of writes does not depend on the hash map.
fn set_unified(dir: &Path, u: &HashMap<String, String>) -> Result<()> {
    let mut entries: Vec<_> = u.iter().collect();
    entries.sort();
    for (key, _) in &entries {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.unified",
                reason: format!("key {key:?} is not a cgroup file name"),
            });
        }
    }
    for (key, value) in entries {
        fs::write(dir, key, value)?;
    }
    Ok(())
}

const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes cgroup.freeze and waits for cgroup.events to report the state: the write
/// only requests it, and tasks stop at their next return to user space.
pub(crate) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<()> {
    let dir = dir(cg)?;
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen { "1" } else { "0" };
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut delay = Duration::from_millis(1);
    loop {
        let events = fs::read(dir, "cgroup.events")?;
        let state = events
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .map(str::trim);
        // Kernels before 5.2 have no "frozen" key; the write is then all we can do.
        if state.is_none_or(|s| s == want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                let _ = fs::write(dir, "cgroup.freeze", "0");
            }
            return Err(CgroupError::Timeout {
                op: if frozen { "freeze" } else { "thaw" },
                path: dir.join("cgroup.events"),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

pub(crate) fn is_frozen(cg: &Cgroup) -> Result<bool> {
    let dir = dir(cg)?;
    Ok(fs::read_opt(dir, "cgroup.freeze")?.is_some_and(|s| s.trim() == "1"))
}
