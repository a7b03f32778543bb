//! Mounts from the spec as the container sees them in /proc/self/mountinfo: bind mount
//! options (ro, rbind), the mqueue and devpts mounts, and `linux.rootfsPropagation`.
// Helpers fail their test on a broken precondition, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use integration::{STATE_TIMEOUT, TestContainer, json, wait_for};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The mountinfo line (proc(5)) whose mount point is `target`, split into the fields
/// before the " - " separator and those after it.
fn mount_line<'a>(mountinfo: &'a str, target: &str) -> Option<(Vec<&'a str>, Vec<&'a str>)> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        (pre.get(4) == Some(&target)).then(|| (pre, post.split(' ').collect()))
    })
}

/// A tmpfs mounted on the host at `at`; unmounted on drop (before the bundle goes).
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(at: &Path) -> HostMount {
        fs::create_dir_all(at).unwrap();
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", at.display()));
        HostMount(at.to_path_buf())
    }

    fn make_shared(&self) {
        mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn bind_mount_ro_is_readable_and_refuses_writes() {
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join("file"), "from the host\n").unwrap();
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "cat /data/file; echo x >/data/new && echo wrote; grep ' /data ' /proc/self/mountinfo",
    ]);
    tc.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": data.path(),
        "options": ["bind", "ro"]
    }));
    let out = tc.run_foreground(&[]);
    out.ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("from the host"), "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!out.stdout.contains("wrote"), "{out}");
    let info = lines.collect::<Vec<_>>().join("\n");
    let (pre, _) = mount_line(&info, "/data").unwrap_or_else(|| panic!("{out}"));
    assert!(pre[5].split(',').any(|o| o == "ro"), "{out}");
    assert!(!data.path().join("new").exists());
}

#[test]
fn rbind_takes_submounts_and_bind_does_not() {
    let data = tempfile::tempdir().unwrap();
    let _sub = HostMount::tmpfs(&data.path().join("sub"));
    fs::write(data.path().join("sub/inner"), "in a submount\n").unwrap();
    let mut tc = TestContainer::new(&["sh", "-c", "cat /r/sub/inner; echo bind:; ls -A /b/sub"]);
    let mounts = tc.config()["mounts"].as_array_mut().unwrap();
    mounts.push(json!({
        "destination": "/r", "type": "bind", "source": data.path(), "options": ["rbind"]
    }));
    mounts.push(json!({
        "destination": "/b", "type": "bind", "source": data.path(), "options": ["bind"]
    }));
    let out = tc.run_foreground(&[]);
    out.ok();
    // /b/sub is the (empty) directory the host's tmpfs is mounted on.
    assert_eq!(out.stdout, "in a submount\nbind:\n", "{out}");
}

#[test]
fn mqueue_and_devpts_are_mounted_as_specified() {
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "cat /proc/self/mountinfo; echo ptmx=$(readlink /dev/ptmx)",
    ]);
    let out = tc.run_foreground(&[]);
    out.ok();
    let (pre, post) = mount_line(&out.stdout, "/dev/mqueue").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(post[0], "mqueue", "{out}");
    let opts: Vec<&str> = pre[5].split(',').collect();
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(opts.contains(&o), "{o} missing from /dev/mqueue: {out}");
    }
    let (pre, post) = mount_line(&out.stdout, "/dev/pts").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(post[0], "devpts", "{out}");
    assert!(pre[5].split(',').any(|o| o == "noexec"), "{out}");
    // The spec's options reach the superblock: a new instance, not the host's.
    let sb: Vec<&str> = post[2].split(',').collect();
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(sb.contains(&o), "{o} missing from /dev/pts: {out}");
    }
    assert!(out.stdout.contains("ptmx=pts/ptmx"), "{out}");
}

/// The propagation tag ("shared:N", "master:N" or none) of `target` in the container.
fn propagation_of(mountinfo: &str, target: &str) -> Option<String> {
    let (pre, _) = mount_line(mountinfo, target)?;
    Some(
        pre[6..]
            .iter()
            .map(|f| f.split(':').next().unwrap_or(f))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A container whose rootfs holds a host mount that is shared (a peer group of its
/// own, as on a systemd host): `linux.rootfsPropagation` decides what the container's
/// copy of it becomes. This host's own / is private, so the mount makes the test.
fn propagation_container(propagation: Option<&str>) -> (TestContainer, HostMount) {
    let mut tc = TestContainer::new(&["sleep", "60"]);
    let shared = HostMount::tmpfs(&tc.rootfs().join("mnt/shared"));
    shared.make_shared();
    if let Some(p) = propagation {
        tc.config()["linux"]["rootfsPropagation"] = json!(p);
    }
    (tc, shared)
}

fn container_mountinfo(tc: &TestContainer) -> String {
    let out = tc.run(&["exec", &tc.id, "cat", "/proc/self/mountinfo"]);
    out.ok();
    out.stdout
}

#[test]
fn rootfs_propagation_decides_how_host_mounts_propagate() {
    for (propagation, tag, receives) in [
        (Some("rprivate"), "", false),
        (Some("rslave"), "master", true),
        (Some("rshared"), "shared", true),
        // Unset means rslave, as in runc.
        (None, "master", true),
    ] {
        let (tc, shared) = propagation_container(propagation);
        tc.run_detached();
        wait_for(STATE_TIMEOUT, "the container to run", || {
            (tc.status() == "running").then_some(())
        });
        let info = container_mountinfo(&tc);
        assert_eq!(
            propagation_of(&info, "/mnt/shared").as_deref(),
            Some(tag),
            "{propagation:?}:\n{info}"
        );
        // A mount the host makes afterwards reaches a slave or a peer, never a
        // private copy.
        let _late = HostMount::tmpfs(&shared.0.join("late"));
        let info = container_mountinfo(&tc);
        assert_eq!(
            mount_line(&info, "/mnt/shared/late").is_some(),
            receives,
            "{propagation:?}:\n{info}"
        );
        tc.delete_force().ok();
    }
}
