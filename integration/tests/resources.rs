//! Resources: cgroup limits (memory, pids, cpu, blkio) and process rlimits.
// Helpers fail their test on a broken precondition, like the tests themselves.
#![allow(clippy::panic)]
use std::path::Path;

use integration::{TestContainer, json};

const MEMORY_LIMIT: u64 = 32 * 1024 * 1024;

/// Holds 64 MiB in memory (busybox `tail` keeps the last 10 lines, and /dev/zero is
/// one endless line), then reports how `tail` ended: 0, or 137 when OOM-killed. The hog
/// marks itself the OOM killer's first choice (oom_score_adj 1000).
const MEMORY_HOG: &str = "head -c 67108864 /dev/zero | sh -c 'echo 1000 >/proc/self/oom_score_adj; exec tail' >/dev/null; echo tail=$?";

#[test]
fn memory_limit_is_written_to_cgroup() {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": MEMORY_LIMIT });
    tc.run_detached();
    let dir = tc.cgroup_dir("memory");
    let file = if dir.join("memory.max").exists() {
        dir.join("memory.max")
    } else {
        dir.join("memory.limit_in_bytes")
    };
    let got =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    assert_eq!(got.trim(), MEMORY_LIMIT.to_string(), "{}", file.display());
}

fn hog_container() -> TestContainer {
    TestContainer::new(&["sh", "-c", MEMORY_HOG])
}

#[test]
fn memory_hog_completes_without_limit() {
    // The control for the next test: the command itself works when memory is free.
    let tc = hog_container();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "tail=0\n", "{out}");
}

#[test]
fn memory_hog_is_oom_killed_over_limit() {
    let mut tc = hog_container();
    // swap = limit: no swap to spill into, so the kernel must kill.
    tc.config()["linux"]["resources"]["memory"] =
        json!({ "limit": MEMORY_LIMIT, "swap": MEMORY_LIMIT });
    let out = tc.run_foreground(&[]);
    // The kernel kills the hog first; but while its memory is still being freed a
    // second OOM can take the shell too (a kernel behaviour seen on 6.18; and
    // lowering the shell's oom_score_adj needs CAP_SYS_RESOURCE, which this host's
    // root lacks). Either way the limit killed: the control above shows the same
    // command succeeding without it.
    let hog_killed = out.code() == Some(0) && out.stdout == "tail=137\n";
    let shell_killed_too = out.code() == Some(137) && out.stdout.is_empty();
    assert!(
        hog_killed || shell_killed_too,
        "expected an OOM kill:\n{out}"
    );
}

#[test]
fn pids_limit_stops_forks() {
    const LIMIT: usize = 5;
    // Each successful fork prints a line; busybox sh gives up at the first failure.
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & echo started $i; done",
    ]);
    tc.config()["linux"]["resources"]["pids"] = json!({ "limit": LIMIT });
    let out = tc.run_foreground(&[]);
    out.assert_failed();
    let started = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("started"))
        .count();
    assert!(started < LIMIT, "{started} forks succeeded:\n{out}");
    assert!(started > 0, "{out}");
    assert!(out.stderr.contains("can't fork"), "{out}");
}

#[test]
fn rlimit_nofile_sets_ulimit() {
    let tc = TestContainer::new(&["sh", "-c", "ulimit -n; ulimit -Hn"]);
    let nofile = &tc.bundle.config["process"]["rlimits"][0];
    assert_eq!(nofile["type"], "RLIMIT_NOFILE");
    assert_eq!(
        (&nofile["soft"], &nofile["hard"]),
        (&json!(1024), &json!(1024))
    );
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "1024\n1024\n", "{out}");
}

/// The soft and hard columns of a `/proc/self/limits` row.
fn limits_row(limits: &str, name: &str) -> Option<(String, String)> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(name))?;
    let mut cols = rest.split_whitespace();
    Some((cols.next()?.to_string(), cols.next()?.to_string()))
}

#[test]
fn custom_rlimits_nproc_and_core() {
    let mut tc = TestContainer::new(&["cat", "/proc/self/limits"]);
    let rlimits = tc.config()["process"]["rlimits"].as_array_mut().unwrap();
    rlimits.push(json!({ "type": "RLIMIT_NPROC", "soft": 123, "hard": 456 }));
    rlimits.push(json!({ "type": "RLIMIT_CORE", "soft": 4096, "hard": 8192 }));
    let out = tc.run_foreground(&[]);
    out.ok();
    let row = |n| limits_row(&out.stdout, n);
    assert_eq!(
        row("Max processes"),
        Some(("123".into(), "456".into())),
        "{out}"
    );
    assert_eq!(
        row("Max core file size"),
        Some(("4096".into(), "8192".into())),
        "{out}"
    );
    assert_eq!(
        row("Max open files"),
        Some(("1024".into(), "1024".into())),
        "{out}"
    );
}

fn read_cgroup_file(dir: &Path, file: &str) -> String {
    let p = dir.join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn cpu_shares_quota_and_blkio_weight_are_written_to_cgroup() {
    let mut tc = TestContainer::new(&["sleep", "30"]);
    tc.config()["linux"]["resources"]["cpu"] =
        json!({ "shares": 512, "quota": 50000, "period": 100000 });
    tc.config()["linux"]["resources"]["blockIO"] = json!({ "weight": 300 });
    tc.run_detached();
    let cpu = tc.cgroup_dir("cpu");
    let blkio = tc.cgroup_dir("blkio");
    if cpu.join("cpu.max").exists() {
        // cgroup v2: shares 512 is weight 20 by the mapping runc and crun share.
        assert_eq!(read_cgroup_file(&cpu, "cpu.max"), "50000 100000");
        assert_eq!(read_cgroup_file(&cpu, "cpu.weight"), "20");
    } else {
        assert_eq!(read_cgroup_file(&cpu, "cpu.shares"), "512");
        assert_eq!(read_cgroup_file(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_cgroup_file(&cpu, "cpu.cfs_period_us"), "100000");
    }
    // With the BFQ scheduler (as here) the weight lives in blkio.bfq.weight, with
    // CFQ in blkio.weight; v2 has io.bfq.weight (same scale) or io.weight.
    let file = ["blkio.weight", "blkio.bfq.weight", "io.bfq.weight"]
        .into_iter()
        .find(|f| blkio.join(f).exists())
        .unwrap_or_else(|| panic!("no blkio weight file in {}", blkio.display()));
    let got = read_cgroup_file(&blkio, file);
    // io.bfq.weight reads "default 300".
    assert_eq!(got.trim_start_matches("default "), "300", "{file}");
}
