//! Docker's auth config: the JSON the CLI sends base64url-encoded in `X-Registry-Auth`
//! (and as the body of `POST /auth`), as in `~/.docker/config.json`.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `base64(username:password)`, the config.json form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    /// An OAuth2 refresh token a login returned, exchanged for access tokens.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    /// A bearer token sent to the registry as it is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

// Never print secrets, not even in debug logs.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .field("has_password", &!self.password.is_empty())
            .field("has_identitytoken", &!self.identitytoken.is_empty())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid X-Registry-Auth header: {0}")]
    Header(String),
}

/// base64 with either alphabet's `+/` or `-_`, padded or not: the CLI sends
/// base64url with padding, other clients vary.
fn decode_lenient(s: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let url = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    let std = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let s = s.trim();
    url.decode(s).or_else(|_| std.decode(s)).ok()
}

impl AuthConfig {
    /// Decodes an `X-Registry-Auth` value; empty means no credentials.
    pub fn from_header(value: &str) -> Result<Self, AuthError> {
        if value.trim().is_empty() {
            return Ok(Self::default());
        }
        let json = decode_lenient(value).ok_or_else(|| AuthError::Header("not base64".into()))?;
        serde_json::from_slice(&json).map_err(|e| AuthError::Header(e.to_string()))
    }

    /// The `X-Registry-Config` header of a build: credentials by registry host
    /// (base64url JSON, keys as in the CLI's config.json).
    pub fn map_from_header(
        value: &str,
    ) -> Result<std::collections::HashMap<String, Self>, AuthError> {
        if value.trim().is_empty() {
            return Ok(Default::default());
        }
        let json = decode_lenient(value).ok_or_else(|| AuthError::Header("not base64".into()))?;
        serde_json::from_slice(&json).map_err(|e| AuthError::Header(e.to_string()))
    }

    /// `(username, password)`, from the fields or from `auth`.
    pub fn credentials(&self) -> Option<(String, String)> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        if self.auth.is_empty() {
            return None;
        }
        let raw = decode_lenient(&self.auth)?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// How oci-client authenticates with this config, except an identity token,
    /// which needs an exchange first ([`crate::identity_token_exchange`]).
    pub fn registry_auth(&self) -> RegistryAuth {
        if !self.registrytoken.is_empty() {
            return RegistryAuth::Bearer(self.registrytoken.clone());
        }
        match self.credentials() {
            Some((u, p)) => RegistryAuth::Basic(u, p),
            None => RegistryAuth::Anonymous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_the_cli_sends() {
        assert_eq!(
            AuthConfig::from_header("e30=").unwrap(),
            AuthConfig::default()
        );
        assert_eq!(AuthConfig::from_header("").unwrap(), AuthConfig::default());
        // {"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}, base64url.
        let json = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        let url = base64::engine::general_purpose::URL_SAFE.encode(json);
        let a = AuthConfig::from_header(&url).unwrap();
        assert_eq!(
            a.registry_auth(),
            RegistryAuth::Basic("u".into(), "p?>".into())
        );
        assert_eq!(a.serveraddress, "127.0.0.1:5000");
        let std = base64::engine::general_purpose::STANDARD_NO_PAD.encode(json);
        assert_eq!(AuthConfig::from_header(&std).unwrap(), a);
        assert!(AuthConfig::from_header("!!!").is_err());
        let b = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("me:secret"),
            ..Default::default()
        };
        assert_eq!(b.credentials(), Some(("me".into(), "secret".into())));
        assert!(!format!("{b:?}").contains("secret"));
    }
}
