//! cgroup v1: one directory per hierarchy, one file per knob
//! (Documentation/admin-guide/cgroup-v1/).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources,
};

use crate::fs::{self, io_err};
use crate::{Cgroup, CgroupError, Result};

fn missing(controller: &str, what: &str) -> CgroupError {
    CgroupError::Unsupported(format!(
        "{what} requested but the {controller} cgroup controller is not mounted"
    ))
}

impl Cgroup {
    fn require(&self, controller: &str, what: &str) -> Result<&Path> {
        self.dir(controller)
            .ok_or_else(|| missing(controller, what))
    }
}

/// mkdir -p for the cpuset hierarchy, copying cpuset.cpus/mems from the parent into
/// every level that has them empty: a v1 cpuset starts with no CPUs and no memory
/// nodes, and attaching a task to it then fails with ENOSPC.
pub(crate) fn create_cpuset(mount: Option<&Path>, dir: &Path) -> Result<()> {
    // Levels from the leaf up to (not including) the first one that is the mount point
    // or an existing level with both values set.
    let mut levels: Vec<PathBuf> = Vec::new();
    let mut cur = dir.to_path_buf();
    loop {
        if mount == Some(cur.as_path()) || (cur.is_dir() && cpuset_ready(&cur)?) {
            break;
        }
        levels.push(cur.clone());
        match cur.parent() {
            Some(p) if mount.is_some() || p.join("cgroup.procs").exists() || !cur.is_dir() => {
                cur = p.to_path_buf();
            }
            _ => break,
        }
    }
    for level in levels.iter().rev() {
        match std::fs::create_dir(level) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("mkdir", level, e)),
        }
        let Some(parent) = level.parent() else {
            continue;
        };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = fs::read_opt(level, file)?.unwrap_or_default();
            if own.trim().is_empty() {
                let from = fs::read_opt(parent, file)?.unwrap_or_default();
                if !from.trim().is_empty() {
                    fs::write(level, file, from.trim())?;
                }
            }
        }
    }
    Ok(())
}

fn cpuset_ready(dir: &Path) -> Result<bool> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read_opt(dir, file)?
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let Some(cpu) = r.cpu() {
        set_cpuset(cg, cpu)?;
    }
    if let Some(m) = r.memory() {
        set_memory(cg, m)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(cg, cpu)?;
    }
    if let Some(p) = r.pids() {
        let dir = cg.require("pids", "a pids limit")?;
        fs::write(dir, "pids.max", &pids_value(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        set_blkio(cg, b)?;
    }
    if let Some(rules) = r.devices()
        && !rules.is_empty()
    {
        set_devices_hybrid(cg, rules)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        for l in limits {
            let size = crate::v2::page_size(l.page_size())?;
            if let Some(dir) = cg.dir("hugetlb") {
                fs::write(
                    dir,
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    &l.limit().to_string(),
                )?;
            } else if let Some(dir) = cg.unified_dir() {
                // Hybrid host without a v1 hugetlb hierarchy: the controller then lives
                // on the cgroup2 mount, and must be enabled down to our directory.
                if let Some(root) = cg.mount_of("") {
                    crate::v2::enable_controllers(&root, dir, &["hugetlb"])?;
                }
                fs::write(
                    dir,
                    &format!("hugetlb.{size}.max"),
                    &crate::v2::limit_value(l.limit()),
                )?;
            } else {
                return Err(missing("hugetlb", "a hugepage limit"));
            }
        }
    }
    if let Some(n) = r.network() {
        set_network(cg, n)?;
    }
    if let Some(rdma) = r.rdma()
        && !rdma.is_empty()
    {
        let dir = cg.require("rdma", "an rdma limit")?;
        crate::v2::set_rdma(dir, rdma)?;
    }
    if let Some(u) = r.unified()
        && !u.is_empty()
    {
        return Err(CgroupError::Unsupported(
            "linux.resources.unified needs cgroup v2, and this host uses cgroup v1".into(),
        ));
    }
    Ok(())
}

pub(crate) fn pids_value(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

fn set_cpuset(cg: &Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = cg.require("cpuset", "cpuset.cpus/mems")?;
    if let Some(c) = cpus {
        fs::write(dir, "cpuset.cpus", c)?;
    }
    if let Some(m) = mems {
        fs::write(dir, "cpuset.mems", m)?;
    }
    Ok(())
}

/// OCI and v1 use 0 for "unset" in limits; the kernel would take 0 literally.
fn nonzero(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

fn set_memory(cg: &Cgroup, m: &LinuxMemory) -> Result<()> {
    let limit = nonzero(m.limit());
    let mut swap = nonzero(m.swap());
    let reservation = nonzero(m.reservation());
    let requested = limit.is_some()
        || swap.is_some()
        || reservation.is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true);
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        tracing::warn!(
            "memory.kernel and memory.kernelTCP are ignored: kernel memory limits are deprecated"
        );
    }
    if !requested {
        return Ok(());
    }
    let dir = cg.require("memory", "a memory limit")?;
    // As runc: unlimited memory without an explicit swap means unlimited swap too,
    // otherwise the old memsw limit would cap the new unlimited memory.
    if limit == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if !fs::exists(dir, MEMSW) {
        match swap {
            None | Some(-1) => {}
            Some(s) if Some(s) == limit => {}
            Some(_) => {
                return Err(CgroupError::Unsupported(
                    "swap limit requested but the kernel has no swap accounting (swapaccount=1)"
                        .into(),
                ));
            }
        }
        swap = None;
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps memsw >= limit at every moment, so when the limits grow
            // memsw must be raised first, and when they shrink the limit must go first.
            let cur = match fs::read_opt(dir, "memory.limit_in_bytes")? {
                Some(t) => fs::parse_u64(&dir.join("memory.limit_in_bytes"), t.trim(), u64::MAX)?,
                None => u64::MAX,
            };
            if s == -1 || u64::try_from(s).is_ok_and(|s| cur < s) {
                fs::write(dir, MEMSW, &s.to_string())?;
                fs::write(dir, "memory.limit_in_bytes", &l.to_string())?;
            } else {
                fs::write(dir, "memory.limit_in_bytes", &l.to_string())?;
                fs::write(dir, MEMSW, &s.to_string())?;
            }
        }
        (Some(l), None) => fs::write(dir, "memory.limit_in_bytes", &l.to_string())?,
        (None, Some(s)) => fs::write(dir, MEMSW, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(r) = reservation {
        fs::write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidValue {
                field: "memory.swappiness",
                reason: format!("{s} is above 100"),
            });
        }
        fs::write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn set_cpu(cg: &Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let shares = cpu.shares().filter(|&s| s != 0);
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    let rt_period = cpu.realtime_period().filter(|&p| p != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
    if shares.is_none()
        && quota.is_none()
        && period.is_none()
        && rt_period.is_none()
        && rt_runtime.is_none()
        && cpu.burst().is_none()
        && cpu.idle().is_none()
    {
        return Ok(());
    }
    let dir = cg.require("cpu", "a cpu limit")?;
    if let Some(s) = shares {
        fs::write(dir, "cpu.shares", &s.to_string())?;
    }
    // A smaller period can be refused (EINVAL) because old_quota/new_period would exceed
    // the parent's quota; when a quota is also being set, retry the period after it.
    let mut retry_period = None;
    if let Some(p) = period {
        match fs::write(dir, "cpu.cfs_period_us", &p.to_string()) {
            Ok(()) => {}
            Err(CgroupError::Io { ref source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                retry_period = Some(p);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(q) = quota {
        fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        if let Some(p) = retry_period {
            fs::write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    if let Some(b) = cpu.burst() {
        fs::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    // The runtime is checked against the period, so the period goes first.
    if let Some(p) = rt_period {
        fs::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = rt_runtime {
        fs::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

fn blkio_empty(b: &LinuxBlockIo) -> bool {
    let none = |v: &Option<Vec<_>>| v.as_ref().is_none_or(Vec::is_empty);
    b.weight().is_none()
        && b.leaf_weight().is_none()
        && b.weight_device().as_ref().is_none_or(Vec::is_empty)
        && none(b.throttle_read_bps_device())
        && none(b.throttle_write_bps_device())
        && none(b.throttle_read_iops_device())
        && none(b.throttle_write_iops_device())
}

fn set_blkio(cg: &Cgroup, b: &LinuxBlockIo) -> Result<()> {
    if blkio_empty(b) {
        return Ok(());
    }
    let dir = cg.require("blkio", "a block io limit")?;
    // CFQ (blkio.weight) was removed in 5.0; with BFQ the knobs are blkio.bfq.*.
    let bfq = !fs::exists(dir, "blkio.weight") && fs::exists(dir, "blkio.bfq.weight");
    let (weight_file, weight_dev_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        fs::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        fs::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            fs::write(
                dir,
                weight_dev_file,
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            fs::write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, devs) in throttles {
        for d in devs.iter().flatten() {
            fs::write(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// One devices.allow/deny line ("c 1:3 rwm"), or None for "all devices" rules that are
/// written as the bare "a" (which also resets the exception list).
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> Result<String> {
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        // 'u' (unbuffered char) is a char device to the kernel.
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.devices",
                reason: "type 'p' (fifo) is not a device cgroup type".into(),
            });
        }
    };
    let num = |v: Option<i64>| {
        v.filter(|&n| n >= 0)
            .map_or_else(|| "*".to_string(), |n| n.to_string())
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.devices",
            reason: format!("access {access:?} is not a combination of r, w and m"),
        });
    }
    Ok(format!(
        "{typ} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    ))
}

fn is_all_devices(rule: &LinuxDeviceCgroup) -> bool {
    rule.typ().unwrap_or_default() == LinuxDeviceType::A
        && rule.major().is_none_or(|m| m < 0)
        && rule.minor().is_none_or(|m| m < 0)
        && rule
            .access()
            .as_deref()
            .is_none_or(|a| a.is_empty() || (a.contains('r') && a.contains('w') && a.contains('m')))
}

/// The v1 devices controller enforces the rules; on a hybrid host the same rules also
/// go into a BPF device filter on the unified directory (where the container's processes
/// are too). Both must allow, and they hold the same rules, so the filter changes no
/// outcome; it keeps one code path for v2 and hybrid hosts, and it is what enforces when
/// the v1 devices hierarchy is not mounted. runc uses only the v1 controller here.
fn set_devices_hybrid(cg: &Cgroup, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let v1 = cg.dir("devices");
    if let Some(dir) = v1 {
        set_devices(dir, rules)?;
    }
    match (v1, cg.unified_dir()) {
        (Some(_), Some(u)) => {
            if let Err(e) = crate::devices::set_filter(u, rules) {
                tracing::warn!(error = %e, "device filter not attached on the unified hierarchy; the v1 devices cgroup enforces the rules");
            }
        }
        (None, Some(u)) => crate::devices::set_filter(u, rules)?,
        (Some(_), None) => {}
        (None, None) => {
            tracing::warn!("device rules not applied: no devices cgroup and no cgroup2 mount")
        }
    }
    Ok(())
}

/// Writes the rules in order. Denying all devices is written as "a" to devices.deny,
/// which switches the cgroup to default-deny and drops every exception at once. The
/// list starts from default-deny whatever its first rule is, as runc's device rules and
/// the v2 filter do (a fresh v1 cgroup would otherwise inherit allow-all from the root).
fn set_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    if rules
        .first()
        .is_none_or(|r| r.allow() || !is_all_devices(r))
    {
        fs::write(dir, "devices.deny", "a")?;
    }
    for rule in rules {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let line = if !rule.allow() && is_all_devices(rule) {
            "a".to_string()
        } else {
            device_rule(rule)?
        };
        fs::write(dir, file, &line)?;
    }
    Ok(())
}

fn set_network(cg: &Cgroup, n: &LinuxNetwork) -> Result<()> {
    if let Some(id) = n.class_id() {
        match cg.dir("net_cls") {
            Some(dir) => fs::write(dir, "net_cls.classid", &id.to_string())?,
            None => tracing::warn!("net_cls.classid not set: the net_cls cgroup is not mounted"),
        }
    }
    if let Some(prios) = n.priorities()
        && !prios.is_empty()
    {
        match cg.dir("net_prio") {
            Some(dir) => {
                for p in prios {
                    fs::write(
                        dir,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                    )?;
                }
            }
            None => {
                tracing::warn!("net_prio.ifpriomap not set: the net_prio cgroup is not mounted")
            }
        }
    }
    Ok(())
}

const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes freezer.state and waits until it reads back the target state.
///
/// FROZEN can stay at FREEZING for a while (tasks in uninterruptible sleep, or in a
/// vfork), so the write is repeated; every so often the cgroup is thawed briefly,
/// as runc does, because some kernels get stuck otherwise.
pub(crate) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<()> {
    let dir = cg.require("freezer", if frozen { "pause" } else { "resume" })?;
    let target = if frozen { "FROZEN" } else { "THAWED" };
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut i: u32 = 0;
    loop {
        if frozen && i % 50 == 49 {
            fs::write(dir, "freezer.state", "THAWED")?;
            std::thread::sleep(Duration::from_millis(10));
        }
        fs::write(dir, "freezer.state", target)?;
        let state = fs::read(dir, "freezer.state")?;
        if state.trim() == target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if frozen {
                // Leave it usable rather than half frozen.
                let _ = fs::write(dir, "freezer.state", "THAWED");
            }
            return Err(CgroupError::Timeout {
                op: if frozen { "freeze" } else { "thaw" },
                path: dir.join("freezer.state"),
            });
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
    }
}

pub(crate) fn is_frozen(cg: &Cgroup) -> Result<bool> {
    let Some(dir) = cg.dir("freezer") else {
        return Ok(false);
    };
    Ok(fs::read_opt(dir, "freezer.state")?.is_some_and(|s| s.trim() == "FROZEN"))
}
