//! A registry token server (the Docker distribution token protocol) on 127.0.0.1, for
//! testing token auth without the internet: clients send their basic credentials to
//! it (GET with `Authorization: Basic`, or containerd's OAuth2 POST form) and get a
//! JWT that `docker-registry`, configured with `auth: token` and this server's
//! certificate as `rootcertbundle`, accepts.
//!
//! The token is an RS256 JWT whose `x5c` header carries the server's self-signed
//! certificate (distribution checks the chain against `rootcertbundle`), signed with
//! `openssl dgst -sha256 -sign` (PKCS#1 v1.5, which is what RS256 is). Requests are
//! served one at a time by one thread, which stops when the server is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `service` and `issuer` the registry is configured with.
pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-token-issuer";

#[derive(Debug)]
pub struct TokenServer {
    port: u16,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(data: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let c = B64[((n >> (18 - 6 * i)) & 63) as usize];
            out.push(match (url, c) {
                (true, b'+') => '-',
                (true, b'/') => '_',
                _ => c as char,
            });
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` as pairs, decoded.
fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

struct Request {
    method: String,
    query: Vec<(String, String)>,
    basic: Option<(String, String)>,
    form: Vec<(String, String)>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let mut basic = None;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let v = v.trim();
        match k.to_ascii_lowercase().as_str() {
            "content-length" => length = v.parse().ok()?,
            "authorization" => {
                basic = v
                    .strip_prefix("Basic ")
                    .and_then(b64_decode)
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|d| d.split_once(':').map(|(u, p)| (u.into(), p.into())));
            }
            _ => {}
        }
    }
    let mut body = vec![0u8; length.min(1 << 16)];
    r.read_exact(&mut body).ok()?;
    let query = target
        .split_once('?')
        .map(|(_, q)| form_pairs(q))
        .unwrap_or_default();
    Some(Request {
        method,
        query,
        basic,
        form: form_pairs(&String::from_utf8_lossy(&body)),
    })
}

fn respond(mut stream: &TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The access a scope asks for (`repository:NAME:pull,push`), granted whole.
fn access_of(scopes: &[String]) -> Vec<serde_json::Value> {
    scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect()
}

/// Signs `input` with the key (PKCS#1 v1.5 over SHA-256).
fn sign(key: &Path, input: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn token(key: &Path, cert_der: &[u8], subject: &str, scopes: &[String]) -> Option<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [b64(cert_der, false)] });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{subject}"),
        "access": access_of(scopes),
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes(), true),
        b64(claims.to_string().as_bytes(), true)
    );
    let sig = sign(key, input.as_bytes())?;
    Some(format!("{input}.{}", b64(&sig, true)))
}

impl TokenServer {
    /// Issues tokens to `user`:`password` only; keys and certificate go in `dir`.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl could not make the token signing certificate");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        assert!(der.status.success(), "openssl x509 -outform DER failed");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the token server");
        let port = listener.local_addr().expect("token server address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (user, password) = (user.to_string(), password.to_string());
        let cert_der = der.stdout;
        let thread = {
            let (stop, issued, refused) = (stop.clone(), issued.clone(), refused.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let Some(req) = read_request(&stream) else {
                        continue;
                    };
                    // GET: basic auth header; POST: containerd's OAuth2 password grant.
                    let (creds, params) = if req.method == "POST" {
                        let get = |k: &str| {
                            req.form
                                .iter()
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.clone())
                        };
                        let creds = get("username").zip(get("password"));
                        (creds, req.form.clone())
                    } else {
                        (req.basic.clone(), req.query.clone())
                    };
                    let scopes: Vec<String> = params
                        .iter()
                        .filter(|(k, _)| k == "scope")
                        .map(|(_, v)| v.clone())
                        .collect();
                    if creds != Some((user.clone(), password.clone())) {
                        refused.fetch_add(1, Ordering::Relaxed);
                        respond(
                            &stream,
                            "401 Unauthorized",
                            r#"{"details":"bad credentials"}"#,
                        );
                        continue;
                    }
                    match token(&key, &cert_der, &user, &scopes) {
                        Some(t) => {
                            issued.fetch_add(1, Ordering::Relaxed);
                            let body = serde_json::json!({
                                "token": t, "access_token": t, "expires_in": 300
                            });
                            respond(&stream, "200 OK", &body.to_string());
                        }
                        None => respond(&stream, "500 Internal Server Error", "{}"),
                    }
                }
            })
        };
        TokenServer {
            port,
            cert,
            stop,
            issued,
            refused,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry trusts (`rootcertbundle`).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Tokens handed out so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Requests refused for bad or missing credentials.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_url_form_has_no_padding() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xfb\xff\xfe"] {
            assert_eq!(b64_decode(&b64(data, false)).as_deref(), Some(data));
        }
        assert_eq!(b64(b"foob", false), "Zm9vYg==");
        assert_eq!(b64(b"\xfb\xff", true), "-_8");
    }

    #[test]
    fn scopes_become_access_entries() {
        let a = access_of(&["repository:private/bb:pull,push".into()]);
        assert_eq!(
            a,
            vec![
                serde_json::json!({"type": "repository", "name": "private/bb", "actions": ["pull", "push"]})
            ]
        );
        assert_eq!(
            form_pairs("scope=repository%3Ax%3Apull&a=b+c"),
            vec![
                ("scope".to_string(), "repository:x:pull".to_string()),
                ("a".to_string(), "b c".to_string())
            ]
        );
    }
}
