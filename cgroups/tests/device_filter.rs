//! The cgroup v2 device filter (a BPF_PROG_TYPE_CGROUP_DEVICE program) on the real
//! kernel. This host is hybrid, but its cgroup2 mount at /sys/fs/cgroup/unified takes
//! BPF device programs like any v2 host, whatever controllers it holds; a directory
//! there stands in for the root of a v2 host, so the cgroup goes through the v2 code
//! path. Needs root; a missing prerequisite fails the test, it never passes silently.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use cgroups::{Cgroup, Layout, LinuxResources, attached_device_filters};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResourcesBuilder};

const UNIFIED: &str = "/sys/fs/cgroup/unified";

static N: AtomicU32 = AtomicU32::new(0);

/// A cgroup under a fresh directory of the cgroup2 mount, used as a v2 layout's root
/// (so creating it enables no controller on the host's real root), removed on drop.
struct V2Cgroup {
    root: PathBuf,
    cg: Cgroup,
}

impl V2Cgroup {
    fn new(tag: &str) -> V2Cgroup {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(&format!(" {UNIFIED} ")) && l.contains(" - cgroup2 ")),
            "this test needs the cgroup2 mount at {UNIFIED}"
        );
        let root = Path::new(UNIFIED).join(format!(
            "cgroups-devfilter-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        let layout = Layout::V2 { root: root.clone() };
        let cg = Cgroup::new(&layout, "/ctr", "ctr").unwrap();
        let me = V2Cgroup { root, cg };
        me.cg.create().unwrap();
        assert!(me.cg.is_v2());
        me
    }

    fn dir(&self) -> &Path {
        self.cg.unified_dir().unwrap()
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        let _ = self.cg.destroy();
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(Some(major));
    r.set_minor(Some(minor));
    r.set_access(Some(access.to_string()));
    r
}

fn deny_all() -> LinuxDeviceCgroup {
    LinuxDeviceCgroup::default()
}

fn devices(rules: Vec<LinuxDeviceCgroup>) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .devices(rules)
        .build()
        .unwrap()
}

/// Runs `script` in a shell that is moved into the cgroup before it runs anything (it
/// waits for a line on stdin first), so every open in the script is checked by the
/// cgroup's filter. Returns (stdout, stderr).
fn probe(cg: &Cgroup, script: &str) -> (String, String) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("read _ || exit 99; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let moved = cg.add_process(pid);
    let mut stdin = child.stdin.take().unwrap();
    if moved.is_ok() {
        writeln!(stdin, "go").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    moved.unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// For each device: can it be opened for reading, and for writing?
const CHECKS: &str = "for d in null zero full; do \
    if true </dev/$d; then echo $d-r=ok; else echo $d-r=denied; fi; \
    if true >/dev/$d; then echo $d-w=ok; else echo $d-w=denied; fi; \
    done";

fn results(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

#[test]
fn device_filter_enforces_rules_and_is_replaced_on_update() {
    let v2 = V2Cgroup::new("enforce");
    assert_eq!(
        attached_device_filters(v2.dir()).unwrap(),
        Vec::<u32>::new()
    );

    // Control: without a filter every device opens.
    let (out, err) = probe(&v2.cg, CHECKS);
    assert_eq!(
        results(&out),
        [
            "null-r=ok",
            "null-w=ok",
            "zero-r=ok",
            "zero-w=ok",
            "full-r=ok",
            "full-w=ok"
        ],
        "{err}"
    );

    // /dev/null (c 1:3) denied; /dev/zero (c 1:5) allowed; /dev/full (c 1:7) allowed
    // by a rule whose write access a later rule takes away again.
    use LinuxDeviceType::C;
    v2.cg
        .apply(&devices(vec![
            deny_all(),
            rule(true, C, 1, 5, "rwm"),
            rule(true, C, 1, 7, "rwm"),
            rule(false, C, 1, 7, "w"),
        ]))
        .unwrap();
    let first = attached_device_filters(v2.dir()).unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    let (out, err) = probe(&v2.cg, CHECKS);
    assert_eq!(
        results(&out),
        [
            "null-r=denied",
            "null-w=denied",
            "zero-r=ok",
            "zero-w=ok",
            "full-r=ok",
            "full-w=denied"
        ],
        "{err}"
    );
    // The kernel's answer is EPERM, for each of the three refusals.
    assert_eq!(err.matches("Operation not permitted").count(), 3, "{err}");

    // An update replaces the filter: attach the new one, detach the old one.
    v2.cg
        .apply(&devices(vec![deny_all(), rule(true, C, 1, 3, "rw")]))
        .unwrap();
    let second = attached_device_filters(v2.dir()).unwrap();
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second, "the old program is still attached");
    let (out, err) = probe(&v2.cg, CHECKS);
    assert_eq!(
        results(&out),
        [
            "null-r=ok",
            "null-w=ok",
            "zero-r=denied",
            "zero-w=denied",
            "full-r=denied",
            "full-w=denied"
        ],
        "{err}"
    );

    // Children of the cgroup are under its filter too (the kernel runs the
    // programs of every ancestor).
    let child = Layout::V2 {
        root: v2.root.clone(),
    };
    let nested = Cgroup::new(&child, "/ctr/inner", "x").unwrap();
    nested.create().unwrap();
    let (out, err) = probe(&nested, "true </dev/zero && echo open || echo denied");
    let _ = nested.destroy();
    assert_eq!(out, "denied\n", "{err}");
}

/// mknod is an access of its own ("m"): the default rules runtimes add allow mknod of
/// any char device while reads and writes stay denied.
#[test]
fn mknod_is_decided_separately_from_open() {
    let v2 = V2Cgroup::new("mknod");
    let tmp = tempfile::tempdir().unwrap();
    let mut mknod_any = LinuxDeviceCgroup::default();
    mknod_any.set_allow(true);
    mknod_any.set_typ(Some(LinuxDeviceType::C));
    mknod_any.set_access(Some("m".into()));
    v2.cg.apply(&devices(vec![deny_all(), mknod_any])).unwrap();
    let node = tmp.path().join("null2");
    let script = format!(
        "mknod {n} c 1 3 && echo made; if true <{n}; then echo open; else echo denied; fi; \
         mknod {n}-blk b 7 0 && echo made-blk || echo blk-denied",
        n = node.display()
    );
    let (out, err) = probe(&v2.cg, &script);
    assert_eq!(out, "made\ndenied\nblk-denied\n", "{err}");
}
