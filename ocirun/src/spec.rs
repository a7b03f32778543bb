//! Loading and checking a bundle's config.json before anything is created, so that bad
//! input fails with a clear message and leaves nothing behind.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{OciError, Result};

/// A loaded, checked bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute path of the rootfs.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).map_err(|e| OciError::Bundle {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let config = dir.join("config.json");
    let text = std::fs::read(&config).map_err(|e| OciError::Config {
        path: config.clone(),
        reason: e.to_string(),
    })?;
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| OciError::Config {
        path: config.clone(),
        reason: e.to_string(),
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| OciError::InvalidConfig("root is missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| OciError::Bundle {
        path: rootfs.clone(),
        reason: format!("rootfs: {e}"),
    })?;
    if !rootfs.is_dir() {
        return Err(OciError::Bundle {
            path: rootfs,
            reason: "rootfs is not a directory".into(),
        });
    }
    validate(&spec)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// Checks what serde cannot: the rules of the runtime spec that ocirun relies on.
pub fn validate(spec: &Spec) -> Result<()> {
    let bad = |m: String| Err(OciError::InvalidConfig(m));
    let process = match spec.process() {
        Some(p) => p,
        None => return bad("process is missing".into()),
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return bad("process.args must not be empty".into());
    }
    if !process.cwd().is_absolute() {
        return bad(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        ));
    }
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return bad(format!("namespace {} is listed twice", ns.typ()));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return bad("time namespaces are not supported".into());
        }
        if let Some(p) = ns.path()
            && !p.is_absolute()
        {
            return bad(format!("namespace {} path {p:?} is not absolute", ns.typ()));
        }
    }
    let has = |t| namespaces.iter().any(|n| n.typ() == t);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return bad("hostname requires a uts namespace".into());
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
    {
        return bad("domainname requires a uts namespace".into());
    }
    let new_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_userns {
        let maps = |m: Option<&Vec<_>>| m.is_some_and(|v: &Vec<_>| !v.is_empty());
        if !maps(linux.and_then(|l| l.uid_mappings().as_ref()))
            || !maps(linux.and_then(|l| l.gid_mappings().as_ref()))
        {
            return bad("a new user namespace needs uidMappings and gidMappings".into());
        }
    }
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for key in sysctl.keys() {
            if key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
                return bad(format!("invalid sysctl name {key:?}"));
            }
        }
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if !m.destination().is_absolute() {
            return bad(format!(
                "mount destination {:?} must be an absolute path",
                m.destination()
            ));
        }
    }
    Ok(())
}

/// The config.json `ocirun spec` writes: runc's default.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    spec.set_hostname(Some("ocirun".into()));
    if let Some(linux) = spec.linux_mut() {
        // runc's default has no cgroup namespace.
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Cgroup);
        }
    }
    if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        spec.set_linux(Some(oci_spec::runtime::Linux::rootless(uid, gid)));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn default_spec_is_valid() {
        validate(&default_spec(false).unwrap()).unwrap();
    }

    #[test]
    fn hostname_without_uts_is_refused() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "hostname": "x",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}]}
        }));
        assert!(validate(&s).unwrap_err().to_string().contains("uts"));
    }

    #[test]
    fn new_userns_needs_mappings() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "user"}]}
        }));
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("uidMappings")
        );
    }

    #[test]
    fn unknown_namespace_type_fails_to_parse() {
        let r: std::result::Result<Spec, _> = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "foo"}]}
        }));
        assert!(r.is_err());
    }

    #[test]
    fn relative_cwd_and_empty_args_are_refused() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}
        }));
        assert!(validate(&s).is_err());
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "tmp", "user": {"uid": 0, "gid": 0}}
        }));
        assert!(validate(&s).is_err());
    }
}
