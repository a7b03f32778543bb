//! `login` and `logout`: the daemon checks the credentials against the registry
//! (`POST /auth`, as docker's CLI asks dockerd); the CLI keeps them in the
//! `auths` of its config file, in docker's format, so `pull` and `push` (and the
//! docker CLI on the same config) send them in `X-Registry-Auth`.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::Engine;
use crate::cmd::println;
use crate::error::{CliError, Result};

/// What docker calls Docker Hub's server address in its config.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password or personal access token
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The registry (Docker Hub when absent)
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (Docker Hub when absent)
    pub server: Option<String>,
}

/// The key of a registry in `auths`: docker keeps Docker Hub under its v1 URL,
/// the others under `host[:port]`.
fn server_key(server: Option<&str>) -> String {
    let Some(s) = server else {
        return DOCKER_HUB.into();
    };
    let bare = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
        .trim_end_matches('/');
    match bare {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "index.docker.io/v1" => {
            DOCKER_HUB.into()
        }
        b => b.split('/').next().unwrap_or(b).to_string(),
    }
}

fn read_config(path: &Path) -> Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(json!({})),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| CliError::Other(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(CliError::io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes beside the file and renames, so a crash leaves the old config whole;
/// 0600 because it holds passwords.
fn write_config(path: &Path, v: &Value) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    let ctx = format!("writing {}", path.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(CliError::io(ctx.clone()))?;
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::Other(e.to_string()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.write_all(b"\n"))
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
        })
        .map_err(CliError::io(ctx.clone()))?;
    tmp.persist(path).map_err(|e| CliError::io(ctx)(e.error))?;
    Ok(())
}

fn config_file(config: Option<&Path>) -> PathBuf {
    crate::host::config_dir(config).join("config.json")
}

pub async fn login(e: &Engine, a: LoginArgs, config: Option<&Path>) -> Result<i32> {
    if a.password.is_some() && a.password_stdin {
        return Err(CliError::Usage(
            "--password and --password-stdin are mutually exclusive".into(),
        ));
    }
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(CliError::io("reading the password from stdin"))?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        a.password
    };
    let (Some(username), Some(password)) = (a.username, password) else {
        return Err(CliError::Usage(
            "engine login needs --username and --password (or --password-stdin); it does not prompt"
                .into(),
        ));
    };
    if a.password_stdin && username.is_empty() {
        return Err(CliError::Usage(
            "Must provide --username with --password-stdin".into(),
        ));
    }
    let key = server_key(a.server.as_deref());
    let body = json!({"username": username, "password": password, "serveraddress": key});
    let res = e.request_json(Method::POST, "/auth", Some(&body)).await?;
    let bytes = crate::streams::read_all(res.into_body()).await?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let token = answer
        .get("IdentityToken")
        .and_then(Value::as_str)
        .unwrap_or("");
    let path = config_file(config);
    let mut cfg = read_config(&path)?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    // With an identity token docker keeps the token, not the password.
    let entry = if token.is_empty() {
        json!({"auth": b64.encode(format!("{username}:{password}"))})
    } else {
        json!({"auth": b64.encode(format!("{username}:")), "identitytoken": token})
    };
    if let Some(obj) = cfg.as_object_mut() {
        let auths = obj.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        if let Some(auths) = auths.as_object_mut() {
            auths.insert(key, entry);
        }
    }
    write_config(&path, &cfg)?;
    println(
        answer
            .get("Status")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("Login Succeeded"),
    );
    Ok(0)
}

/// Needs no daemon: it only forgets what `login` stored.
pub fn logout(a: LogoutArgs, config: Option<&Path>) -> Result<i32> {
    let key = server_key(a.server.as_deref());
    let path = config_file(config);
    let mut cfg = read_config(&path)?;
    let removed = cfg
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|auths| auths.remove(&key))
        .is_some();
    if removed {
        println(&format!("Removing login credentials for {key}"));
        write_config(&path, &cfg)?;
    } else {
        println(&format!("Not logged in to {key}"));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_key_as_docker_s() {
        assert_eq!(server_key(None), DOCKER_HUB);
        assert_eq!(server_key(Some("docker.io")), DOCKER_HUB);
        assert_eq!(server_key(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(server_key(Some("http://127.0.0.1:5000/")), "127.0.0.1:5000");
    }
}
