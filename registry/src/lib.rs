//! The distribution protocol as containerd-lite (`ctr images pull/push`) and engined
//! (`docker pull/push/login`) speak it, on `oci-client`: one way to build a client
//! (plain HTTP for insecure registries), to fetch a manifest with its digest checked,
//! to choose a platform in an index, to read Docker's auth configs, and to check
//! credentials the way `docker login` does (basic, or a token from the registry's
//! `WWW-Authenticate` realm).
#![forbid(unsafe_code)]

mod auth;
mod login;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use auth::{AuthConfig, AuthError};
pub use login::{Challenge, LoginOk, identity_token_exchange, login, parse_challenge};
pub use oci_client;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a pull accepts as a manifest: indexes and image manifests, OCI and Docker.
pub const ACCEPT: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry has no such manifest (tag or digest) in the repository.
    #[error("{0}")]
    NotFound(String),
    /// The credentials were refused, or none were given where some are needed.
    #[error("{0}")]
    Unauthorized(String),
    /// What the registry sent does not hold together (digest mismatch, bad JSON).
    #[error("{0}")]
    Invalid(String),
    /// The registry could not be reached, or answered an error.
    #[error("{0}")]
    Registry(String),
}

impl Error {
    /// Classifies an oci-client error by what the registry said.
    pub fn from_oci(e: OciDistributionError) -> Self {
        match &e {
            OciDistributionError::RegistryError { envelope, .. } => {
                let text = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", code_text(&e.code), e.message))
                    .collect::<Vec<_>>()
                    .join(", ");
                let first = envelope.errors.first().map(|e| &e.code);
                match first {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown,
                    ) => Error::NotFound(text),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        Error::Unauthorized(text)
                    }
                    _ => Error::Registry(text),
                }
            }
            OciDistributionError::UnauthorizedError { url } => {
                Error::Unauthorized(format!("{url}: unauthorized: authentication required"))
            }
            OciDistributionError::AuthenticationFailure(m) => {
                Error::Unauthorized(format!("authentication failed: {}", m.trim()))
            }
            OciDistributionError::ImageManifestNotFoundError(m) => Error::NotFound(m.clone()),
            OciDistributionError::ServerError { code: 404, .. } => Error::NotFound(e.to_string()),
            OciDistributionError::ServerError { code: 401, .. } => {
                Error::Unauthorized(e.to_string())
            }
            _ => Error::Registry(e.to_string()),
        }
    }
}

/// `MANIFEST_UNKNOWN` as the distribution spec's description reads: `manifest unknown`.
fn code_text(code: &OciErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.to_ascii_lowercase().replace('_', " ")))
        .unwrap_or_else(|| "error".into())
}

pub type Result<T> = std::result::Result<T, Error>;

/// A client for `registry` (the reference's `registry()`, e.g. `127.0.0.1:5000`):
/// HTTPS, or plain HTTP when `plain_http`.
pub fn client(registry: &str, plain_http: bool) -> Client {
    let protocol = if plain_http {
        let mut hosts = vec![registry.to_string()];
        // oci-client compares against the resolved name (docker.io → index.docker.io).
        let resolved = resolve_registry(registry);
        if resolved != registry {
            hosts.push(resolved.to_string());
        }
        ClientProtocol::HttpsExcept(hosts)
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        // A registry that cannot be reached (no route, dropped packets) fails the
        // pull in bounded time, as dockerd's dialer does, instead of hanging it.
        connect_timeout: Some(std::time::Duration::from_secs(30)),
        ..Default::default()
    })
}

/// The host that serves a registry name: Docker Hub's API is on `index.docker.io`.
pub fn resolve_registry(registry: &str) -> &str {
    match registry {
        "docker.io" => "index.docker.io",
        other => other,
    }
}

/// Whether a registry is reached over plain HTTP: loopback (`localhost`, 127.0.0.0/8,
/// `::1`), as dockerd treats it, and whatever `insecure` lists (`HOST[:PORT]`, or an
/// IPv4 CIDR such as `10.0.0.0/8`).
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if host == "localhost" || host == "::1" {
        return true;
    }
    let ip = host.parse::<std::net::Ipv4Addr>().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    insecure.iter().any(|entry| {
        let entry = entry
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        if entry == registry || entry == host {
            return true;
        }
        match (entry.split_once('/'), ip) {
            (Some((net, bits)), Some(ip)) => {
                let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>())
                else {
                    return false;
                };
                if bits > 32 {
                    return false;
                }
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(ip) & mask == u32::from(net) & mask
            }
            _ => false,
        }
    })
}

/// `HOST` of `HOST:PORT`, `[::1]:PORT` or `HOST`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    if registry.matches(':').count() > 1 {
        return registry;
    }
    registry.split(':').next().unwrap_or(registry)
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in Sha256::digest(data) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A manifest's media type: its `mediaType` field, else what its shape says.
pub fn media_type_of(bytes: &[u8]) -> Result<String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Invalid(format!("manifest is not JSON: {e}")))?;
    if let Some(mt) = v.get("mediaType").and_then(Value::as_str) {
        return Ok(mt.to_string());
    }
    Ok(if v.get("manifests").is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    })
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Go's name for this machine's architecture, as platforms in indexes spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: String,
    pub media_type: String,
    pub size: i64,
}

/// The index entry for `os`/`arch`, else the only entry without a platform.
pub fn pick_platform(index: &[u8], os: &str, arch: &str) -> Result<Entry> {
    let v: Value = serde_json::from_slice(index).map_err(|e| Error::Invalid(e.to_string()))?;
    let list = v
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Invalid("index without manifests".into()))?;
    let entry = |m: &Value| {
        Some(Entry {
            digest: m.get("digest")?.as_str()?.to_string(),
            media_type: m.get("mediaType")?.as_str()?.to_string(),
            size: m.get("size")?.as_i64()?,
        })
    };
    let platform = list.iter().find(|m| {
        let p = m.get("platform");
        p.and_then(|p| p.get("os")).and_then(Value::as_str) == Some(os)
            && p.and_then(|p| p.get("architecture"))
                .and_then(Value::as_str)
                == Some(arch)
    });
    platform
        .or_else(|| list.iter().find(|m| m.get("platform").is_none()))
        .and_then(entry)
        .ok_or_else(|| {
            Error::NotFound(format!("no matching manifest for {os}/{arch} in the index"))
        })
}

/// A manifest (or index) as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

/// GETs the manifest `r` names and checks that its bytes hash to the digest asked for
/// (or, for a tag, to the one the registry reported).
pub async fn fetch_manifest(c: &Client, r: &Reference, auth: &RegistryAuth) -> Result<Fetched> {
    let (bytes, digest) = c
        .pull_manifest_raw(r, auth, &ACCEPT)
        .await
        .map_err(Error::from_oci)?;
    let actual = sha256_digest(&bytes);
    let expected = r.digest().unwrap_or(&digest);
    if actual != expected {
        return Err(Error::Invalid(format!(
            "manifest {}: digest mismatch: got {actual}, expected {expected}",
            r.whole()
        )));
    }
    let media_type = media_type_of(&bytes)?;
    Ok(Fetched {
        bytes: bytes.to_vec(),
        digest: actual,
        media_type,
    })
}

/// The root manifest `r` names and, when that is an index, the `os`/`arch` manifest
/// it lists (both digest-checked).
pub async fn resolve(
    c: &Client,
    r: &Reference,
    auth: &RegistryAuth,
    os: &str,
    arch: &str,
) -> Result<(Fetched, Fetched)> {
    let root = fetch_manifest(c, r, auth).await?;
    if !is_index(&root.media_type) {
        return Ok((root.clone(), root));
    }
    let entry = pick_platform(&root.bytes, os, arch)?;
    let child = fetch_manifest(c, &r.clone_with_digest(entry.digest), auth).await?;
    Ok((root, child))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_are_insecure() {
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("127.1.2.3", &[]));
        assert!(is_insecure("localhost:5000", &[]));
        assert!(is_insecure("[::1]:5000", &[]));
        assert!(!is_insecure("registry.example:5000", &[]));
        assert!(!is_insecure("10.1.2.3:5000", &[]));
        let list = [
            "registry.example:5000".to_string(),
            "10.0.0.0/8".to_string(),
        ];
        assert!(is_insecure("registry.example:5000", &list));
        assert!(!is_insecure("registry.example:5001", &list));
        assert!(is_insecure("10.1.2.3:5000", &list));
        assert!(!is_insecure("11.1.2.3:5000", &list));
    }

    #[test]
    fn picks_the_platform() {
        let index = serde_json::json!({
            "mediaType": OCI_INDEX,
            "manifests": [
                {"digest": "sha256:aa", "mediaType": OCI_MANIFEST, "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": "sha256:bb", "mediaType": OCI_MANIFEST, "size": 2,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(media_type_of(&bytes).unwrap(), OCI_INDEX);
        assert_eq!(
            pick_platform(&bytes, "linux", "amd64").unwrap().digest,
            "sha256:bb"
        );
        assert!(matches!(
            pick_platform(&bytes, "linux", "s390x"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn registry_error_codes_read_as_docker_prints_them() {
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        let e = Error::from_oci(OciDistributionError::RegistryError {
            envelope,
            url: "http://x/v2/a/manifests/b".into(),
        });
        assert!(matches!(&e, Error::NotFound(m) if m == "manifest unknown: manifest unknown"));
    }
}
