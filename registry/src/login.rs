//! `docker login`: credentials are checked against the registry's `/v2/` the way the
//! distribution protocol has clients authenticate. A registry that answers 401 says
//! how in `WWW-Authenticate`: `Basic` (the credentials go on each request) or
//! `Bearer realm=...,service=...` (a token server at `realm` trades them for a token,
//! and with `offline_token=true` for a refresh token too, Docker's identity token).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use serde::Deserialize;

use crate::{Error, Result, resolve_registry};

/// One `WWW-Authenticate` challenge: the scheme (lowercase) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="https://auth/token",service="reg"` or `Basic realm="x"`
/// (RFC 7235: a scheme, then comma-separated `key=token` or `key="quoted"`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A login that worked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginOk {
    /// The refresh token a token server gave (`IdentityToken`), if it gave one.
    pub identity_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    refresh_token: String,
}

impl TokenResponse {
    fn bearer(&self) -> &str {
        if self.token.is_empty() {
            &self.access_token
        } else {
            &self.token
        }
    }
}

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("engined/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Registry(format!("http client: {e}")))
}

fn base_url(registry: &str, plain_http: bool) -> String {
    let scheme = if plain_http { "http" } else { "https" };
    format!("{scheme}://{}/v2/", resolve_registry(registry))
}

fn failed(url: &str, status: StatusCode) -> Error {
    Error::Unauthorized(format!(
        "login attempt to {url} failed with status: {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    ))
}

fn transport(url: &str, e: reqwest::Error) -> Error {
    Error::Registry(format!("Get \"{url}\": {e}"))
}

/// The challenge of a registry's `/v2/`: `None` when it answers 200 (no auth).
async fn challenge_of(http: &reqwest::Client, url: &str) -> Result<Option<Challenge>> {
    let resp = http.get(url).send().await.map_err(|e| transport(url, e))?;
    match resp.status() {
        StatusCode::OK => Ok(None),
        StatusCode::UNAUTHORIZED => {
            let header = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            parse_challenge(header).map(Some).ok_or_else(|| {
                Error::Registry(format!(
                    "{url} answered 401 without a WWW-Authenticate challenge"
                ))
            })
        }
        s => Err(Error::Registry(format!(
            "{url} answered {} {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or("")
        ))),
    }
}

/// Checks `username`/`password` against `registry` (e.g. `127.0.0.1:5000`).
pub async fn login(
    registry: &str,
    username: &str,
    password: &str,
    plain_http: bool,
) -> Result<LoginOk> {
    let http = http()?;
    let url = base_url(registry, plain_http);
    let Some(challenge) = challenge_of(&http, &url).await? else {
        // The registry asks for nothing: any credentials do.
        return Ok(LoginOk::default());
    };
    match challenge.scheme.as_str() {
        "basic" => {
            let resp = http
                .get(&url)
                .basic_auth(username, Some(password))
                .send()
                .await
                .map_err(|e| transport(&url, e))?;
            if resp.status() == StatusCode::OK {
                Ok(LoginOk::default())
            } else {
                Err(failed(&url, resp.status()))
            }
        }
        "bearer" => {
            let realm = challenge
                .params
                .get("realm")
                .ok_or_else(|| Error::Registry(format!("{url}: bearer challenge without realm")))?;
            let mut query = vec![
                ("account", username.to_string()),
                ("client_id", "docker".to_string()),
                ("offline_token", "true".to_string()),
            ];
            if let Some(s) = challenge.params.get("service") {
                query.push(("service", s.clone()));
            }
            let resp = http
                .get(realm)
                .query(&query)
                .basic_auth(username, Some(password))
                .send()
                .await
                .map_err(|e| transport(realm, e))?;
            if resp.status() != StatusCode::OK {
                return Err(failed(realm, resp.status()));
            }
            let token: TokenResponse = resp
                .json()
                .await
                .map_err(|e| Error::Invalid(format!("token from {realm}: {e}")))?;
            if token.bearer().is_empty() {
                return Err(Error::Invalid(format!("{realm} sent no token")));
            }
            // The token must open the registry itself, not only satisfy the realm.
            let resp = http
                .get(&url)
                .bearer_auth(token.bearer())
                .send()
                .await
                .map_err(|e| transport(&url, e))?;
            if resp.status() != StatusCode::OK {
                return Err(failed(&url, resp.status()));
            }
            Ok(LoginOk {
                identity_token: (!token.refresh_token.is_empty()).then_some(token.refresh_token),
            })
        }
        other => Err(Error::Registry(format!(
            "{url}: unsupported authentication scheme {other:?}"
        ))),
    }
}

/// application/x-www-form-urlencoded (RFC 3986 unreserved characters pass).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trades an identity (refresh) token for an access token with `scope`
/// (`repository:NAME:pull` or `repository:NAME:pull,push`): the OAuth2 POST to the
/// realm of the registry's bearer challenge.
pub async fn identity_token_exchange(
    registry: &str,
    plain_http: bool,
    identity_token: &str,
    scope: &str,
) -> Result<String> {
    let http = http()?;
    let url = base_url(registry, plain_http);
    let challenge = challenge_of(&http, &url).await?.ok_or_else(|| {
        Error::Registry(format!(
            "{url} asks for no token: an identity token has no use"
        ))
    })?;
    if challenge.scheme != "bearer" {
        return Err(Error::Unauthorized(format!(
            "{url} wants {} authentication, not a token",
            challenge.scheme
        )));
    }
    let realm = challenge
        .params
        .get("realm")
        .ok_or_else(|| Error::Registry(format!("{url}: bearer challenge without realm")))?;
    let service = challenge.params.get("service").cloned().unwrap_or_default();
    let body = form_encode(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", identity_token),
        ("service", &service),
        ("scope", scope),
        ("client_id", "docker"),
    ]);
    let resp = http
        .post(realm)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| transport(realm, e))?;
    if resp.status() != StatusCode::OK {
        return Err(Error::Unauthorized(format!(
            "{realm}: the identity token was refused ({})",
            resp.status()
        )));
    }
    let token: TokenResponse = resp
        .json()
        .await
        .map_err(|e| Error::Invalid(format!("token from {realm}: {e}")))?;
    if token.bearer().is_empty() {
        return Err(Error::Invalid(format!("{realm} sent no access token")));
    }
    Ok(token.bearer().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry \"Realm\"""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry \"Realm\"");
        let t = parse_challenge("Bearer realm=http://x/t, service=s").unwrap();
        assert_eq!(t.params["realm"], "http://x/t");
        assert_eq!(t.params["service"], "s");
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn forms_encode() {
        assert_eq!(
            form_encode(&[("scope", "repository:a/b:pull,push"), ("x", "a b")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&x=a%20b"
        );
    }
}
