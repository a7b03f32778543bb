use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Where Debian's busybox-static installs the binary (`BUSYBOX` overrides it).
pub fn busybox_path() -> PathBuf {
    std::env::var_os("BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"))
}

/// Builds a minimal root filesystem: the static busybox binary, a symlink for every
/// applet it lists, /etc/passwd and /etc/group with root, nobody and an ordinary user
/// (uid 1000), and the empty directories a container expects.
pub fn make_busybox_rootfs(rootfs: &Path) -> Result<()> {
    let busybox = busybox_path();
    let out = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install it with: apt-get install -y busybox-static)",
                busybox.display()
            )
        })?;
    if !out.status.success() {
        bail!("{} --list-full failed", busybox.display());
    }
    let is_static = fs::read(&busybox)
        .map(|b| is_static_elf(&b))
        .unwrap_or(false);
    if !is_static {
        bail!(
            "{} is not statically linked (install busybox-static)",
            busybox.display()
        );
    }
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "var/tmp",
        "run",
    ] {
        fs::create_dir_all(rootfs.join(dir)).with_context(|| format!("mkdir {dir}"))?;
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let target = rootfs.join("bin/busybox");
    fs::copy(&busybox, &target)
        .with_context(|| format!("copy {} to {}", busybox.display(), target.display()))?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = rootfs.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &link).with_context(|| format!("symlink {applet}"))?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         user:x:1000:1000:user:/home/user:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n",
    )?;
    fs::write(rootfs.join("etc/hostname"), "busybox\n")?;
    Ok(())
}

/// True for an ELF executable without a PT_INTERP program header (no dynamic loader).
/// A string search for "ld-linux" is not enough: glibc's static busybox embeds it.
fn is_static_elf(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF only (x86_64 is the only target).
    if b.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(num)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..num).all(|i| u32_at(phoff + i * entsize).is_some_and(|t| t != PT_INTERP))
}

/// A config.json close to `runc spec`'s default, but without a terminal and with a
/// writable rootfs, running `args`.
pub fn default_config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "ocirun",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// An OCI bundle on disk: `dir/config.json` and `dir/rootfs`.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Makes a bundle in `dir` (created if needed) with a fresh busybox rootfs.
    pub fn create(dir: &Path, args: &[&str]) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        make_busybox_rootfs(&dir.join("rootfs"))?;
        let bundle = Self {
            dir: dir.to_path_buf(),
            config: default_config(args),
        };
        bundle.save()?;
        Ok(bundle)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Writes `config` to `config.json`; call after changing it.
    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.config)?;
        fs::write(self.dir.join("config.json"), text)
            .with_context(|| format!("write {}/config.json", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_has_shell_and_users() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::create(dir.path(), &["true"]).unwrap();
        assert!(b.rootfs().join("bin/busybox").is_file());
        assert!(b.rootfs().join("bin/sh").symlink_metadata().is_ok());
        let passwd = fs::read_to_string(b.rootfs().join("etc/passwd")).unwrap();
        assert!(passwd.contains("user:x:1000:1000"));
        let cfg: Value =
            serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["process"]["args"][0], "true");
    }
}
