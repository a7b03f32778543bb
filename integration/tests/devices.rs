//! Devices: `linux.devices` nodes, and the device cgroup rules that decide which device
//! nodes the container may open.
//!
//! The probe device is /dev/fuse (c 10:229): opening it has no side effect, and it is
//! not among the devices every container may use, so only a rule for it lets it open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::{
    CGROUP_PARENT, COMMAND_TIMEOUT, Output, Runtime, STATE_TIMEOUT, TestContainer, json,
    run_with_timeout, wait_for,
};

const FUSE_MAJOR: u32 = 10;
const FUSE_MINOR: u32 = 229;

/// Prints "opened" if the container can open `path` for reading (`true` is a builtin,
/// so a refused open leaves the shell running and says why on stderr).
fn open_probe(path: &str) -> String {
    format!("if true <{path}; then echo opened; else echo refused; fi")
}

/// Makes a c 10:229 node at `/fuse-node` in the rootfs from the host, where nothing
/// asks the container's device rules whether it may.
fn host_made_node(tc: &TestContainer) -> PathBuf {
    let node = tc.rootfs().join("fuse-node");
    let out = run_with_timeout(
        {
            let mut c = Command::new("mknod");
            c.args(["-m", "666"]).arg(&node).args([
                "c",
                &FUSE_MAJOR.to_string(),
                &FUSE_MINOR.to_string(),
            ]);
            c
        },
        COMMAND_TIMEOUT,
    );
    out.ok();
    node
}

fn allow_fuse_rule() -> integration::Value {
    json!({ "allow": true, "type": "c", "major": FUSE_MAJOR, "minor": FUSE_MINOR, "access": "rw" })
}

#[test]
fn a_device_without_a_rule_cannot_be_opened() {
    let tc = TestContainer::new(&["sh", "-c", &open_probe("/fuse-node")]);
    host_made_node(&tc);
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "refused\n", "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

#[test]
fn a_resources_device_rule_lets_it_open() {
    let mut tc = TestContainer::new(&["sh", "-c", &open_probe("/fuse-node")]);
    host_made_node(&tc);
    tc.config()["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(allow_fuse_rule());
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "opened\n", "{out}");
}

/// A container whose `linux.devices` has /dev/fuse, and that prints the node's type,
/// numbers, mode and owner, then whether it opens.
fn fuse_device_container(rt: Runtime) -> TestContainer {
    let script = format!(
        "stat -c '%F %t:%T %a %u:%g' /dev/fuse; {}",
        open_probe("/dev/fuse")
    );
    let mut tc = TestContainer::with_runtime(rt, &["sh", "-c", &script]);
    // 0o664 would come out 0o644 if the runtime's umask leaked into mknod.
    tc.config()["linux"]["devices"] = json!([{
        "path": "/dev/fuse", "type": "c", "major": FUSE_MAJOR, "minor": FUSE_MINOR,
        "fileMode": 0o664, "uid": 1234, "gid": 5678
    }]);
    tc
}

/// stat prints the major and minor in hex: 10:229 is a:e5.
const FUSE_STAT: &str = "character special file a:e5 664 1234:5678";

#[test]
fn linux_devices_are_created_as_specified_and_allowed() {
    let mut tc = fuse_device_container(Runtime::from_env());
    // With the allow rule that docker and containerd add next to each device.
    tc.config()["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(allow_fuse_rule());
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, format!("{FUSE_STAT}\nopened\n"), "{out}");
}

/// ocirun also allows every `linux.devices` node by itself; runc 1.1
/// creates the node but leaves it denied unless a resources rule allows it.
#[test]
fn ocirun_allows_linux_devices_without_a_rule() {
    let tc = fuse_device_container(Runtime::ocirun());
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, format!("{FUSE_STAT}\nopened\n"), "{out}");
}

/// The container's directory on the cgroup2 mount of this hybrid host.
fn unified_dir(tc: &TestContainer) -> PathBuf {
    Path::new("/sys/fs/cgroup/unified")
        .join(CGROUP_PARENT)
        .join(&tc.id)
}

/// `rt run` of the container inside a private mount namespace in which the v1 devices
/// hierarchy is unmounted: the runtime then sees no devices controller, and the rules
/// can only be enforced by ocirun's BPF device filter on the unified directory.
fn run_without_v1_devices(tc: &TestContainer) -> Output {
    tc.save();
    let rt = tc.command(&["run", "--bundle", tc.bundle_dir().to_str().unwrap(), &tc.id]);
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "umount /sys/fs/cgroup/devices && \
             ! grep -q ' /sys/fs/cgroup/devices ' /proc/self/mountinfo && exec \"$@\"",
        )
        .arg("sh")
        .arg(rt.get_program())
        .args(rt.get_args());
    run_with_timeout(c, COMMAND_TIMEOUT)
}

#[test]
fn ocirun_bpf_device_filter_alone_enforces_the_rules() {
    let tc =
        TestContainer::with_runtime(Runtime::ocirun(), &["sh", "-c", &open_probe("/fuse-node")]);
    host_made_node(&tc);
    let out = run_without_v1_devices(&tc);
    out.ok();
    assert_eq!(out.stdout, "refused\n", "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
    // No v1 devices cgroup was made for it: the refusal was the BPF filter's.
    assert!(
        !Path::new("/sys/fs/cgroup/devices")
            .join(CGROUP_PARENT)
            .join(&tc.id)
            .exists()
    );

    let script = format!("{}; {}", open_probe("/fuse-node"), open_probe("/dev/null"));
    let mut tc = TestContainer::with_runtime(Runtime::ocirun(), &["sh", "-c", &script]);
    host_made_node(&tc);
    tc.config()["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(allow_fuse_rule());
    let out = run_without_v1_devices(&tc);
    out.ok();
    assert_eq!(out.stdout, "opened\nopened\n", "{out}");
}

#[test]
fn ocirun_update_replaces_the_device_filter() {
    let tc = TestContainer::with_runtime(Runtime::ocirun(), &["sleep", "60"]);
    host_made_node(&tc);
    tc.run_detached();
    wait_for(STATE_TIMEOUT, "the container to run", || {
        (tc.status() == "running").then_some(())
    });
    let probe = || {
        let out = tc.run(&["exec", &tc.id, "sh", "-c", &open_probe("/fuse-node")]);
        out.ok();
        out
    };
    let out = probe();
    assert_eq!(out.stdout, "refused\n", "{out}");
    let before = cgroups::attached_device_filters(&unified_dir(&tc)).unwrap();
    assert_eq!(before.len(), 1, "{before:?}");

    let resources = tc.bundle_dir().join("resources.json");
    std::fs::write(
        &resources,
        json!({ "devices": [ { "allow": false, "access": "rwm" }, allow_fuse_rule() ] })
            .to_string(),
    )
    .unwrap();
    tc.run(&["update", "-r", resources.to_str().unwrap(), &tc.id])
        .ok();
    let out = probe();
    assert_eq!(out.stdout, "opened\n", "{out}");
    let after = cgroups::attached_device_filters(&unified_dir(&tc)).unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(before, after, "the old filter was not replaced");
    // The v1 controller got the same rules.
    let list = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/devices")
            .join(CGROUP_PARENT)
            .join(&tc.id)
            .join("devices.list"),
    )
    .unwrap();
    assert!(list.lines().any(|l| l == "c 10:229 rw"), "{list}");
    // And the default devices are still there.
    let out = tc.run(&["exec", &tc.id, "sh", "-c", &open_probe("/dev/null")]);
    assert_eq!(out.ok().stdout, "opened\n", "{out}");
}
