//! Stats: the container's cgroup counters in containerd's cgroup metrics
//! messages, as containerd's runc shims answer (v1 `Metrics` on v1 and hybrid
//! hosts, v2 `Metrics` on pure v2). Read in-process from cgroupfs: a few file
//! reads, where asking the runtime (`events --stats`) would cost a fork+exec.

use std::collections::BTreeMap;
use std::path::Path;

use cgroups::Cgroup;
use cgroups::event_stats::EventStats;
use proto::cgroups_v1 as v1;
use proto::cgroups_v2 as v2;
use protobuf::well_known_types::any::Any;
use protobuf::{MessageField, MessageFull};

use crate::error::{Result, ShimError};

/// The metrics of `cg` packed as containerd expects: the Any's type_url is
/// the bare message name, which containerd's typeurl resolves.
pub fn collect(cg: &Cgroup) -> Result<Any> {
    let stats = cg
        .event_stats()
        .map_err(|e| ShimError::FailedPrecondition(format!("reading cgroup stats: {e}")))?;
    if cg.is_v2() {
        let dir = cg.unified_dir();
        pack(&metrics_v2(&stats, dir))
    } else {
        let oom = cg
            .dir("memory")
            .map(|d| flat_keyed(&d.join("memory.oom_control")))
            .unwrap_or_default();
        pack(&metrics_v1(&stats, &oom))
    }
}

fn pack<M: MessageFull>(m: &M) -> Result<Any> {
    let value = m.write_to_bytes().map_err(|e| ShimError::Decode {
        what: "cgroup metrics",
        source: e,
    })?;
    Ok(Any {
        type_url: M::descriptor().full_name().to_string(),
        value,
        ..Default::default()
    })
}

/// "key value" lines (memory.stat, memory.events, memory.oom_control); a
/// missing file is empty.
fn flat_keyed(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A single-value file; "max" is unlimited (u64::MAX, as containerd reports it).
fn single(dir: Option<&Path>, name: &str) -> u64 {
    let Some(text) = dir.and_then(|d| std::fs::read_to_string(d.join(name)).ok()) else {
        return 0;
    };
    match text.trim() {
        "max" => u64::MAX,
        t => t.parse().unwrap_or(0),
    }
}

fn metrics_v1(s: &EventStats, oom: &BTreeMap<String, u64>) -> v1::Metrics {
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let entry = |e: &cgroups::event_stats::MemoryEntry| v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    };
    let blkio = |list: &[cgroups::event_stats::BlkioEntry]| -> Vec<v1::BlkIOEntry> {
        list.iter()
            .map(|b| v1::BlkIOEntry {
                op: b.op.clone(),
                major: b.major,
                minor: b.minor,
                value: b.value,
                ..Default::default()
            })
            .collect()
    };
    let memory = v1::MemoryStat {
        cache: s.memory.cache,
        rss: raw("rss"),
        rss_huge: raw("rss_huge"),
        mapped_file: raw("mapped_file"),
        dirty: raw("dirty"),
        writeback: raw("writeback"),
        pg_pg_in: raw("pgpgin"),
        pg_pg_out: raw("pgpgout"),
        pg_fault: raw("pgfault"),
        pg_maj_fault: raw("pgmajfault"),
        inactive_anon: raw("inactive_anon"),
        active_anon: raw("active_anon"),
        inactive_file: raw("inactive_file"),
        active_file: raw("active_file"),
        unevictable: raw("unevictable"),
        hierarchical_memory_limit: raw("hierarchical_memory_limit"),
        hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
        total_cache: raw("total_cache"),
        total_rss: raw("total_rss"),
        total_rss_huge: raw("total_rss_huge"),
        total_mapped_file: raw("total_mapped_file"),
        total_dirty: raw("total_dirty"),
        total_writeback: raw("total_writeback"),
        total_pg_pg_in: raw("total_pgpgin"),
        total_pg_pg_out: raw("total_pgpgout"),
        total_pg_fault: raw("total_pgfault"),
        total_pg_maj_fault: raw("total_pgmajfault"),
        total_inactive_anon: raw("total_inactive_anon"),
        total_active_anon: raw("total_active_anon"),
        total_inactive_file: raw("total_inactive_file"),
        total_active_file: raw("total_active_file"),
        total_unevictable: raw("total_unevictable"),
        usage: MessageField::some(entry(&s.memory.usage)),
        swap: MessageField::some(entry(&s.memory.swap)),
        kernel: MessageField::some(entry(&s.memory.kernel)),
        kernel_tcp: MessageField::some(entry(&s.memory.kernel_tcp)),
        ..Default::default()
    };
    let u = &s.cpu.usage;
    let t = &s.cpu.throttling;
    v1::Metrics {
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        pids: MessageField::some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: u.total,
                kernel: u.kernel,
                user: u.user,
                per_cpu: u.percpu.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: t.periods,
                throttled_periods: t.throttled_periods,
                throttled_time: t.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(memory),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blkio(&s.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio(&s.blkio.io_serviced_recursive),
            ..Default::default()
        }),
        memory_oom_control: MessageField::some(v1::MemoryOomControl {
            oom_kill_disable: oom.get("oom_kill_disable").copied().unwrap_or(0),
            under_oom: oom.get("under_oom").copied().unwrap_or(0),
            oom_kill: oom.get("oom_kill").copied().unwrap_or(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn metrics_v2(s: &EventStats, dir: Option<&Path>) -> v2::Metrics {
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let us = |ns: u64| ns / 1000;
    let events = dir
        .map(|d| flat_keyed(&d.join("memory.events")))
        .unwrap_or_default();
    let event = |k: &str| events.get(k).copied().unwrap_or(0);
    let memory = v2::MemoryStat {
        anon: raw("anon"),
        file: raw("file"),
        kernel_stack: raw("kernel_stack"),
        slab: raw("slab"),
        sock: raw("sock"),
        shmem: raw("shmem"),
        file_mapped: raw("file_mapped"),
        file_dirty: raw("file_dirty"),
        file_writeback: raw("file_writeback"),
        anon_thp: raw("anon_thp"),
        inactive_anon: raw("inactive_anon"),
        active_anon: raw("active_anon"),
        inactive_file: raw("inactive_file"),
        active_file: raw("active_file"),
        unevictable: raw("unevictable"),
        slab_reclaimable: raw("slab_reclaimable"),
        slab_unreclaimable: raw("slab_unreclaimable"),
        pgfault: raw("pgfault"),
        pgmajfault: raw("pgmajfault"),
        workingset_refault: raw("workingset_refault"),
        workingset_activate: raw("workingset_activate"),
        workingset_nodereclaim: raw("workingset_nodereclaim"),
        pgrefill: raw("pgrefill"),
        pgscan: raw("pgscan"),
        pgsteal: raw("pgsteal"),
        pgactivate: raw("pgactivate"),
        pgdeactivate: raw("pgdeactivate"),
        pglazyfree: raw("pglazyfree"),
        pglazyfreed: raw("pglazyfreed"),
        thp_fault_alloc: raw("thp_fault_alloc"),
        thp_collapse_alloc: raw("thp_collapse_alloc"),
        usage: s.memory.usage.usage,
        usage_limit: s.memory.usage.limit,
        // The cgroup's own swap files: EventStats folds memory into "swap" as runc does.
        swap_usage: single(dir, "memory.swap.current"),
        swap_limit: single(dir, "memory.swap.max"),
        max_usage: s.memory.usage.max,
        swap_max_usage: single(dir, "memory.swap.peak"),
        ..Default::default()
    };
    // io.stat is one line per device; EventStats split it into read/write entries.
    let mut io: BTreeMap<(u64, u64), v2::IOEntry> = BTreeMap::new();
    let lists = [
        (&s.blkio.io_service_bytes_recursive, true),
        (&s.blkio.io_serviced_recursive, false),
    ];
    for (list, bytes) in lists {
        for b in list {
            let e = io.entry((b.major, b.minor)).or_insert_with(|| v2::IOEntry {
                major: b.major,
                minor: b.minor,
                ..Default::default()
            });
            match (bytes, b.op.as_str()) {
                (true, "Read") => e.rbytes = b.value,
                (true, "Write") => e.wbytes = b.value,
                (false, "Read") => e.rios = b.value,
                (false, "Write") => e.wios = b.value,
                _ => {}
            }
        }
    }
    let t = &s.cpu.throttling;
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: us(s.cpu.usage.total),
            user_usec: us(s.cpu.usage.user),
            system_usec: us(s.cpu.usage.kernel),
            nr_periods: t.periods,
            nr_throttled: t.throttled_periods,
            throttled_usec: us(t.throttled_time),
            ..Default::default()
        }),
        memory: MessageField::some(memory),
        io: MessageField::some(v2::IOStat {
            usage: io.into_values().collect(),
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v2::HugeTlbStat {
                current: h.usage,
                max: single(dir, &format!("hugetlb.{size}.max")),
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        memory_events: MessageField::some(v2::MemoryEvents {
            low: event("low"),
            high: event("high"),
            max: event("max"),
            oom: event("oom"),
            oom_kill: event("oom_kill"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    #[test]
    fn v1_maps_memory_stat_keys_and_entries() {
        let mut s = EventStats::default();
        s.memory.raw.insert("rss".into(), 7);
        s.memory.raw.insert("pgpgin".into(), 3);
        s.memory.raw.insert("hierarchical_memsw_limit".into(), 9);
        s.memory.usage.usage = 4096;
        s.pids.current = 2;
        s.cpu.usage.percpu = vec![1, 2];
        let oom = BTreeMap::from([("oom_kill".to_string(), 5)]);
        let m = metrics_v1(&s, &oom);
        assert_eq!(m.memory.rss, 7);
        assert_eq!(m.memory.pg_pg_in, 3);
        assert_eq!(m.memory.hierarchical_swap_limit, 9);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.cpu.usage.per_cpu, [1, 2]);
        assert_eq!(m.memory_oom_control.oom_kill, 5);
        let any = pack(&m).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        assert_eq!(v1::Metrics::parse_from_bytes(&any.value).unwrap(), m);
    }

    #[test]
    fn v2_regroups_io_per_device() {
        let mut s = EventStats::default();
        for (op, v) in [("Read", 10), ("Write", 20)] {
            s.blkio
                .io_service_bytes_recursive
                .push(cgroups::event_stats::BlkioEntry {
                    major: 8,
                    minor: 0,
                    op: op.into(),
                    value: v,
                });
        }
        s.cpu.usage.total = 5_000;
        let m = metrics_v2(&s, None);
        assert_eq!(m.io.usage.len(), 1);
        assert_eq!((m.io.usage[0].rbytes, m.io.usage[0].wbytes), (10, 20));
        assert_eq!(m.cpu.usage_usec, 5);
        assert_eq!(
            pack(&m).unwrap().type_url,
            "io.containerd.cgroups.v2.Metrics"
        );
    }
}
