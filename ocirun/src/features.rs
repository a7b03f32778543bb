//! `ocirun features`: the runtime-spec features document, as runc 1.1+ prints it.
use serde_json::{Value, json};

use crate::rootfs::options::known_options;
use crate::seccomp;

pub fn features() -> Value {
    let mut annotations = json!({
        "org.opencontainers.runc.checkpoint.enabled": "false",
        "io.github.ocirun.version": env!("CARGO_PKG_VERSION")
    });
    if let Some(v) = seccomp::features::libseccomp_version() {
        annotations["io.github.seccomp.libseccomp.version"] = v.into();
    }
    let caps: Vec<String> = caps::all()
        .into_iter()
        .map(|c| (c.index(), c.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "mountOptions": known_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": seccomp::features::ACTIONS,
                "operators": seccomp::features::OPERATORS,
                "archs": seccomp::features::ARCHS
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": annotations
    })
}
