//! The OCI runtime spec of a container, built the way dockerd 20.10 builds it
//! (moby's oci/defaults.go and daemon/oci_linux.go): default mounts, masked and
//! read-only paths, the default capability set, the device cgroup allow list,
//! resources, and Docker's default seccomp profile unless told otherwise.

use std::path::Path;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};

/// Docker's default seccomp profile in OCI form (dockerd 20.10, default caps, x86_64).
const DEFAULT_SECCOMP: &str = include_str!("docker-default-seccomp.json");

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (for `--cap-add ALL`).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn cap_name(s: &str) -> String {
    let up = s.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after `--cap-add` / `--cap-drop` (names with or without
/// `CAP_`, any case, `ALL`).
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> ApiResult<Vec<String>> {
    if privileged {
        return Ok(ALL_CAPS.iter().map(|s| s.to_string()).collect());
    }
    let check = |c: &String| -> ApiResult<String> {
        let n = cap_name(c);
        if n == "CAP_ALL" || ALL_CAPS.contains(&n.as_str()) {
            Ok(n)
        } else {
            Err(ApiError::BadRequest(format!("unknown capability: {c:?}")))
        }
    };
    let add: Vec<String> = add.iter().map(check).collect::<ApiResult<_>>()?;
    let drop: Vec<String> = drop.iter().map(check).collect::<ApiResult<_>>()?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "CAP_ALL") {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if drop.iter().any(|c| c == "CAP_ALL") {
        caps.clear();
    }
    for c in add.into_iter().filter(|c| c != "CAP_ALL") {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

/// What the spec needs besides the container's own configuration.
#[derive(Debug)]
pub struct SpecInputs<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub config: &'a ContainerConfig,
    pub host: &'a HostConfig,
    /// Path and args of the process.
    pub args: Vec<String>,
    /// Resolved `uid`, `gid` and additional gids.
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Directory with this container's hostname, hosts and resolv.conf.
    pub container_dir: &'a Path,
    pub cgroup_parent: &'a str,
    /// Where named volumes live.
    pub volumes_dir: &'a Path,
}

/// The process environment as dockerd builds it: PATH, HOSTNAME, TERM for a tty,
/// then the container's variables (which win).
pub fn environment(hostname: &str, tty: bool, env: &[String]) -> Vec<String> {
    let mut out = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        out.push("TERM=xterm".into());
    }
    for e in env {
        let key = e.split('=').next().unwrap_or(e);
        if !e.contains('=') {
            out.retain(|o| o.split('=').next() != Some(key));
            continue;
        }
        if let Some(slot) = out.iter_mut().find(|o| o.split('=').next() == Some(key)) {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

fn seccomp_profile(security_opt: &[String]) -> ApiResult<Option<Value>> {
    let mut profile = Some(
        serde_json::from_str(DEFAULT_SECCOMP)
            .map_err(|e| ApiError::Internal(format!("built-in seccomp profile: {e}")))?,
    );
    for opt in security_opt {
        let (k, v) = opt
            .split_once(['=', ':'])
            .ok_or_else(|| ApiError::BadRequest(format!("invalid --security-opt: {opt}")))?;
        match k {
            "seccomp" if v == "unconfined" => profile = None,
            "seccomp" => {
                // The CLI sends the file's contents, in Docker's profile format; only
                // the OCI form (what our default is) is accepted here.
                let p: Value = serde_json::from_str(v).map_err(|e| {
                    ApiError::BadRequest(format!("decoding seccomp profile failed: {e}"))
                })?;
                if p.get("syscalls").is_none() && p.get("defaultAction").is_none() {
                    return Err(ApiError::BadRequest("invalid seccomp profile".into()));
                }
                profile = Some(docker_profile_to_oci(p));
            }
            "no-new-privileges" | "apparmor" | "label" => {}
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "invalid --security-opt 2: {opt:?}"
                )));
            }
        }
    }
    Ok(profile)
}

/// Docker's profile format names architectures in `archMap`; the OCI form wants a
/// flat `architectures` list. Everything else is shared.
fn docker_profile_to_oci(mut p: Value) -> Value {
    if p.get("architectures").is_none()
        && let Some(map) = p.get("archMap").and_then(Value::as_array).cloned()
    {
        let arches: Vec<Value> = map
            .iter()
            .filter(|m| m["architecture"] == "SCMP_ARCH_X86_64")
            .flat_map(|m| {
                let mut v = vec![m["architecture"].clone()];
                v.extend(
                    m["subArchitectures"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                v
            })
            .collect();
        p["architectures"] = Value::Array(arches);
    }
    if let Some(o) = p.as_object_mut() {
        o.remove("archMap");
    }
    p
}

fn no_new_privileges(security_opt: &[String]) -> bool {
    security_opt.iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
    })
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Value {
    json!({ "destination": dst, "type": typ, "source": src, "options": opts })
}

/// Builds `config.json` for the container (root path `rootfs`, as the shim expects).
pub fn build(i: &SpecInputs<'_>) -> ApiResult<Value> {
    let c = i.config;
    let h = i.host;
    let tty = c.tty.unwrap_or(false);
    let privileged = h.privileged.unwrap_or(false);
    let caps = capabilities(
        h.cap_add.as_deref().unwrap_or_default(),
        h.cap_drop.as_deref().unwrap_or_default(),
        privileged,
    )?;
    let security_opt = h.security_opt.clone().unwrap_or_default();
    let network = h.network_mode.as_deref().unwrap_or("default");
    let host_net = network == "host";
    let cwd = c
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(ApiError::BadRequest(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    let env = environment(i.hostname, tty, c.env.as_deref().unwrap_or_default());

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    for f in ["resolv.conf", "hostname", "hosts"] {
        let src = i.container_dir.join(f);
        mounts.push(json!({
            "destination": format!("/etc/{f}"),
            "type": "bind",
            "source": src,
            "options": ["rbind", "rprivate"]
        }));
    }
    for bind in h.binds.as_deref().unwrap_or_default() {
        mounts.push(bind_mount(bind, i.volumes_dir)?);
    }
    if let Some(tmpfs) = &h.tmpfs {
        let mut dsts: Vec<&String> = tmpfs.keys().collect();
        dsts.sort();
        for dst in dsts {
            if !dst.starts_with('/') {
                return Err(ApiError::BadRequest(format!(
                    "invalid mount path for tmpfs: {dst}"
                )));
            }
            let mut opts = vec!["noexec".to_string(), "nosuid".into(), "nodev".into()];
            opts.extend(
                tmpfs[dst]
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_string),
            );
            mounts.push(
                json!({ "destination": dst, "type": "tmpfs", "source": "tmpfs", "options": opts }),
            );
        }
    }
    // A later mount on the same destination replaces an earlier default one.
    let mut dedup: Vec<Value> = Vec::new();
    for m in mounts {
        dedup.retain(|d| d["destination"] != m["destination"]);
        dedup.push(m);
    }

    let mut namespaces = vec![
        json!({"type": "mount"}),
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        // Its own UTS namespace even with host networking, as dockerd: the
        // hostname is the host's, but setting it cannot change the host's.
        json!({"type": "uts"}),
    ];
    if !host_net {
        namespaces.push(json!({"type": "network"}));
    }

    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": false, "type": "c", "major": 254, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"}
        ]
    });
    if privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    let memory = h.memory.unwrap_or(0);
    if memory < 0 || (memory > 0 && memory < 6 * 1024 * 1024) {
        return Err(ApiError::BadRequest(
            "Minimum memory limit allowed is 6MB".into(),
        ));
    }
    if memory > 0 {
        let mut m = json!({ "limit": memory });
        if let Some(swap) = h.memory_swap.filter(|s| *s != 0) {
            m["swap"] = json!(swap);
        }
        resources["memory"] = m;
    }
    let mut cpu = serde_json::Map::new();
    if let Some(nano) = h.nano_cpus.filter(|n| *n > 0) {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(nano * period / 1_000_000_000));
    }
    if let Some(shares) = h.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(q) = h.cpu_quota.filter(|q| *q > 0) {
        cpu.insert("quota".into(), json!(q));
        cpu.insert(
            "period".into(),
            json!(h.cpu_period.filter(|p| *p > 0).unwrap_or(100_000)),
        );
    }
    if let Some(set) = h.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        cpu.insert("cpus".into(), json!(set));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = h.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({ "limit": if p < 0 { -1 } else { p } });
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("{}/{}", i.cgroup_parent.trim_end_matches('/'), i.id),
    });
    if !privileged {
        linux["maskedPaths"] = json!([
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
        if let Some(profile) = seccomp_profile(&security_opt)? {
            linux["seccomp"] = profile;
        }
    }

    let mut process = json!({
        "terminal": tty,
        "user": { "uid": i.uid, "gid": i.gid },
        "args": i.args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps
        },
        "noNewPrivileges": no_new_privileges(&security_opt),
        "oomScoreAdj": 0,
    });
    if !i.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(i.additional_gids);
    }
    if tty && let Some(size) = h.console_size.as_ref().filter(|s| s.len() == 2 && s[0] > 0) {
        process["consoleSize"] = json!({ "height": size[0], "width": size[1] });
    }

    let spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": { "path": "rootfs", "readonly": h.readonly_rootfs.unwrap_or(false) },
        "hostname": i.hostname,
        "mounts": dedup,
        "linux": linux,
    });
    // Validates the shape against the spec's own types before containerd sees it.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone())
        .map_err(|e| ApiError::Internal(format!("generated an invalid OCI spec: {e}")))?;
    Ok(spec)
}

/// `-v SRC:DST[:OPTS]`: a host path (created if missing, as dockerd does) or a
/// named volume under the volumes directory.
fn bind_mount(bind: &str, volumes_dir: &Path) -> ApiResult<Value> {
    let parts: Vec<&str> = bind.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "invalid volume specification: '{bind}'"
            )));
        }
    };
    if !dst.starts_with('/') {
        return Err(ApiError::BadRequest(format!(
            "invalid volume specification: '{bind}': invalid mount config for type \"bind\": invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    let source = if src.starts_with('/') {
        if !Path::new(src).exists() {
            std::fs::create_dir_all(src)
                .map_err(|e| ApiError::BadRequest(format!("create bind source {src}: {e}")))?;
        }
        src.to_string()
    } else {
        if src.is_empty() || src.contains('/') || src == "." || src == ".." {
            return Err(ApiError::BadRequest(format!(
                "invalid volume specification: '{bind}'"
            )));
        }
        let dir = volumes_dir.join(src).join("_data");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::Internal(format!("create volume {src}: {e}")))?;
        dir.to_string_lossy().into_owned()
    };
    let mut options = vec!["rbind".to_string()];
    let mut propagation = "rprivate".to_string();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => options.push("ro".into()),
            "rw" | "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                propagation = o.to_string();
            }
            _ => {
                return Err(ApiError::BadRequest(format!("invalid mode: {o}")));
            }
        }
    }
    options.push(propagation);
    Ok(json!({ "destination": dst, "type": "bind", "source": source, "options": options }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(c: &'a ContainerConfig, h: &'a HostConfig, dir: &'a Path) -> SpecInputs<'a> {
        SpecInputs {
            id: "abc",
            hostname: "abc",
            config: c,
            host: h,
            args: vec!["sh".into()],
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            container_dir: dir,
            cgroup_parent: "/engined",
            volumes_dir: dir,
        }
    }

    #[test]
    fn default_spec_looks_like_dockers() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContainerConfig::default();
        let h = HostConfig::default();
        let s = build(&inputs(&c, &h, dir.path())).unwrap();
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(s["linux"]["cgroupsPath"], "/engined/abc");
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPS.len()
        );
        assert!(
            s["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        assert_eq!(s["process"]["env"][0], format!("PATH={DEFAULT_PATH}"));
    }

    #[test]
    fn limits_caps_and_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContainerConfig {
            tty: Some(true),
            env: Some(vec!["A=1".into(), "PATH=/x".into()]),
            ..Default::default()
        };
        let h = HostConfig {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(50),
            cap_drop: Some(vec!["chown".into()]),
            cap_add: Some(vec!["SYS_ADMIN".into()]),
            readonly_rootfs: Some(true),
            network_mode: Some("host".into()),
            tmpfs: Some([("/scratch".to_string(), "size=1m".to_string())].into()),
            security_opt: Some(vec!["seccomp=unconfined".into()]),
            ..Default::default()
        };
        let s = build(&inputs(&c, &h, dir.path())).unwrap();
        let r = &s["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["pids"]["limit"], 50);
        let caps = s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert!(!caps.contains(&json!("CAP_CHOWN")));
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(s["root"]["readonly"], true);
        assert!(s["linux"].get("seccomp").is_none());
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.contains(&json!({"type": "network"})));
        assert!(ns.contains(&json!({"type": "uts"})));
        assert!(
            s["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&json!("TERM=xterm"))
        );
        assert!(
            s["process"]["env"]
                .as_array()
                .unwrap()
                .contains(&json!("PATH=/x"))
        );
        let m = s["mounts"].as_array().unwrap();
        assert!(m.iter().any(|m| m["destination"] == "/scratch"
            && m["options"].as_array().unwrap().contains(&json!("size=1m"))));
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let c = ContainerConfig::default();
        let h = HostConfig {
            cap_add: Some(vec!["NOPE".into()]),
            ..Default::default()
        };
        assert!(matches!(
            build(&inputs(&c, &h, dir.path())),
            Err(ApiError::BadRequest(_))
        ));
        let h = HostConfig {
            binds: Some(vec!["a:b:c:d".into()]),
            ..Default::default()
        };
        assert!(build(&inputs(&c, &h, dir.path())).is_err());
    }
}
