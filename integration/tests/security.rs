//! Privileges: capabilities, masked and readonly paths, readonly rootfs,
//! no_new_privs, oom_score_adj, uid/gid/groups, umask and user namespaces.
use std::io::Read;

use integration::{
    TestContainer, Value, cap_mask, chown_tree, json, proc_status_field, status_field, wait_for,
};

/// Runs `grep Cap /proc/self/status` in a container with `config.process.capabilities`
/// and checks each set against the masks computed from the capability names.
fn assert_caps_match_spec(tc: &mut TestContainer) {
    let caps = tc.config()["process"]["capabilities"].clone();
    let out = tc.run_foreground(&[]);
    out.ok();
    let inh = cap_mask(&caps["inheritable"]);
    let prm = cap_mask(&caps["permitted"]);
    // The kernel keeps an ambient capability only if it is also permitted and
    // inheritable (capabilities(7)), whatever the runtime asked for.
    let amb = cap_mask(&caps["ambient"]) & prm & inh;
    for (field, want) in [
        ("CapInh", inh),
        ("CapPrm", prm),
        ("CapEff", cap_mask(&caps["effective"])),
        ("CapBnd", cap_mask(&caps["bounding"])),
        ("CapAmb", amb),
    ] {
        let got = status_field(&out.stdout, field);
        assert_eq!(got, Some(format!("{want:016x}")), "{field}:\n{out}");
    }
}

#[test]
fn default_capabilities_match_spec() {
    let mut tc = TestContainer::new(&["grep", "Cap", "/proc/self/status"]);
    assert_caps_match_spec(&mut tc);
}

#[test]
fn added_capability_sys_admin_matches_spec() {
    let mut tc = TestContainer::new(&["grep", "Cap", "/proc/self/status"]);
    let set = json!([
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_ADMIN"
    ]);
    tc.config()["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set, "inheritable": set, "ambient": set
    });
    assert_caps_match_spec(&mut tc);
}

/// The first of `config.linux.maskedPaths` that is a file with content on this host
/// (/proc/kcore where the kernel has it; some VMs do not, so fall back to the others).
fn masked_file_with_content(tc: &TestContainer) -> String {
    let masked = tc.bundle.config["linux"]["maskedPaths"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = masked
        .iter()
        .filter_map(Value::as_str)
        .find(|p| {
            let mut byte = [0u8; 1];
            std::fs::File::open(p).is_ok_and(|mut f| f.read(&mut byte).is_ok_and(|n| n == 1))
        })
        .map(str::to_string);
    assert!(
        found.is_some(),
        "no masked /proc file with content on the host"
    );
    found.unwrap_or_default()
}

#[test]
fn masked_file_reads_empty() {
    let mut tc = TestContainer::new(&["true"]);
    let path = masked_file_with_content(&tc);
    tc.config()["process"]["args"] = json!(["sh", "-c", format!("wc -c < {path}")]);
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout.trim(), "0", "{path}:\n{out}");
}

#[test]
fn masked_directory_lists_empty() {
    let tc = TestContainer::new(&["sh", "-c", "ls -A /sys/firmware; echo end"]);
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "end\n", "{out}");
    assert!(
        std::fs::read_dir("/sys/firmware").is_ok_and(|mut d| d.next().is_some()),
        "the host's /sys/firmware is not empty, so the mask did the work"
    );
}

#[test]
fn readonly_path_refuses_writes() {
    let tc = TestContainer::new(&["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
    let out = tc.run_foreground(&[]);
    out.assert_failed();
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

#[test]
fn readonly_rootfs_refuses_writes_but_tmpfs_is_writable() {
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "touch /x; echo touch=$?; echo data > /tmp/y && cat /tmp/y",
    ]);
    tc.config()["root"]["readonly"] = true.into();
    tc.config()["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let out = tc.run_foreground(&[]);
    out.ok();
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(out.stdout.contains("touch=1\n"), "{out}");
    assert!(out.stdout.ends_with("data\n"), "{out}");
    assert!(!tc.rootfs().join("x").exists());
}

#[test]
fn no_new_privileges_is_set() {
    let tc = TestContainer::new(&["grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(tc.bundle.config["process"]["noNewPrivileges"], true);
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs").as_deref(),
        Some("1"),
        "{out}"
    );
}

#[test]
fn oom_score_adj_is_set() {
    let mut tc = TestContainer::new(&["cat", "/proc/self/oom_score_adj"]);
    tc.config()["process"]["oomScoreAdj"] = 500.into();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "500\n", "{out}");
}

#[test]
fn user_group_and_additional_gids() {
    let mut tc = TestContainer::new(&["sh", "-c", "id -u; id -g; id -G"]);
    tc.config()["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [5] });
    let out = tc.run_foreground(&[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "{out}");
    assert_eq!(lines.get(1), Some(&"1000"), "{out}");
    let groups: Vec<&str> = lines.get(2).unwrap_or(&"").split_whitespace().collect();
    assert!(groups.contains(&"5"), "{out}");
}

#[test]
fn umask_is_applied() {
    let mut tc = TestContainer::new(&["sh", "-c", "umask"]);
    tc.config()["process"]["user"]["umask"] = 0o077.into();
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "0077\n", "{out}");
}

/// A container with a user namespace mapping container ids 0..65536 to host ids
/// 100000.., whose rootfs belongs to the mapped root (runc requires this too).
fn userns_container(args: &[&str]) -> TestContainer {
    let mut tc = TestContainer::new(args);
    let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    let linux = &mut tc.config()["linux"];
    let namespaces = linux["namespaces"].as_array_mut();
    assert!(namespaces.is_some(), "default config has namespaces");
    if let Some(ns) = namespaces {
        ns.push(json!({ "type": "user" }));
    }
    linux["uidMappings"] = map.clone();
    linux["gidMappings"] = map;
    let chowned = chown_tree(&tc.rootfs(), 100000, 100000);
    assert!(chowned.is_ok(), "chown rootfs: {chowned:?}");
    tc
}

#[test]
fn user_namespace_maps_root() {
    let tc = userns_container(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let out = tc.run_foreground(&[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "{out}");
    let map: Vec<&str> = lines.get(1).unwrap_or(&"").split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"], "{out}");
}

#[test]
fn user_namespace_process_runs_as_mapped_uid_on_host() {
    let tc = userns_container(&["sleep", "30"]);
    let pid = tc.run_detached();
    let uid = wait_for(integration::STATE_TIMEOUT, "the container's Uid", || {
        proc_status_field(pid, "Uid")
    });
    let uids: Vec<&str> = uid.split_whitespace().collect();
    assert_eq!(uids, ["100000"; 4], "host view of the container's uids");
    let gid = proc_status_field(pid, "Gid").unwrap_or_default();
    assert_eq!(gid.split_whitespace().next(), Some("100000"));
}

/// CVE-2019-5736: while a created container's init still runs the runtime's code, the
/// container can reach that binary through /proc/PID/exe. It must not be able to write
/// it (runc and ocirun both exec from a protected copy).
#[test]
fn runtime_binary_is_not_writable_through_proc_exe() {
    let tc = TestContainer::new(&["true"]);
    tc.create().ok();
    let pid = tc.pid();
    let exe = format!("/proc/{pid}/exe");
    // A read-only mount refuses the open (EROFS), a sealed memfd the write (EPERM), an
    // executing memfd the open (ETXTBSY; a busy host binary also says ETXTBSY, hence the
    // second check). Appending nothing would prove nothing, so append a byte.
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\0"));
    let err = written.expect_err("the runtime binary was writable through /proc/PID/exe");
    assert!(
        matches!(err.raw_os_error(), Some(30 | 1 | 26)),
        "expected EROFS, EPERM or ETXTBSY, got {err}"
    );
    // Whatever it is, it is not the file the runtime was started from.
    let target = std::fs::read_link(&exe).expect("readlink exe");
    let runtime = std::fs::canonicalize(tc.rt.path()).expect("canonical runtime");
    assert_ne!(target, runtime, "init runs the host binary itself");
    tc.delete_force().ok();
}
