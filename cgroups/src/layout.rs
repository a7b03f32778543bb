//! Which cgroup hierarchies the host has mounted, read from mountinfo.

use std::path::{Path, PathBuf};

use crate::{CgroupError, Layout, Result, V1Hierarchy};

/// v1 controllers the kernel knows. Everything else in a cgroup mount's super options
/// (rw, relatime, xattr, clone_children, noprefix, release_agent=...) is a mount option.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// One parsed mountinfo line, only the fields we need (proc(5), /proc/pid/mountinfo).
struct MountLine {
    root: PathBuf,
    mount_point: PathBuf,
    fstype: String,
    super_opts: String,
}

fn parse_line(line: &str) -> Option<MountLine> {
    // Optional fields before " - " vary in number, so split on the separator first.
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let root = unescape(pre.get(3)?);
    let mount_point = unescape(pre.get(4)?);
    let mut post = post.split(' ');
    let fstype = post.next()?.to_string();
    let _source = post.next()?;
    let super_opts = post.next().unwrap_or("").to_string();
    Some(MountLine {
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        fstype,
        super_opts,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn controllers_of(super_opts: &str) -> Vec<String> {
    super_opts
        .split(',')
        .filter(|o| o.starts_with("name=") || V1_CONTROLLERS.contains(o))
        .map(str::to_string)
        .collect()
}

impl Layout {
    /// Reads /proc/self/mountinfo.
    pub fn detect() -> Result<Layout> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|e| crate::fs::io_err("read", path, e))?;
        Layout::from_mountinfo(&text)
    }

    /// Parses the text of a mountinfo file.
    ///
    /// The same hierarchy can be mounted more than once (bind mounts, nested containers);
    /// the first mount of each controller set wins, as in runc.
    pub fn from_mountinfo(text: &str) -> Result<Layout> {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut cgroup2: Vec<PathBuf> = Vec::new();
        for line in text.lines() {
            let Some(m) = parse_line(line) else { continue };
            match m.fstype.as_str() {
                "cgroup" => {
                    let controllers = controllers_of(&m.super_opts);
                    if controllers.is_empty()
                        || hierarchies.iter().any(|h| h.controllers == controllers)
                    {
                        continue;
                    }
                    hierarchies.push(V1Hierarchy {
                        controllers,
                        mount_point: m.mount_point,
                        root: m.root,
                    });
                }
                "cgroup2" => cgroup2.push(m.mount_point),
                _ => {}
            }
        }
        // Prefer the conventional places, so a stray cgroup2 mount elsewhere (a
        // container's bind mount, a test) does not win over the host's.
        let unified = cgroup2
            .iter()
            .find(|p| p.as_path() == Path::new(DEFAULT_ROOT))
            .or_else(|| {
                cgroup2
                    .iter()
                    .find(|p| p.as_path() == Path::new("/sys/fs/cgroup/unified"))
            })
            .or_else(|| cgroup2.first())
            .cloned();
        let has_v1_controllers = hierarchies
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        match unified {
            Some(root) if !has_v1_controllers => Ok(Layout::V2 { root }),
            None if hierarchies.is_empty() => Err(CgroupError::NoCgroups),
            unified => Ok(Layout::V1 {
                hierarchies,
                unified,
            }),
        }
    }

    /// The v1 hierarchies (empty on a pure v2 host), for mounting them in a container.
    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        match self {
            Layout::V1 { hierarchies, .. } => hierarchies,
            Layout::V2 { .. } => &[],
        }
    }

    /// The v1 hierarchy that has `controller` ("memory", "name=systemd").
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1_hierarchies().iter().find(|h| h.has(controller))
    }

    /// The cgroup2 mount: the whole tree on v2, the hybrid `unified` mount on v1.
    pub fn unified_mount(&self) -> Option<&Path> {
        match self {
            Layout::V1 { unified, .. } => unified.as_deref(),
            Layout::V2 { root } => Some(root),
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// v1 controllers plus a cgroup2 mount (systemd's "hybrid" mode).
    pub fn is_hybrid(&self) -> bool {
        matches!(
            self,
            Layout::V1 {
                unified: Some(_),
                ..
            }
        )
    }
}

impl V1Hierarchy {
    /// The key of this hierarchy in [`crate::CgroupPaths::dirs`]: the controllers joined
    /// with "," ("cpu,cpuacct"), which is also the directory name the kernel docs use.
    pub fn key(&self) -> String {
        self.controllers.join(",")
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const COMOUNTED: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset,clone_children
34 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids,release_agent=/x
35 25 0:29 /docker /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
";

    #[test]
    fn parses_this_hybrid_host() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        assert!(l.is_hybrid());
        assert!(!l.is_v2());
        let keys: Vec<String> = l.v1_hierarchies().iter().map(V1Hierarchy::key).collect();
        assert_eq!(
            keys,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd"
            ]
        );
        assert_eq!(l.unified_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
        let sd = l.v1_hierarchy("name=systemd").unwrap();
        assert_eq!(sd.mount_point, Path::new("/sys/fs/cgroup/systemd"));
        assert_eq!(sd.root, Path::new("/"));
    }

    #[test]
    fn parses_pure_v2() {
        let l = Layout::from_mountinfo(PURE_V2).unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
        assert!(l.v1_hierarchies().is_empty());
    }

    #[test]
    fn parses_comounted_and_ignores_options_and_duplicates() {
        let l = Layout::from_mountinfo(COMOUNTED).unwrap();
        let keys: Vec<String> = l.v1_hierarchies().iter().map(V1Hierarchy::key).collect();
        assert_eq!(
            keys,
            [
                "name=systemd",
                "cpu,cpuacct",
                "net_cls,net_prio",
                "memory",
                "cpuset",
                "pids"
            ]
        );
        assert_eq!(
            l.v1_hierarchy("cpuacct").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(l.v1_hierarchy("memory").unwrap().root, Path::new("/"));
        assert!(l.is_hybrid());
    }

    #[test]
    fn no_cgroups_and_escapes() {
        assert!(matches!(
            Layout::from_mountinfo("22 28 0:21 / /sys rw - sysfs sysfs rw\n"),
            Err(CgroupError::NoCgroups)
        ));
        let l = Layout::from_mountinfo("1 2 0:1 / /tmp/a\\040b rw - cgroup2 none rw\n").unwrap();
        assert_eq!(l.unified_mount(), Some(Path::new("/tmp/a b")));
    }

    #[test]
    fn only_named_v1_with_cgroup2_root_is_v2() {
        let text = "\
1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
2 1 0:2 / /run/systemd/x rw - cgroup cgroup rw,none,name=foo
";
        assert!(Layout::from_mountinfo(text).unwrap().is_v2());
    }
}
