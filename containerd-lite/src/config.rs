//! The daemon's settings: containerd's flags, optionally from a TOML file shaped as
//! containerd's `config.toml` (the keys we use: `root`, `state`, `[grpc] address`,
//! `[debug] level`). Flags win over the file.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{LiteError, Result};

pub const DEFAULT_ADDRESS: &str = "/run/containerd-lite/containerd-lite.sock";
pub const DEFAULT_ROOT: &str = "/var/lib/containerd-lite";
pub const DEFAULT_STATE: &str = "/run/containerd-lite";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub grpc: GrpcSection,
    pub debug: DebugSection,
    /// Runtime name (`io.containerd.runc.v2`) to the shim that serves it. Built-in
    /// defaults map both runc's and ocirun's names to our shim; entries here win.
    pub runtimes: std::collections::BTreeMap<String, RuntimeEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeEntry {
    /// The shim v2 binary (a path, or a name looked up on PATH).
    pub shim: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GrpcSection {
    pub address: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DebugSection {
    pub level: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| LiteError::Config {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| LiteError::Config {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    pub fn address(&self) -> PathBuf {
        self.grpc
            .address
            .clone()
            .unwrap_or_else(|| DEFAULT_ADDRESS.into())
    }

    pub fn root(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| DEFAULT_ROOT.into())
    }

    pub fn state(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| DEFAULT_STATE.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerd_shaped_toml() {
        let c: Config = toml::from_str(
            "version = 2\nroot = \"/r\"\n[grpc]\naddress = \"/s.sock\"\n[debug]\nlevel = \"debug\"\n[plugins.x]\ny = 1\n[runtimes.\"io.containerd.runc.v2\"]\nshim = \"/usr/bin/containerd-shim-runc-v2\"\n",
        )
        .unwrap();
        assert_eq!(c.root(), PathBuf::from("/r"));
        assert_eq!(c.address(), PathBuf::from("/s.sock"));
        assert_eq!(c.state(), PathBuf::from(DEFAULT_STATE));
        assert_eq!(c.debug.level.as_deref(), Some("debug"));
        assert_eq!(
            c.runtimes["io.containerd.runc.v2"].shim.as_deref(),
            Some(Path::new("/usr/bin/containerd-shim-runc-v2"))
        );
    }
}
