//! Where engined listens: Unix sockets, and TCP ports, which are served only with
//! TLS (mutual with `--tlsverify`, as dockerd's flags have it) unless
//! `--insecure-tcp` asks for plain HTTP. The whole configuration, certificates
//! included, is checked before anything else starts, so a bad one is one error line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::Config;
use crate::daemon::Daemon;
use crate::server;

/// A client gets this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One address to serve.
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        /// `None` only with `--insecure-tcp`.
        tls: Option<TlsAcceptor>,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::Tcp { addr, tls } => write!(
                f,
                "tcp://{addr} ({})",
                if tls.is_some() { "TLS" } else { "plain HTTP" }
            ),
        }
    }
}

/// Parses `-H` and the TLS flags into endpoints, loading certificates and keys.
pub fn endpoints(cfg: &Config) -> Result<Vec<Endpoint>, String> {
    let tls_wanted = cfg.tls || cfg.tlsverify;
    if cfg.insecure_tcp && tls_wanted {
        return Err("--insecure-tcp contradicts --tls/--tlsverify: give one or the other".into());
    }
    let hosts: Vec<String> = if cfg.hosts.is_empty() {
        vec!["unix:///run/engined.sock".into()]
    } else {
        cfg.hosts.clone()
    };
    let acceptor = if tls_wanted {
        Some(TlsAcceptor::from(Arc::new(tls_config(cfg)?)))
    } else {
        None
    };
    let mut out = Vec::new();
    for h in &hosts {
        if let Some(path) = h.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(format!("invalid host {h:?}: no socket path"));
            }
            out.push(Endpoint::Unix(PathBuf::from(path)));
        } else if let Some(rest) = h.strip_prefix("tcp://") {
            let addr =
                tcp_addr(rest, tls_wanted).map_err(|e| format!("invalid host {h:?}: {e}"))?;
            if !tls_wanted && !cfg.insecure_tcp {
                return Err(format!(
                    "refusing to serve {h} without TLS: give --tlsverify with --tlscacert, --tlscert and --tlskey (or --insecure-tcp for plain HTTP)"
                ));
            }
            out.push(Endpoint::Tcp {
                addr,
                tls: acceptor.clone(),
            });
        } else {
            return Err(format!(
                "unsupported host {h:?}: use unix:///path or tcp://HOST:PORT"
            ));
        }
    }
    Ok(out)
}

/// `HOST:PORT`, `HOST`, `:PORT`, `[::1]:PORT`; the host defaults to 127.0.0.1 and
/// the port to dockerd's (2376 with TLS, 2375 without).
fn tcp_addr(rest: &str, tls: bool) -> Result<SocketAddr, String> {
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err("a tcp host takes no path".into());
    }
    let default_port = if tls { 2376 } else { 2375 };
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 address without a port: `[::1]`.
        Some((h, _)) if h.starts_with('[') && !h.ends_with(']') => (rest, None),
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port: u16 = match port {
        None | Some("") => default_port,
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Where dockerd looks for the TLS files when no flag names them.
fn cert_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CERT_PATH").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker")
}

fn tls_config(cfg: &Config) -> Result<rustls::ServerConfig, String> {
    let dir = cert_dir();
    let pick = |flag: &Option<PathBuf>, file: &str| flag.clone().unwrap_or_else(|| dir.join(file));
    let cert = pick(&cfg.tlscert, "cert.pem");
    let key = pick(&cfg.tlskey, "key.pem");
    // The provider reqwest already links in: no second crypto library.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if cfg.tlsverify {
        let ca = pick(&cfg.tlscacert, "ca.pem");
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(&ca, "--tlscacert")? {
            roots
                .add(c)
                .map_err(|e| format!("--tlscacert {}: {e}", ca.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("--tlscacert {}: {e}", ca.display()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let chain = certificates(&cert, "--tlscert")?;
    let key_der = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("--tlskey {}: {}", key.display(), pem_error(&e)))?;
    builder.with_single_cert(chain, key_der).map_err(|e| {
        format!(
            "--tlscert {} with --tlskey {}: {e}",
            cert.display(),
            key.display()
        )
    })
}

fn certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{flag} {}: {}", path.display(), pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the right kind in it".into(),
        other => format!("{other:?}"),
    }
}

/// Binds a TCP endpoint (before the daemon announces it is serving).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Serves one TCP listener forever; each connection does its TLS handshake in its
/// own task, so a slow or hostile client holds up no one else.
pub async fn serve_tcp(d: Arc<Daemon>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    if tls.is_none() {
        warn!(
            addr = ?listener.local_addr().ok(),
            "serving plain HTTP on TCP (--insecure-tcp): anyone who can reach this port has root on this host"
        );
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Attach and exec streams carry keystrokes: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let d = d.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(acceptor) = tls else {
                server::serve_connection(d, stream).await;
                return;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => server::serve_connection(d, s).await,
                Ok(Err(e)) => info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Config {
        let mut full = vec!["engined"];
        full.extend_from_slice(args);
        Config::parse_from(full)
    }

    #[test]
    fn tcp_needs_tls_or_an_explicit_opt_out() {
        let e = endpoints(&cfg(&["-H", "tcp://127.0.0.1:2375"])).unwrap_err();
        assert!(
            e.contains("without TLS") && e.contains("--tlsverify"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let ok = endpoints(&cfg(&[
            "-H",
            "unix:///tmp/x.sock",
            "-H",
            "tcp://127.0.0.1:2375",
            "--insecure-tcp",
        ]))
        .unwrap();
        assert_eq!(
            format!("{ok:?}"),
            "[unix:///tmp/x.sock, tcp://127.0.0.1:2375 (plain HTTP)]"
        );
        let e = endpoints(&cfg(&["--tls", "--insecure-tcp"])).unwrap_err();
        assert!(e.contains("contradicts"), "{e}");
        let e = endpoints(&cfg(&[
            "--tlsverify",
            "--tlscacert",
            "/nonexistent/ca.pem",
            "-H",
            "tcp://127.0.0.1:1",
        ]))
        .unwrap_err();
        assert!(e.starts_with("--tlscacert /nonexistent/ca.pem: "), "{e}");
        assert!(endpoints(&cfg(&["-H", "ssh://x"])).is_err());
        assert!(endpoints(&cfg(&["-H", "unix://"])).is_err());
    }

    #[test]
    fn tcp_addresses_as_dockerd_reads_them() {
        assert_eq!(
            tcp_addr("127.0.0.1:2400", true).unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        assert_eq!(
            tcp_addr(":2400", false).unwrap(),
            "127.0.0.1:2400".parse().unwrap()
        );
        assert_eq!(tcp_addr("127.0.0.1", true).unwrap().port(), 2376);
        assert_eq!(tcp_addr("127.0.0.1", false).unwrap().port(), 2375);
        assert_eq!(
            tcp_addr("[::1]:2400", true).unwrap(),
            "[::1]:2400".parse().unwrap()
        );
        assert_eq!(tcp_addr("[::1]", true).unwrap().port(), 2376);
        assert!(tcp_addr("127.0.0.1:http", true).is_err());
        assert!(tcp_addr("127.0.0.1:1/x", true).is_err());
    }
}
