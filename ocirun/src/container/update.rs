//! `update`: new resource limits for a live container, from runc's flags or from an
//! OCI LinuxResources JSON document (whose device rules, unlike runc's update, are
//! applied too, as crun does). The limits go to the cgroup first, then into the saved
//! spec (atomically), so later commands see what the cgroup has.
use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use tracing::instrument;

use crate::cli::UpdateArgs;
use crate::container::create::resources_with_defaults;
use crate::container::load;
use crate::container::state::Status;
use crate::error::{OciError, Result};

#[instrument(skip_all, fields(container_id = %a.id))]
pub fn update(root: &Path, a: &UpdateArgs) -> Result<()> {
    let c = load(root, &a.id)?;
    let mut state = match (c.state, c.status) {
        (Some(s), Status::Created | Status::Running | Status::Paused) => s,
        (_, status) => {
            return Err(OciError::WrongState {
                op: "update",
                id: a.id.clone(),
                status: status.to_string(),
            });
        }
    };
    let delta = match &a.resources {
        Some(path) => read_resources(path)?,
        None => from_flags(a)?,
    };
    let paths = state.cgroup.clone().ok_or_else(|| {
        OciError::Unsupported(format!("container {} has no cgroup to update", a.id))
    })?;

    let current = state
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let (merged, mut to_apply) = merge(current, &delta);

    let mut linux = state.spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(merged));
    state.spec.set_linux(Some(linux));
    if to_apply.devices().is_some() {
        // The whole rule list is rewritten, with the default devices and the spec's
        // device nodes, exactly as create wrote it; on cgroup v2 that swaps the BPF
        // filter (new one attached before the old one is detached).
        to_apply.set_devices(resources_with_defaults(&state.spec).devices().clone());
    }
    cgroups::Cgroup::from_paths(paths).apply(&to_apply)?;
    c.dir.save(&state)
}

fn read_resources(path: &Path) -> Result<LinuxResources> {
    let mut data = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|e| OciError::io("read", "stdin", e))?;
    } else {
        data = std::fs::read(path).map_err(|e| OciError::io("read", path, e))?;
    }
    serde_json::from_slice(&data)
        .map_err(|e| OciError::InvalidConfig(format!("resources {}: {e}", path.display())))
}

fn from_flags(a: &UpdateArgs) -> Result<LinuxResources> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err(OciError::Unsupported(
            "Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported".into(),
        ));
    }
    if a.kernel_memory.is_some() || a.kernel_memory_tcp.is_some() {
        tracing::warn!("--kernel-memory and --kernel-memory-tcp are ignored (deprecated)");
    }
    let mut r = LinuxResources::default();
    let size = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref().map(|s| parse_size(flag, s)).transpose()
    };
    let (limit, swap, reservation) = (
        size("--memory", &a.memory)?,
        size("--memory-swap", &a.memory_swap)?,
        size("--memory-reservation", &a.memory_reservation)?,
    );
    if limit.is_some() || swap.is_some() || reservation.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(limit);
        m.set_swap(swap);
        m.set_reservation(reservation);
        r.set_memory(Some(m));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(a.cpu_shares);
    cpu.set_quota(a.cpu_quota);
    cpu.set_period(a.cpu_period);
    cpu.set_realtime_period(a.cpu_rt_period);
    cpu.set_realtime_runtime(a.cpu_rt_runtime);
    cpu.set_cpus(a.cpuset_cpus.clone());
    cpu.set_mems(a.cpuset_mems.clone());
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    Ok(r)
}

/// (`current` with `delta`'s set values laid over it, what to write to the cgroup).
/// Zero and empty values mean "unchanged", as with runc. A changed section is written
/// whole (merged), since one value can depend on another (v2 swap on the memory limit).
fn merge(mut current: LinuxResources, delta: &LinuxResources) -> (LinuxResources, LinuxResources) {
    let mut apply = LinuxResources::default();
    let nz = |v: Option<i64>| v.filter(|&v| v != 0);
    let nzu = |v: Option<u64>| v.filter(|&v| v != 0);
    let ne = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if let Some(d) = delta.memory() {
        let mut m = current.memory().unwrap_or_default();
        if let Some(v) = nz(d.limit()) {
            m.set_limit(Some(v));
        }
        if let Some(v) = nz(d.swap()) {
            m.set_swap(Some(v));
        }
        if let Some(v) = nz(d.reservation()) {
            m.set_reservation(Some(v));
        }
        if let Some(v) = d.swappiness() {
            m.set_swappiness(Some(v));
        }
        if let Some(v) = d.disable_oom_killer() {
            m.set_disable_oom_killer(Some(v));
        }
        current.set_memory(Some(m));
        apply.set_memory(Some(m));
    }
    if let Some(d) = delta.cpu() {
        let mut c = current.cpu().clone().unwrap_or_default();
        if let Some(v) = nzu(d.shares()) {
            c.set_shares(Some(v));
        }
        if let Some(v) = nz(d.quota()) {
            c.set_quota(Some(v));
        }
        if let Some(v) = nzu(d.period()) {
            c.set_period(Some(v));
        }
        if let Some(v) = nz(d.realtime_runtime()) {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = nzu(d.realtime_period()) {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = ne(d.cpus()) {
            c.set_cpus(Some(v));
        }
        if let Some(v) = ne(d.mems()) {
            c.set_mems(Some(v));
        }
        current.set_cpu(Some(c.clone()));
        apply.set_cpu(Some(c));
    }
    if let Some(w) = delta
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|&w| w != 0)
    {
        let mut b = current.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        current.set_block_io(Some(b));
        let mut only = LinuxBlockIo::default();
        only.set_weight(Some(w));
        apply.set_block_io(Some(only));
    }
    if let Some(p) = delta.pids().as_ref().filter(|p| p.limit() != 0) {
        current.set_pids(Some(*p));
        apply.set_pids(Some(*p));
    }
    // Device rules (only from a resources file) replace the list; runc ignores them,
    // crun applies them.
    if let Some(d) = delta.devices().as_ref().filter(|d| !d.is_empty()) {
        current.set_devices(Some(d.clone()));
        apply.set_devices(Some(d.clone()));
    }
    (current, apply)
}

/// runc's memory sizes: "-1" (unlimited), bytes, or a number with a binary unit
/// (k, m, g, t, p; an optional "i" and "b" after it, any case): "64m", "1.5GiB".
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    let bad = || OciError::InvalidConfig(format!("{flag}: invalid size {s:?}"));
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    let v = num * mult as f64;
    if !v.is_finite() || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("x", "-1").unwrap(), -1);
        assert_eq!(parse_size("x", "1024").unwrap(), 1024);
        assert_eq!(parse_size("x", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("x", "1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("x", "1.5k").unwrap(), 1536);
        assert!(parse_size("x", "12q").is_err());
        assert!(parse_size("x", "").is_err());
    }

    #[test]
    fn merge_keeps_unchanged_and_applies_changed_sections() {
        let cur: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 100, "swap": 200},
            "pids": {"limit": 5},
            "cpu": {"shares": 1024}
        }))
        .unwrap();
        let delta: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 150, "swap": 0}
        }))
        .unwrap();
        let (merged, apply) = merge(cur, &delta);
        let m = merged.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(150), Some(200)));
        assert_eq!(merged.pids().as_ref().unwrap().limit(), 5);
        assert!(apply.pids().is_none() && apply.cpu().is_none());
        assert_eq!(apply.memory().unwrap().limit(), Some(150));
        assert!(apply.devices().is_none());
    }

    #[test]
    fn merge_replaces_device_rules_only_when_given() {
        let cur: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}]
        }))
        .unwrap();
        let (merged, apply) = merge(cur.clone(), &LinuxResources::default());
        assert_eq!(merged.devices(), cur.devices());
        assert!(apply.devices().is_none());
        let delta: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}]
        }))
        .unwrap();
        let (merged, apply) = merge(cur, &delta);
        assert_eq!(merged.devices(), delta.devices());
        assert_eq!(apply.devices(), delta.devices());
    }
}
