//! Namespaces: hostname, mounts, sysctls, and joining another container's namespaces.
use integration::{TestContainer, json, mounts_containing, ns_link};

#[test]
fn hostname_comes_from_config() {
    let mut tc = TestContainer::new(&["hostname"]);
    tc.config()["hostname"] = "it-host".into();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "it-host\n", "{out}");
}

#[test]
fn container_mounts_do_not_leak_to_host() {
    let mut tc = TestContainer::new(&["sh", "-c", "grep ' /mnt ' /proc/self/mountinfo"]);
    tc.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let out = tc.run_foreground(&[]);
    out.ok();
    assert!(
        out.stdout.contains("tmpfs"),
        "the tmpfs is mounted inside:\n{out}"
    );
    let bundle = tc.bundle_dir().to_str().unwrap().to_string();
    let leaked = mounts_containing(&bundle);
    assert!(leaked.is_empty(), "host sees container mounts: {leaked:#?}");
}

#[test]
fn sysctls_are_applied_in_new_namespaces() {
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
    ]);
    tc.config()["linux"]["sysctl"] = json!({
        "kernel.shmmax": "123456789",
        "net.ipv4.ip_forward": "1"
    });
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "123456789\n1\n", "{out}");
}

#[test]
fn container_joins_another_containers_namespaces_by_path() {
    let a = TestContainer::new(&["sleep", "30"]);
    let a_pid = a.run_detached();
    let a_net = ns_link(&a_pid.to_string(), "net");
    let a_uts = ns_link(&a_pid.to_string(), "uts");

    let mut b = TestContainer::new(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname",
    ]);
    for ns in b.config()["linux"]["namespaces"].as_array_mut().unwrap() {
        match ns["type"].as_str() {
            Some("network") => ns["path"] = format!("/proc/{a_pid}/ns/net").into(),
            Some("uts") => ns["path"] = format!("/proc/{a_pid}/ns/uts").into(),
            _ => {}
        }
    }
    // A hostname cannot be set in a joined uts namespace: runc refuses the combination.
    b.config().as_object_mut().unwrap().remove("hostname");
    let out = b.run_foreground(&[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&a_net.as_str()), "{out}");
    assert_eq!(lines.get(1), Some(&a_uts.as_str()), "{out}");
    assert_eq!(
        lines.get(2),
        Some(&"ocirun"),
        "A's hostname is seen:\n{out}"
    );
    assert_ne!(a_net, ns_link("self", "net"));
}

/// With a cgroup namespace the container's own cgroups are its root: /proc/self/cgroup
/// shows "/" for every hierarchy, and without one it shows the host path (the id).
#[test]
fn cgroup_namespace_roots_the_view_at_the_containers_cgroup() {
    let mut tc = TestContainer::new(&["cat", "/proc/self/cgroup"]);
    tc.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "cgroup" }));
    let out = tc.run_foreground(&[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!lines.is_empty(), "{out}");
    for line in &lines {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        assert_eq!(
            path, "/",
            "inside a cgroup namespace every path is /: {out}"
        );
    }

    let tc = TestContainer::new(&["cat", "/proc/self/cgroup"]);
    let out = tc.run_foreground(&[]);
    out.ok();
    assert!(
        out.stdout.lines().any(|l| l.ends_with(&tc.id)),
        "without one the host path shows the container's cgroup: {out}"
    );
}
