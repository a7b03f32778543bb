//! The connection to engined: one transport (Unix socket or plain TCP) under both
//! the bollard client and our own requests for the streams whose framing the CLI
//! must decide itself (attach and exec, logs, the head of `/wait`), and the API
//! version negotiated with `HEAD /_ping` as the docker CLI does.
//!
//! Why not bollard for the streams: its attach and exec decoders guess from each
//! chunk's first byte whether a stdcopy header follows, while docker decides from
//! the container's `Tty` setting (a terminal can send a 0x01 byte); and its wait
//! stream does not say when the response head has arrived, which `run` must know
//! before it starts the container (a fast container would exit before the wait
//! is registered, and `next-exit` would then wait forever).

use std::pin::Pin;
use std::sync::Arc;

use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{CliError, ConnectError, Result};
use crate::host::Endpoint;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Debug, Clone)]
struct Connector {
    endpoint: Endpoint,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Connector {
    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let wrap = |source: std::io::Error| {
            std::io::Error::new(
                source.kind(),
                ConnectError {
                    host: self.endpoint.to_string(),
                    source,
                },
            )
        };
        Ok(match &self.endpoint {
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.map_err(wrap)?),
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(wrap)?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        })
    }

    /// One request on a fresh connection (the daemon keeps streams and hijacks on
    /// their own connections anyway); the connection task serves upgrades.
    async fn send<B>(
        &self,
        mut req: Request<B>,
    ) -> std::result::Result<Response<Incoming>, SendError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        // HTTP/1 wants the origin form; bollard builds absolute URIs.
        let origin = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        *req.uri_mut() = origin
            .parse()
            .map_err(|e| SendError::Other(format!("{e}")))?;
        req.headers_mut()
            .entry(hyper::header::HOST)
            .or_insert(hyper::header::HeaderValue::from_static("engined"));
        let io = self.connect().await.map_err(SendError::Io)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(SendError::Hyper)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.map_err(SendError::Hyper)
    }
}

#[derive(Debug)]
enum SendError {
    Io(std::io::Error),
    Hyper(hyper::Error),
    Other(String),
}

impl From<SendError> for bollard::errors::Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Io(err) => bollard::errors::Error::IOError { err },
            SendError::Hyper(err) => err.into(),
            SendError::Other(s) => bollard::errors::Error::IOError {
                err: std::io::Error::other(s),
            },
        }
    }
}

impl From<SendError> for CliError {
    fn from(e: SendError) -> Self {
        bollard::errors::Error::from(e).into()
    }
}

/// The hijacked halves of an attach or exec stream.
pub type Hijacked = (
    tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>,
    tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>,
);

pub type RawBody = Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BoxError> + Send>>;

/// A client of one daemon.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    conn: Arc<Connector>,
    version: (usize, usize),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("endpoint", &self.conn.endpoint)
            .field("version", &self.version)
            .finish()
    }
}

/// Requests that stream (logs -f, events, pull) must not be cut off; the timeout
/// only bounds the wait for a response head (a long `load` or `build` included).
const HEAD_TIMEOUT_SECS: u64 = 24 * 3600;

impl Engine {
    /// Connects (pings) and settles the API version: the daemon's, capped at the
    /// newest bollard's models know; 1.24 if the daemon names none (as docker).
    pub async fn connect(endpoint: Endpoint) -> Result<Self> {
        let conn = Arc::new(Connector { endpoint });
        let ping = Request::builder()
            .method(Method::HEAD)
            .uri("/_ping")
            .body(Full::new(Bytes::new()))
            .map_err(|e| CliError::Other(e.to_string()))?;
        let res = conn.send(ping).await?;
        let max = bollard::API_DEFAULT_VERSION;
        let version = res
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version)
            .map(|v| v.min((max.major_version, max.minor_version)))
            .unwrap_or((1, 24));
        let c = conn.clone();
        let docker = Docker::connect_with_custom_transport(
            move |req: bollard::BollardRequest| {
                let c = c.clone();
                async move { c.send(req).await.map_err(bollard::errors::Error::from) }
            },
            Some("http://engined"),
            HEAD_TIMEOUT_SECS,
            &ClientVersion {
                major_version: version.0,
                minor_version: version.1,
            },
        )?;
        Ok(Self {
            docker,
            conn,
            version,
        })
    }

    pub fn api_version(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    pub fn endpoint(&self) -> String {
        self.conn.endpoint.to_string()
    }

    fn uri(&self, path_and_query: &str) -> String {
        format!("/v{}.{}{}", self.version.0, self.version.1, path_and_query)
    }

    /// A request of our own; an error status becomes [`CliError::Daemon`].
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: RawBody,
    ) -> Result<Response<Incoming>> {
        let mut b = Request::builder()
            .method(method)
            .uri(self.uri(path_and_query));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body).map_err(|e| CliError::Other(e.to_string()))?;
        let res = self.conn.send(req).await?;
        check(res).await
    }

    /// A request with a JSON body (or none).
    pub async fn request_json(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        self.request(method, path_and_query, headers, full(bytes))
            .await
    }

    /// `POST` with the upgrade headers; returns the raw two-way stream.
    pub async fn hijack(&self, path_and_query: &str, body: Option<&Value>) -> Result<Hijacked> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.uri(path_and_query))
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp");
        let bytes = match body {
            Some(v) => {
                b = b.header("Content-Type", "application/json");
                Bytes::from(v.to_string())
            }
            None => {
                b = b.header("Content-Type", "text/plain");
                Bytes::new()
            }
        };
        let req = b
            .body(Full::new(bytes))
            .map_err(|e| CliError::Other(e.to_string()))?;
        let res = check(self.conn.send(req).await?).await?;
        let upgraded = hyper::upgrade::on(res).await.map_err(|e| {
            CliError::Other(format!("the daemon did not hijack the connection: {e}"))
        })?;
        Ok(tokio::io::split(TokioIo::new(upgraded)))
    }
}

pub fn full(b: impl Into<Bytes>) -> RawBody {
    Box::pin(Full::new(b.into()).map_err(|never| match never {}))
}

fn parse_version(v: &str) -> Option<(usize, usize)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// An error status with its `{"message"}` (or raw text) as a daemon error.
async fn check(res: Response<Incoming>) -> Result<Response<Incoming>> {
    let status = res.status();
    if status.is_success() || status.is_informational() || status == hyper::StatusCode::NOT_MODIFIED
    {
        return Ok(res);
    }
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or(text);
    Err(CliError::Daemon {
        status: status.as_u16(),
        message,
    })
}

/// Percent-encodes a query (keys and values), form style.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode() {
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("fromImage", "127.0.0.1:5055/busybox"), ("tag", "latest")]),
            "?fromImage=127.0.0.1%3A5055%2Fbusybox&tag=latest"
        );
        assert_eq!(
            query(&[("changes", "CMD [\"sh\"]")]),
            "?changes=CMD+%5B%22sh%22%5D"
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert_eq!(parse_version("x"), None);
    }
}
