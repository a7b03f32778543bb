//! Facts about this host and daemon that `/info` and `/version` report, read from
//! the kernel and the daemon's own state rather than assumed.

use std::path::Path;

/// The architecture under Go's name, as docker clients compare it (`amd64`, not `x86_64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The daemon's identity, stable across restarts as dockerd's `engine-id`: made
/// once and kept in the data root.
pub fn engine_id(data_root: &Path) -> String {
    let path = data_root.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    let h = crate::util::random_hex(16);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    // Not fatal: an id that could not be kept is still an answer for this request.
    let _ = common::atomic::atomic_write(&path, id.as_bytes(), 0o600);
    id
}

/// The number of threads of this process (what `NGoroutines` stands for here).
pub fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whether memory+swap limits can be set: v1's memsw files exist only when the
/// kernel accounts swap; v2 has `memory.swap.max` below the root.
pub fn swap_limit() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || (Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory")))
}

/// Whether the CPU CFS bandwidth controls exist (cgroup v1 `cpu.cfs_quota_us`, or v2's `cpu.max`).
pub fn cpu_cfs() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()
        || Path::new("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "cpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = engine_id(dir.path());
        assert_eq!(a.len(), 36);
        assert_eq!(engine_id(dir.path()), a);
    }

    #[test]
    fn threads_counts_this_process() {
        assert!(threads() >= 1);
    }
}
