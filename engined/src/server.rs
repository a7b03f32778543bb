//! The HTTP side: one hyper HTTP/1.1 connection handler per client on each Unix
//! socket (and TCP listener, see [`crate::listen`]), version-prefix handling, the headers dockerd puts on every response, JSON
//! errors, and hijacked (101) streams for attach and exec.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use crate::api;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// The API version we speak and advertise.
pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.12";
const MAX_API: (u32, u32) = (1, 41);
const MIN_API: (u32, u32) = (1, 12);
pub const SERVER_VERSION: &str = "20.10.24-engined";
/// JSON request bodies larger than this are refused (image loads stream instead).
pub const MAX_JSON_BODY: usize = 4 << 20;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    r
}

pub fn json<T: Serialize>(code: StatusCode, v: &T) -> Response<Body> {
    match serde_json::to_vec(v) {
        Ok(mut data) => {
            data.push(b'\n');
            let mut r = Response::new(full(data));
            *r.status_mut() = code;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error_response(&ApiError::Internal(format!("encode response: {e}"))),
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let code = e.status();
    if code == StatusCode::NOT_MODIFIED {
        return status(code);
    }
    json(code, &serde_json::json!({ "message": e.to_string() }))
}

/// A chunked body fed from a channel; dropping the sender ends it.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    BodyExt::boxed(StreamBody::new(stream))
}

/// Query string as a map (last value wins), percent-decoded.
pub fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "yes"))
}

/// Reads a JSON body (bounded); an empty body is `None`.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> ApiResult<Option<T>> {
    let body = Limited::new(req.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::BadRequest(format!(
                    "request body too large (limit {MAX_JSON_BODY} bytes)"
                ))
            } else {
                ApiError::BadRequest(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

/// `/v1.41/containers/json` → (Some((1, 41)), "/containers/json").
pub fn split_version(path: &str) -> (Option<(u32, u32)>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if let Some((maj, min)) = v.split_once('.')
            && let (Ok(a), Ok(b)) = (maj.parse::<u32>(), min.parse::<u32>())
        {
            let tail = &rest[end..];
            return (Some((a, b)), if tail.is_empty() { "/" } else { tail });
        }
    }
    (None, path)
}

fn add_common_headers(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static("Docker/20.10.24-engined (linux)"),
    );
}

async fn handle(d: Arc<Daemon>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = info_span!("request", %method, %path);
    let mut resp = async {
        let (version, route) = split_version(&path);
        if let Some(v) = version {
            if v > MAX_API {
                return error_response(&ApiError::BadRequest(format!(
                    "client version {}.{} is too new. Maximum supported API version is {API_VERSION}",
                    v.0, v.1
                )));
            }
            if v < MIN_API {
                return error_response(&ApiError::BadRequest(format!(
                    "client version {}.{} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version",
                    v.0, v.1
                )));
            }
        }
        let route = route.to_string();
        match api::dispatch(d, req, &method, &route).await {
            Ok(r) => r,
            Err(e) => {
                if e.status().is_server_error() {
                    warn!(error = %e, "request failed");
                } else {
                    debug!(error = %e, "request refused");
                }
                error_response(&e)
            }
        }
    }
    .instrument(span)
    .await;
    add_common_headers(&mut resp);
    resp
}

/// Binds a Unix socket (replacing a stale one) with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves one listener forever.
pub async fn serve(d: Arc<Daemon>, listener: UnixListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(d.clone(), stream));
    }
}

/// Serves HTTP/1.1 (with upgrades for hijacked streams) on one accepted connection:
/// a Unix socket, a TCP stream or a TLS session over one.
pub async fn serve_connection<S>(d: Arc<Daemon>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let d = d.clone();
        async move { Ok::<_, Infallible>(handle(d, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(error = %e, "connection ended with an error");
    }
}

/// Whether the client asked to hijack the connection (`Upgrade: tcp`).
pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The 101 answer to a hijack request.
pub fn upgraded_response(multiplexed: bool) -> Response<Body> {
    let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if multiplexed {
            "application/vnd.docker.multiplexed-stream"
        } else {
            "application/vnd.docker.raw-stream"
        }),
    );
    h.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(hyper::header::UPGRADE, HeaderValue::from_static("tcp"));
    r
}

pub fn method_not_allowed(method: &Method, route: &str) -> ApiError {
    ApiError::NotFound(format!("page not found: {method} {route}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            split_version("/v1.41/containers/json"),
            (Some((1, 41)), "/containers/json")
        );
        assert_eq!(split_version("/_ping"), (None, "/_ping"));
        assert_eq!(split_version("/v1.12/x"), (Some((1, 12)), "/x"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
    }

    #[test]
    fn decodes() {
        assert_eq!(
            percent_decode("127.0.0.1%3A5055%2Fbusybox"),
            "127.0.0.1:5055/busybox"
        );
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%7B%22a%22%7D"), "{\"a\"}");
    }
}
