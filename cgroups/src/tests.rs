//! Pure and fake-filesystem tests: hierarchies are directories in a tempdir holding the
//! files the kernel would provide.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
};

use crate::fs::testlog;
use crate::*;

fn put(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn get(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes as (path relative to `base`, value), in order.
fn writes(base: &Path) -> Vec<(String, String)> {
    testlog::take()
        .into_iter()
        .map(|(p, v)| (p.strip_prefix(base).unwrap().display().to_string(), v))
        .collect()
}

const HYBRID_NAMES: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "name=systemd",
];

/// This host's layout (separate cpu and cpuacct, unified with hugetlb only), in `base`.
fn fake_hybrid(base: &Path) -> Layout {
    let hierarchies = HYBRID_NAMES
        .iter()
        .map(|c| {
            let mount_point = base.join(c.strip_prefix("name=").unwrap_or(c));
            put(&mount_point.join("cgroup.procs"), "");
            V1Hierarchy {
                controllers: vec![c.to_string()],
                mount_point,
                root: PathBuf::from("/"),
            }
        })
        .collect();
    put(&base.join("cpuset/cpuset.cpus"), "0-1\n");
    put(&base.join("cpuset/cpuset.mems"), "0\n");
    put(&base.join("unified/cgroup.procs"), "");
    put(&base.join("unified/cgroup.controllers"), "hugetlb\n");
    put(&base.join("unified/cgroup.subtree_control"), "");
    Layout::V1 {
        hierarchies,
        unified: Some(base.join("unified")),
    }
}

fn fake_v2(base: &Path) -> Layout {
    put(&base.join("cgroup.procs"), "");
    put(
        &base.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(&base.join("cgroup.subtree_control"), "");
    Layout::V2 {
        root: base.to_path_buf(),
    }
}

/// A created cgroup; from here on writes create missing files, as if the kernel had
/// made them on mkdir.
fn created(layout: &Layout, path: &str) -> Cgroup {
    let cg = Cgroup::new(layout, path, "id").unwrap();
    testlog::set_create_missing(true);
    cg.create().unwrap();
    testlog::take();
    cg
}

fn res(f: impl FnOnce(LinuxResourcesBuilder) -> LinuxResourcesBuilder) -> LinuxResources {
    f(LinuxResourcesBuilder::default()).build().unwrap()
}

// ---- pure ----------------------------------------------------------------------

#[test]
fn paths_absolute_relative_and_empty() {
    let layout = Layout::from_mountinfo(
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
         30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
         40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
    )
    .unwrap();
    let abs = Cgroup::new(&layout, "/ocirun-test/abc", "abc").unwrap();
    let rel = Cgroup::new(&layout, "ocirun-test/abc", "abc").unwrap();
    assert_eq!(abs.paths(), rel.paths());
    let p = abs.paths();
    assert!(!p.v2);
    let keys: Vec<&str> = p.dirs.keys().map(String::as_str).collect();
    assert_eq!(keys, ["", "cpu,cpuacct", "memory", "name=systemd"]);
    assert_eq!(
        p.dirs[""],
        Path::new("/sys/fs/cgroup/unified/ocirun-test/abc")
    );
    assert_eq!(
        p.dirs["memory"],
        Path::new("/sys/fs/cgroup/memory/ocirun-test/abc")
    );
    assert_eq!(
        abs.dir("cpuacct"),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/ocirun-test/abc"))
    );
    assert_eq!(
        abs.dir("name=systemd"),
        Some(Path::new("/sys/fs/cgroup/systemd/ocirun-test/abc"))
    );
    assert_eq!(abs.dir("pids"), None);

    let empty = Cgroup::new(&layout, "", "abc").unwrap();
    assert_eq!(
        empty.paths().dirs["memory"],
        Path::new("/sys/fs/cgroup/memory/abc")
    );

    let v2 = Layout::V2 {
        root: "/sys/fs/cgroup".into(),
    };
    let cg = Cgroup::new(&v2, "/a/./b", "x").unwrap();
    assert!(cg.paths().v2);
    assert_eq!(cg.paths().dirs.len(), 1);
    assert_eq!(cg.paths().dirs[""], Path::new("/sys/fs/cgroup/a/b"));
    assert_eq!(cg.dir("memory"), Some(Path::new("/sys/fs/cgroup/a/b")));
}

#[test]
fn paths_reject_dotdot_root_and_bad_ids() {
    let v2 = Layout::V2 {
        root: "/sys/fs/cgroup".into(),
    };
    for bad in ["/a/../b", "../x", "a/.."] {
        assert!(
            matches!(
                Cgroup::new(&v2, bad, "x"),
                Err(CgroupError::InvalidValue { .. })
            ),
            "{bad}"
        );
    }
    for root in ["/", ".", "/./"] {
        assert!(matches!(
            Cgroup::new(&v2, root, "x"),
            Err(CgroupError::InvalidValue { .. })
        ));
    }
    assert!(Cgroup::new(&v2, "", "").is_err());
    assert!(Cgroup::new(&v2, "", "a/b").is_err());
    assert!(Cgroup::new(&v2, "", "..").is_err());
}

#[test]
fn weight_conversions() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1_000_000), 10_000);
    assert_eq!(blkio_weight_to_io_weight(0), 0);
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(500), 4950);
    assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
}

#[test]
fn v2_swap_conversion() {
    use crate::v2::swap_max;
    assert_eq!(
        swap_max(Some(100), Some(300)).unwrap().as_deref(),
        Some("200")
    );
    assert_eq!(
        swap_max(Some(100), Some(100)).unwrap().as_deref(),
        Some("0")
    );
    assert_eq!(
        swap_max(Some(100), Some(-1)).unwrap().as_deref(),
        Some("max")
    );
    assert_eq!(swap_max(Some(-1), None).unwrap().as_deref(), Some("max"));
    assert_eq!(swap_max(Some(100), None).unwrap(), None);
    assert_eq!(swap_max(None, None).unwrap(), None);
    assert!(swap_max(Some(200), Some(100)).is_err());
    assert!(swap_max(None, Some(100)).is_err());
}

#[test]
fn device_rule_formatting() {
    use crate::v1::device_rule;
    let r = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(1)
        .access("rw")
        .build()
        .unwrap();
    assert_eq!(device_rule(&r).unwrap(), "c 1:* rw");
    assert_eq!(
        device_rule(&LinuxDeviceCgroup::default()).unwrap(),
        "a *:* rwm"
    );
    let bad = LinuxDeviceCgroupBuilder::default()
        .access("rx")
        .build()
        .unwrap();
    assert!(device_rule(&bad).is_err());
}

// ---- fake filesystem: v1 -------------------------------------------------------

#[test]
fn v1_create_copies_cpuset_into_every_new_level() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = fake_hybrid(tmp.path());
    let cg = Cgroup::new(&layout, "/a/b", "id").unwrap();
    testlog::set_create_missing(true);
    cg.create().unwrap();
    let base = tmp.path();
    for d in HYBRID_NAMES {
        let d = d.strip_prefix("name=").unwrap_or(d);
        assert!(base.join(d).join("a/b").is_dir(), "{d}");
    }
    assert!(base.join("unified/a/b").is_dir());
    assert_eq!(get(&base.join("cpuset/a/cpuset.cpus")), "0-1");
    assert_eq!(get(&base.join("cpuset/a/cpuset.mems")), "0");
    assert_eq!(get(&base.join("cpuset/a/b/cpuset.cpus")), "0-1");
    assert_eq!(get(&base.join("cpuset/a/b/cpuset.mems")), "0");
    // Hybrid: the unified hierarchy is left alone at create time.
    assert_eq!(get(&base.join("unified/cgroup.subtree_control")), "");
    assert!(cg.exists());

    // An existing level with its own values is not overwritten.
    put(&base.join("cpuset/a/cpuset.cpus"), "1");
    let c2 = Cgroup::new(&layout, "/a/c", "id").unwrap();
    testlog::take();
    c2.create().unwrap();
    assert_eq!(get(&base.join("cpuset/a/c/cpuset.cpus")), "1");
    let w = writes(base);
    assert!(!w.iter().any(|(p, _)| p == "cpuset/a/cpuset.cpus"), "{w:?}");
}

#[test]
fn v1_apply_memory_cpu_pids() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    let r = res(|b| {
        b.memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(32 << 20)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .period(50_000u64)
                .quota(25_000)
                .realtime_period(1_000_000u64)
                .realtime_runtime(1000)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
    });
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(base),
        [
            ("cpuset/t/cpuset.cpus", "0"),
            ("cpuset/t/cpuset.mems", "0"),
            ("memory/t/memory.limit_in_bytes", "67108864"),
            ("memory/t/memory.soft_limit_in_bytes", "33554432"),
            ("memory/t/memory.swappiness", "10"),
            ("memory/t/memory.oom_control", "1"),
            ("cpu/t/cpu.shares", "512"),
            ("cpu/t/cpu.cfs_period_us", "50000"),
            ("cpu/t/cpu.cfs_quota_us", "25000"),
            ("cpu/t/cpu.rt_period_us", "1000000"),
            ("cpu/t/cpu.rt_runtime_us", "1000"),
            ("pids/t/pids.max", "10"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        get(&base.join("memory/t/memory.limit_in_bytes")),
        "67108864"
    );

    cg.apply(&res(|b| {
        b.pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
    }))
    .unwrap();
    assert_eq!(get(&base.join("pids/t/pids.max")), "max");
    // Empty resources write nothing.
    testlog::take();
    cg.apply(&LinuxResources::default()).unwrap();
    cg.apply(&res(|b| {
        b.memory(LinuxMemoryBuilder::default().build().unwrap())
            .cpu(LinuxCpuBuilder::default().build().unwrap())
            .block_io(LinuxBlockIoBuilder::default().build().unwrap())
            .devices(Vec::new())
    }))
    .unwrap();
    assert_eq!(writes(base), []);
}

fn mem(limit: i64, swap: i64) -> LinuxResources {
    res(|b| {
        b.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .unwrap(),
        )
    })
}

#[test]
fn v1_swap_write_order_follows_direction() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    let limit = base.join("memory/t/memory.limit_in_bytes");
    put(
        &base.join("memory/t/memory.memsw.limit_in_bytes"),
        "9223372036854771712",
    );
    let order = || -> Vec<String> {
        writes(base)
            .into_iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap().to_string())
            .collect()
    };

    // From unlimited down: the limit first, then memsw.
    put(&limit, "9223372036854771712");
    cg.apply(&mem(64 << 20, 128 << 20)).unwrap();
    assert_eq!(
        order(),
        ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    );

    // Growing beyond the current limit: memsw first.
    cg.apply(&mem(256 << 20, 512 << 20)).unwrap();
    assert_eq!(
        order(),
        ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    );
    assert_eq!(
        get(&base.join("memory/t/memory.memsw.limit_in_bytes")),
        "536870912"
    );

    // Shrinking again: the limit first.
    cg.apply(&mem(32 << 20, 64 << 20)).unwrap();
    assert_eq!(
        order(),
        ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    );

    // Unlimited swap always goes first.
    cg.apply(&mem(16 << 20, -1)).unwrap();
    assert_eq!(
        order(),
        ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    );
}

#[test]
fn v1_swap_without_accounting() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    std::fs::remove_file(base.join("memory/t/memory.memsw.limit_in_bytes")).ok();
    put(
        &base.join("memory/t/memory.limit_in_bytes"),
        "9223372036854771712",
    );
    let err = cg.apply(&mem(64 << 20, 128 << 20)).unwrap_err();
    assert!(
        err.to_string()
            .contains("swap limit requested but the kernel has no swap accounting"),
        "{err}"
    );
    testlog::take();
    cg.apply(&mem(64 << 20, 64 << 20)).unwrap();
    cg.apply(&mem(64 << 20, -1)).unwrap();
    let w = writes(base);
    assert!(
        w.iter().all(|(p, _)| p.ends_with("memory.limit_in_bytes")),
        "{w:?}"
    );
}

#[test]
fn v1_device_rules_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    let rule = |allow: bool,
                typ: Option<LinuxDeviceType>,
                major: Option<i64>,
                minor: Option<i64>,
                access: Option<&str>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(access.map(str::to_string));
        r
    };
    let rules = vec![
        rule(false, None, None, None, Some("rwm")),
        rule(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            Some("rwm"),
        ),
        rule(false, Some(LinuxDeviceType::B), Some(8), None, Some("r")),
        rule(true, Some(LinuxDeviceType::C), None, None, Some("m")),
        rule(true, None, None, None, None),
    ];
    cg.apply(&res(|b| b.devices(rules))).unwrap();
    assert_eq!(
        writes(base),
        [
            ("devices/t/devices.deny", "a"),
            ("devices/t/devices.allow", "c 1:3 rwm"),
            ("devices/t/devices.deny", "b 8:* r"),
            ("devices/t/devices.allow", "c *:* m"),
            ("devices/t/devices.allow", "a *:* rwm"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn v1_blkio_bfq_fallback_and_throttles() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    put(&base.join("blkio/t/blkio.bfq.weight"), "100");
    let dev = |rate| {
        LinuxThrottleDeviceBuilder::default()
            .major(8)
            .minor(0)
            .rate(rate)
            .build()
            .unwrap()
    };
    let b = LinuxBlockIoBuilder::default()
        .weight(300u16)
        .throttle_read_bps_device(vec![dev(1_000_000u64)])
        .throttle_write_iops_device(vec![dev(50u64)])
        .build()
        .unwrap();
    cg.apply(&res(|r| r.block_io(b))).unwrap();
    assert_eq!(
        writes(base),
        [
            ("blkio/t/blkio.bfq.weight", "300"),
            ("blkio/t/blkio.throttle.read_bps_device", "8:0 1000000"),
            ("blkio/t/blkio.throttle.write_iops_device", "8:0 50"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn v1_hybrid_hugetlb_goes_to_unified_and_network_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    put(&base.join("unified/t/hugetlb.2MB.max"), "max");
    let r = res(|b| {
        b.hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1 << 21)
                .build()
                .unwrap(),
        ])
        .network(
            LinuxNetworkBuilder::default()
                .class_id(7u32)
                .build()
                .unwrap(),
        )
    });
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(base),
        [
            ("unified/cgroup.subtree_control", "+hugetlb"),
            ("unified/t/hugetlb.2MB.max", "2097152"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let bad = res(|b| {
        b.hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("../x")
                .limit(1)
                .build()
                .unwrap(),
        ])
    });
    assert!(matches!(
        cg.apply(&bad),
        Err(CgroupError::InvalidValue { .. })
    ));
    let unified = res(|b| b.unified(HashMap::from([("memory.max".to_string(), "1".to_string())])));
    assert!(matches!(
        cg.apply(&unified),
        Err(CgroupError::Unsupported(_))
    ));
}

#[test]
fn v1_missing_controller_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    put(&base.join("devices/cgroup.procs"), "");
    let layout = Layout::V1 {
        hierarchies: vec![V1Hierarchy {
            controllers: vec!["devices".into()],
            mount_point: base.join("devices"),
            root: "/".into(),
        }],
        unified: None,
    };
    let cg = created(&layout, "/t");
    let err = cg.apply(&mem(1 << 20, 0)).unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported(_)));
    assert!(err.to_string().contains("memory"), "{err}");
    let err = cg
        .apply(&res(|b| {
            b.pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        }))
        .unwrap_err();
    assert!(err.to_string().contains("pids"), "{err}");
    let err = cg
        .apply(&res(|b| {
            b.cpu(LinuxCpuBuilder::default().shares(2u64).build().unwrap())
        }))
        .unwrap_err();
    assert!(err.to_string().contains("cpu"), "{err}");
}

#[test]
fn write_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = Cgroup::new(&fake_hybrid(base), "/never-created", "id").unwrap();
    let err = cg
        .apply(&res(|b| {
            b.pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        }))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("pids/never-created/pids.max"), "{msg}");
    assert!(matches!(err, CgroupError::Io { .. }));
}

#[test]
fn v1_freeze_procs_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_hybrid(base), "/t");
    // A regular file reads back what was written, like a freezer that froze at once.
    cg.freeze().unwrap();
    assert_eq!(get(&base.join("freezer/t/freezer.state")), "FROZEN");
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());

    put(&base.join("pids/t/cgroup.procs"), "30\n10\n");
    put(&base.join("pids/t/sub/cgroup.procs"), "20\n10\n");
    assert_eq!(cg.procs().unwrap(), [10, 20, 30]);

    put(&base.join("cpuacct/t/cpuacct.usage"), "123456\n");
    put(&base.join("cpuacct/t/cpuacct.usage_percpu"), "100 23456 \n");
    put(&base.join("cpuacct/t/cpuacct.stat"), "user 3\nsystem 2\n");
    put(
        &base.join("cpu/t/cpu.stat"),
        "nr_periods 9\nnr_throttled 4\nthrottled_time 777\n",
    );
    put(&base.join("memory/t/memory.usage_in_bytes"), "4096\n");
    put(&base.join("memory/t/memory.max_usage_in_bytes"), "8192\n");
    put(&base.join("memory/t/memory.limit_in_bytes"), "67108864\n");
    put(&base.join("memory/t/memory.failcnt"), "2\n");
    put(&base.join("memory/t/memory.stat"), "cache 1024\nrss 2048\n");
    put(
        &base.join("memory/t/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    put(&base.join("pids/t/pids.current"), "2\n");
    put(&base.join("pids/t/pids.max"), "max\n");
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu_usage_total_ns, 123_456);
    assert_eq!(s.cpu_per_cpu_ns, [100, 23_456]);
    assert_eq!(s.cpu_usage_user_ns, 30_000_000);
    assert_eq!(s.cpu_usage_kernel_ns, 20_000_000);
    assert_eq!((s.cpu_throttled_periods, s.cpu_throttled_time_ns), (4, 777));
    assert_eq!(
        (s.memory_usage, s.memory_max_usage, s.memory_limit),
        (4096, 8192, 67_108_864)
    );
    assert_eq!(
        (s.memory_failcnt, s.memory_cache, s.oom_kills),
        (2, 1024, 3)
    );
    assert_eq!(s.memory_raw.get("rss"), Some(&2048));
    assert_eq!((s.pids_current, s.pids_limit), (2, 0));
    assert_eq!(cg.oom_kill_count().unwrap(), 3);

    // A cgroup that is gone: no processes, zero stats, not frozen.
    let gone = Cgroup::new(&fake_hybrid(base), "/gone", "id").unwrap();
    assert_eq!(gone.procs().unwrap(), Vec::<i32>::new());
    assert_eq!(gone.stats().unwrap(), Stats::default());
    assert!(!gone.is_frozen().unwrap());
    assert!(!gone.exists());
    gone.destroy().unwrap();
}

// ---- fake filesystem: v2 -------------------------------------------------------

#[test]
fn v2_create_enables_controllers_down_to_the_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let layout = fake_v2(base);
    put(&base.join("a/cgroup.procs"), "");
    put(&base.join("a/cgroup.subtree_control"), "cpu memory");
    let cg = Cgroup::new(&layout, "/a/b/c", "id").unwrap();
    testlog::set_create_missing(true);
    cg.create().unwrap();
    assert!(base.join("a/b/c").is_dir());
    assert_eq!(
        writes(base),
        [
            (
                "cgroup.subtree_control",
                "+cpu +memory +pids +io +cpuset +hugetlb"
            ),
            ("a/cgroup.subtree_control", "+pids +io +cpuset +hugetlb"),
            (
                "a/b/cgroup.subtree_control",
                "+cpu +memory +pids +io +cpuset +hugetlb"
            ),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(!base.join("a/b/c/cgroup.subtree_control").exists());

    // Already enabled: nothing to write.
    testlog::take();
    let again = Cgroup::from_paths(cg.paths().clone());
    again.create().unwrap();
    assert_eq!(writes(base), []);
    // Built from saved paths (no layout), the root is found by walking up.
    for f in [
        "cgroup.subtree_control",
        "a/cgroup.subtree_control",
        "a/b/cgroup.subtree_control",
    ] {
        put(&base.join(f), "");
    }
    put(&base.join("a/b/cgroup.procs"), "");
    put(&base.join("a/b/c/cgroup.procs"), "");
    again.create().unwrap();
    assert_eq!(writes(base).len(), 3);
}

/// v2 device rules are a BPF filter on the directory: on a fake (non-cgroup) directory
/// the kernel refuses the attach, and apply reports it instead of skipping the rules.
#[test]
fn v2_device_rules_are_enforced_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_v2(base), "/t");
    let err = cg
        .apply(&res(|b| b.devices(vec![LinuxDeviceCgroup::default()])))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("device filter") && text.contains("/t"),
        "{text}"
    );
    // No device rules: nothing to attach, nothing fails.
    cg.apply(&res(|b| b.devices(Vec::new()))).unwrap();
}

#[test]
fn v2_apply_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_v2(base), "/t");
    put(&base.join("t/memory.swap.max"), "max");
    put(&base.join("t/io.weight"), "default 100");
    let dev = |rate| {
        LinuxThrottleDeviceBuilder::default()
            .major(8)
            .minor(16)
            .rate(rate)
            .build()
            .unwrap()
    };
    let r = res(|b| {
        b.memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(16 << 20)
                .swap(96 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000)
                .cpus("0-1")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .throttle_write_bps_device(vec![dev(0u64), dev(4096u64)])
                .build()
                .unwrap(),
        )
        .hugepage_limits(vec![
            LinuxHugepageLimitBuilder::default()
                .page_size("1GB")
                .limit(-1)
                .build()
                .unwrap(),
        ])
        .unified(HashMap::from([
            ("memory.high".to_string(), "50M".to_string()),
            ("cpu.idle".to_string(), "0".to_string()),
        ]))
    });
    cg.apply(&r).unwrap();
    assert_eq!(
        writes(base),
        [
            ("t/cpu.weight", "39"),
            ("t/cpu.max", "50000 100000"),
            ("t/cpuset.cpus", "0-1"),
            ("t/memory.swap.max", "33554432"),
            ("t/memory.max", "67108864"),
            ("t/memory.low", "16777216"),
            ("t/pids.max", "max"),
            ("t/io.weight", "4950"),
            ("t/io.max", "8:16 wbps=max"),
            ("t/io.max", "8:16 wbps=4096"),
            ("t/hugetlb.1GB.max", "max"),
            ("t/cpu.idle", "0"),
            ("t/memory.high", "50M"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    cg.apply(&res(|b| {
        b.cpu(
            LinuxCpuBuilder::default()
                .quota(-1)
                .period(20_000u64)
                .build()
                .unwrap(),
        )
    }))
    .unwrap();
    assert_eq!(get(&base.join("t/cpu.max")), "max 20000");

    let bad = res(|b| {
        b.unified(HashMap::from([(
            "../cgroup.procs".to_string(),
            "1".to_string(),
        )]))
    });
    assert!(matches!(
        cg.apply(&bad),
        Err(CgroupError::InvalidValue { .. })
    ));
    // Unknown unified keys fail on the missing file, naming it.
    testlog::set_create_missing(false);
    let missing = res(|b| b.unified(HashMap::from([("nope.max".to_string(), "1".to_string())])));
    let err = cg.apply(&missing).unwrap_err();
    assert!(err.to_string().contains("t/nope.max"), "{err}");
}

#[test]
fn v2_freeze_stats_and_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let cg = created(&fake_v2(base), "/t");
    put(&base.join("t/cgroup.events"), "populated 1\nfrozen 1\n");
    cg.freeze().unwrap();
    assert_eq!(get(&base.join("t/cgroup.freeze")), "1");
    assert!(cg.is_frozen().unwrap());
    put(&base.join("t/cgroup.events"), "populated 1\nfrozen 0\n");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());

    put(
        &base.join("t/cpu.stat"),
        "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_throttled 1\nthrottled_usec 2\n",
    );
    put(&base.join("t/memory.current"), "4096\n");
    put(&base.join("t/memory.max"), "max\n");
    put(&base.join("t/memory.stat"), "anon 1\nfile 2\n");
    put(
        &base.join("t/memory.events"),
        "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
    );
    put(&base.join("t/pids.current"), "1\n");
    put(&base.join("t/pids.max"), "10\n");
    put(&base.join("t/cgroup.procs"), "42\n");
    let s = cg.stats().unwrap();
    assert_eq!(
        (
            s.cpu_usage_total_ns,
            s.cpu_usage_user_ns,
            s.cpu_usage_kernel_ns
        ),
        (10_000, 6_000, 4_000)
    );
    assert_eq!(
        (s.cpu_throttled_periods, s.cpu_throttled_time_ns),
        (1, 2_000)
    );
    assert_eq!(
        (s.memory_usage, s.memory_max_usage, s.memory_limit),
        (4096, 0, u64::MAX)
    );
    assert_eq!((s.memory_cache, s.memory_failcnt, s.oom_kills), (2, 5, 1));
    assert_eq!((s.pids_current, s.pids_limit), (1, 10));
    assert_eq!(cg.oom_kill_count().unwrap(), 1);
    assert_eq!(cg.procs().unwrap(), [42]);

    // destroy removes sub-cgroups first and never the parent. (Fake cgroup dirs with
    // files cannot be rmdir'ed, so use a fresh one with only directories.)
    let tmp2 = tempfile::tempdir().unwrap();
    let empty = Layout::V2 {
        root: tmp2.path().to_path_buf(),
    };
    let cg = Cgroup::new(&empty, "/p/leaf", "id").unwrap();
    cg.create().unwrap();
    std::fs::create_dir_all(tmp2.path().join("p/leaf/sub/subsub")).unwrap();
    assert!(cg.exists());
    cg.destroy().unwrap();
    assert!(!cg.exists());
    assert!(tmp2.path().join("p").is_dir());
    cg.destroy().unwrap();
}

#[test]
fn error_kinds() {
    use common::{ErrorKind as K, HasKind};
    assert_eq!(CgroupError::NoCgroups.kind(), K::FailedPrecondition);
    let e = CgroupError::InvalidValue {
        field: "x",
        reason: "y".into(),
    };
    assert_eq!(e.kind(), K::InvalidArgument);
}
