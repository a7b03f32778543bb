//! Which daemon to talk to, decided as the docker CLI decides it: `--context`,
//! then `-H`, then `ENGINE_HOST` (`DOCKER_HOST` as a fallback), then
//! `DOCKER_CONTEXT`, then the `currentContext` of the CLI config, then the default
//! socket. Contexts are read from docker's own store
//! (`$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json`), so a context
//! made with `docker context create` works here too.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{CliError, Result};

/// Where engined listens by default (`engined` with no `-H`).
pub const DEFAULT_HOST: &str = "unix:///run/engined.sock";

/// A daemon address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`, plain HTTP.
    Tcp(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// `unix:///path`, `tcp://host[:port]` (`http://` too); a bare absolute path is
/// taken as a socket.
pub fn parse_host(h: &str) -> Result<Endpoint> {
    let h = h.trim();
    if let Some(p) = h.strip_prefix("unix://") {
        if p.is_empty() {
            return Err(CliError::Usage(format!(
                "invalid host {h:?}: no socket path"
            )));
        }
        return Ok(Endpoint::Unix(PathBuf::from(p)));
    }
    if let Some(a) = h
        .strip_prefix("tcp://")
        .or_else(|| h.strip_prefix("http://"))
    {
        let a = a.trim_end_matches('/');
        if a.is_empty() {
            return Err(CliError::Usage(format!("invalid host {h:?}: no address")));
        }
        let has_port = a
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !a.ends_with(']');
        return Ok(Endpoint::Tcp(if has_port {
            a.to_string()
        } else {
            format!("{a}:2375")
        }));
    }
    if h.starts_with('/') {
        return Ok(Endpoint::Unix(PathBuf::from(h)));
    }
    if let Some((scheme, _)) = h.split_once("://") {
        return Err(CliError::Usage(format!(
            "invalid host {h:?}: engine speaks to unix:// and tcp:// (plain HTTP) addresses, not {scheme}://"
        )));
    }
    Err(CliError::Usage(format!(
        "invalid host {h:?}: use unix:///path/to/socket or tcp://host:port"
    )))
}

/// `--config` of this process, for the readers deep in commands (the registry
/// credentials of `pull`, `push` and `run`'s implicit pull).
static CONFIG_FLAG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

pub fn remember_config_flag(dir: &Path) {
    let _ = CONFIG_FLAG.set(dir.to_path_buf());
}

/// The CLI config directory: `--config`, `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(f) = flag.or(CONFIG_FLAG.get().map(PathBuf::as_path)) {
        return f.to_path_buf();
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker")
}

/// What the environment says, passed in so tests can fix it.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub engine_host: Option<String>,
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            engine_host: var("ENGINE_HOST"),
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
        }
    }
}

/// Resolves the endpoint from the flags, the environment and the config dir.
pub fn resolve(
    host_flag: Option<&str>,
    context_flag: Option<&str>,
    env: &Env,
    config: &Path,
) -> Result<Endpoint> {
    if host_flag.is_some() && context_flag.is_some() {
        return Err(CliError::Usage(
            "conflicting options: cannot specify both --host and --context".into(),
        ));
    }
    if let Some(c) = context_flag {
        return context_endpoint(c, env, config);
    }
    if let Some(h) = host_flag {
        return parse_host(h);
    }
    if let Some(h) = env.engine_host.as_deref().or(env.docker_host.as_deref()) {
        return parse_host(h);
    }
    if let Some(c) = &env.docker_context {
        return context_endpoint(c, env, config);
    }
    if let Some(c) = current_context(config)? {
        return context_endpoint(&c, env, config);
    }
    parse_host(DEFAULT_HOST)
}

fn current_context(config: &Path) -> Result<Option<String>> {
    let path = config.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::io(format!("read {}", path.display()))(e)),
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    Ok(v.get("currentContext")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

fn context_endpoint(name: &str, env: &Env, config: &Path) -> Result<Endpoint> {
    if name == "default" {
        return match env.engine_host.as_deref().or(env.docker_host.as_deref()) {
            Some(h) => parse_host(h),
            None => parse_host(DEFAULT_HOST),
        };
    }
    let meta = config.join("contexts/meta");
    let entries = std::fs::read_dir(&meta).map_err(|_| no_context(name))?;
    for e in entries.flatten() {
        let file = e.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if v.get("Name").and_then(Value::as_str) != Some(name) {
            continue;
        }
        let host = v
            .pointer("/Endpoints/docker/Host")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CliError::Other(format!(
                    "context {name:?} has no docker endpoint ({})",
                    file.display()
                ))
            })?;
        let tls = config
            .join("contexts/tls")
            .join(e.file_name())
            .join("docker");
        if tls.exists() && host.starts_with("tcp://") {
            return Err(CliError::Other(format!(
                "context {name:?} uses TLS, which engine does not speak: use a unix socket or plain tcp"
            )));
        }
        return parse_host(host);
    }
    Err(no_context(name))
}

fn no_context(name: &str) -> CliError {
    CliError::Other(format!("context {name:?} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, name: &str, host: &str) {
        let d = dir.join("contexts/meta").join(format!("hash-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("meta.json"),
            format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
        )
        .unwrap();
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            parse_host("unix:///run/x.sock").unwrap(),
            Endpoint::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2376").unwrap(),
            Endpoint::Tcp("127.0.0.1:2376".into())
        );
        assert_eq!(
            parse_host("tcp://localhost").unwrap(),
            Endpoint::Tcp("localhost:2375".into())
        );
        assert!(parse_host("ssh://me@host").is_err());
        assert!(parse_host("nonsense").is_err());
    }

    #[test]
    fn precedence_follows_docker() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path();
        store(cfg, "ctx1", "unix:///ctx1.sock");
        store(cfg, "ctx2", "unix:///ctx2.sock");
        let none = Env::default();
        assert_eq!(
            resolve(None, None, &none, cfg).unwrap().to_string(),
            DEFAULT_HOST
        );
        std::fs::write(cfg.join("config.json"), r#"{"currentContext":"ctx1"}"#).unwrap();
        assert_eq!(
            resolve(None, None, &none, cfg).unwrap().to_string(),
            "unix:///ctx1.sock"
        );
        let env = Env {
            docker_context: Some("ctx2".into()),
            ..Env::default()
        };
        assert_eq!(
            resolve(None, None, &env, cfg).unwrap().to_string(),
            "unix:///ctx2.sock"
        );
        let env = Env {
            docker_host: Some("unix:///docker.sock".into()),
            docker_context: Some("ctx2".into()),
            ..Env::default()
        };
        assert_eq!(
            resolve(None, None, &env, cfg).unwrap().to_string(),
            "unix:///docker.sock"
        );
        let env = Env {
            engine_host: Some("unix:///engine.sock".into()),
            docker_host: Some("unix:///docker.sock".into()),
            ..Env::default()
        };
        assert_eq!(
            resolve(None, None, &env, cfg).unwrap().to_string(),
            "unix:///engine.sock"
        );
        assert_eq!(
            resolve(Some("unix:///flag.sock"), None, &env, cfg)
                .unwrap()
                .to_string(),
            "unix:///flag.sock"
        );
        assert_eq!(
            resolve(None, Some("ctx2"), &env, cfg).unwrap().to_string(),
            "unix:///ctx2.sock"
        );
        assert_eq!(
            resolve(None, Some("default"), &env, cfg)
                .unwrap()
                .to_string(),
            "unix:///engine.sock"
        );
        assert!(resolve(Some("unix:///a"), Some("ctx1"), &env, cfg).is_err());
        assert!(resolve(None, Some("nosuch"), &env, cfg).is_err());
    }
}
