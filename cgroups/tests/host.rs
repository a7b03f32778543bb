//! Real cgroupfs tests on this (hybrid, v1 + unified) host. They need root; a missing
//! prerequisite fails the test with the reason, it never passes silently.
// Helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cgroups::{Cgroup, Layout, LinuxResources};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder,
};

static N: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!(
        "/cgroups-crate-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn host_layout() -> Layout {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "these tests write to the real cgroupfs and need root"
    );
    let layout = Layout::detect().expect("detect cgroup layout");
    assert!(
        layout.v1_hierarchy("memory").is_some() && layout.is_hybrid(),
        "these tests expect the hybrid v1 + unified host, got {layout:?}"
    );
    layout
}

/// Kills the child and removes the cgroups (leaf, then the parent we made), even when
/// the test fails half way.
struct Guard {
    cgroups: Vec<Cgroup>,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for cg in &self.cgroups {
            let _ = cg.thaw();
            let _ = cg.destroy();
        }
    }
}

fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn resources() -> LinuxResources {
    let dev =
        |allow: bool, typ: Option<LinuxDeviceType>, major: Option<i64>, minor: Option<i64>| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .access("rwm");
            if let Some(t) = typ {
                b = b.typ(t);
            }
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().unwrap()
        };
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .cpu(LinuxCpuBuilder::default().shares(512u64).build().unwrap())
        .devices(vec![
            dev(false, None, None, None),
            dev(true, Some(LinuxDeviceType::C), Some(1), Some(3)),
        ])
        .build()
        .unwrap()
}

#[test]
fn lifecycle_on_the_real_hybrid_host() {
    let layout = host_layout();
    let parent_path = unique("lifecycle");
    let path = format!("{parent_path}/ctr");
    let cg = Cgroup::new(&layout, &path, "ctr").unwrap();
    let parent = Cgroup::new(&layout, &parent_path, "x").unwrap();
    let mut guard = Guard {
        cgroups: vec![cg.clone(), parent.clone()],
        child: None,
    };

    cg.create().unwrap();
    assert!(cg.exists());
    let mem_dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
    let unified_dir = PathBuf::from("/sys/fs/cgroup/unified").join(path.trim_start_matches('/'));
    assert!(mem_dir.is_dir() && unified_dir.is_dir());
    // cpuset: both new levels got the root's CPUs, or adding a task would fail (ENOSPC).
    let cpus = read("/sys/fs/cgroup/cpuset/cpuset.cpus");
    assert_eq!(
        read(format!("/sys/fs/cgroup/cpuset{parent_path}/cpuset.cpus")),
        cpus
    );
    assert_eq!(
        read(format!("/sys/fs/cgroup/cpuset{path}/cpuset.cpus")),
        cpus
    );

    cg.apply(&resources()).unwrap();
    assert_eq!(read(mem_dir.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(format!("/sys/fs/cgroup/pids{path}/pids.max")), "10");
    assert_eq!(read(format!("/sys/fs/cgroup/cpu{path}/cpu.shares")), "512");
    assert_eq!(
        read(format!("/sys/fs/cgroup/devices{path}/devices.list")),
        "c 1:3 rwm"
    );
    // Hybrid: the same rules also became a BPF device filter on the unified directory.
    assert_eq!(
        cgroups::attached_device_filters(&unified_dir)
            .unwrap()
            .len(),
        1
    );

    // The shell waits for a line, then execs sleep: the exec happens inside the cgroup,
    // so its memory is charged there (v1 does not move charges of migrated tasks).
    let mut child = Command::new("sh")
        .args(["-c", "read x; exec sleep 30"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    guard.child = Some(child);
    cg.add_process(pid).unwrap();
    writeln!(stdin, "go").unwrap();
    drop(stdin);

    let proc_cgroup = read(format!("/proc/{pid}/cgroup"));
    assert!(
        proc_cgroup
            .lines()
            .any(|l| l.ends_with(&format!(":memory:{path}"))),
        "{proc_cgroup}"
    );
    assert!(
        proc_cgroup.lines().any(|l| l == format!("0::{path}")),
        "{proc_cgroup}"
    );
    assert!(
        proc_cgroup
            .lines()
            .any(|l| l.ends_with(&format!(":name=systemd:{path}"))),
        "{proc_cgroup}"
    );
    assert!(cg.procs().unwrap().contains(&pid));
    // Descendants count too.
    assert!(parent.procs().unwrap().contains(&pid));

    cg.freeze().unwrap();
    assert_eq!(
        read(format!("/sys/fs/cgroup/freezer{path}/freezer.state")),
        "FROZEN"
    );
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(
        read(format!("/sys/fs/cgroup/freezer{path}/freezer.state")),
        "THAWED"
    );
    assert!(!cg.is_frozen().unwrap());

    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let s = cg.stats().unwrap();
        if s.memory_usage > 0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(stats.memory_usage > 0, "{stats:?}");
    assert!(stats.pids_current >= 1, "{stats:?}");
    assert_eq!(stats.pids_limit, 10);
    assert_eq!(stats.memory_limit, 64 << 20);
    assert_eq!(cg.oom_kill_count().unwrap(), 0);

    // Busy while the child lives: destroy reports it with the path.
    let err = cg.destroy().unwrap_err().to_string();
    assert!(
        err.contains("rmdir") && err.contains("cgroups-crate-test-"),
        "{err}"
    );

    let mut child = guard.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    cg.destroy().unwrap();
    assert!(!cg.exists());
    assert!(!mem_dir.exists() && !unified_dir.exists());
    // Only the leaf goes; the parent is someone else's to remove.
    assert!(parent.exists());
    parent.destroy().unwrap();
    assert!(!parent.exists());
    assert_eq!(cg.procs().unwrap(), Vec::<i32>::new());
}

#[test]
fn swap_limits_grow_and_shrink_on_the_real_kernel() {
    let layout = host_layout();
    let cg = Cgroup::new(&layout, &unique("swap"), "x").unwrap();
    let _guard = Guard {
        cgroups: vec![cg.clone()],
        child: None,
    };
    cg.create().unwrap();
    let dir = cg.dir("memory").unwrap().to_path_buf();
    if !dir.join("memory.memsw.limit_in_bytes").exists() {
        panic!("this host was expected to have swap accounting (memory.memsw.*)");
    }
    let set = |limit: i64, swap: i64| {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(dir.join("memory.limit_in_bytes")), limit.to_string());
        assert_eq!(
            read(dir.join("memory.memsw.limit_in_bytes")),
            swap.to_string()
        );
    };
    // Each step would fail with EINVAL if the two files were written in the wrong order.
    set(64 << 20, 128 << 20);
    set(256 << 20, 512 << 20);
    set(32 << 20, 64 << 20);
    cg.destroy().unwrap();
    assert!(!cg.exists());
}

#[test]
fn subcgroups_are_removed_first() {
    let layout = host_layout();
    let cg = Cgroup::new(&layout, &unique("nested"), "x").unwrap();
    let _guard = Guard {
        cgroups: vec![cg.clone()],
        child: None,
    };
    cg.create().unwrap();
    for dir in cg.paths().dirs.values() {
        std::fs::create_dir_all(dir.join("inner/deeper")).unwrap();
    }
    cg.destroy().unwrap();
    assert!(!cg.exists());
}
