//! `docker import`: `POST /images/create?fromSrc=-` with a rootfs tar (plain, gzip or
//! zstd) as the body becomes a one-layer image, as dockerd makes it: the layer
//! stored uncompressed (its digest is its diff id), a config with the `changes`
//! applied and one history entry carrying the message, unpacked and tagged.

use std::io::{Read, Write};
use std::path::Path;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::info;

use crate::changes;
use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult, Context};
use crate::reference;
use crate::save::query_values;
use crate::server::{self, Body};

/// The compression of an import body, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(b"BZh") {
            Self::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else {
            Self::None
        }
    }
}

/// The Go architecture name of this machine, as image configs spell it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The full name to tag the import with: `repo` may carry a tag itself, which a
/// non-empty `tag` replaces (as dockerd does).
fn import_name(repo: &str, tag: &str) -> ApiResult<Option<String>> {
    if repo.is_empty() {
        return Ok(None);
    }
    if repo.contains('@') {
        return Err(ApiError::BadRequest(
            "cannot import digest reference".into(),
        ));
    }
    let name = if tag.is_empty() {
        repo.to_string()
    } else {
        format!("{}:{tag}", reference::split_tag(repo).0)
    };
    if !reference::is_valid(&name) {
        return Err(ApiError::BadRequest(format!(
            "invalid reference format: {name}"
        )));
    }
    Ok(Some(reference::normalize(&name)))
}

/// What the query string asks of an import.
#[derive(Debug)]
struct ImportRequest {
    name: Option<String>,
    config: serde_json::Map<String, Value>,
    message: String,
}

fn parse_request(query: Option<&str>) -> ApiResult<ImportRequest> {
    let last = |k: &str| query_values(query, k).pop().unwrap_or_default();
    let src = last("fromSrc");
    if src != "-" {
        return Err(ApiError::BadRequest(format!(
            "engined imports only from the request body (fromSrc=-), not from {src:?}"
        )));
    }
    let platform = last("platform");
    let arch = go_arch();
    if !platform.is_empty() && platform != "linux" && platform != format!("linux/{arch}") {
        return Err(ApiError::BadRequest(format!(
            "cannot import for platform {platform:?}: this daemon runs linux/{arch}"
        )));
    }
    let name = import_name(&last("repo"), &last("tag"))?;
    let mut config = changes::empty_config();
    changes::apply(&mut config, &query_values(query, "changes"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let message = match last("message") {
        m if m.is_empty() => format!("Imported from {src}"),
        m => m,
    };
    Ok(ImportRequest {
        name,
        config,
        message,
    })
}

/// `POST /images/create?fromSrc=-&repo=&tag=&changes=&message=&platform=`.
pub async fn import(d: &Daemon, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let q = req.uri().query().map(str::to_string);
    let ImportRequest {
        name,
        config,
        message,
    } = match parse_request(q.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            // The CLI is still sending the tar: a reply before it is read would
            // reach it as a broken pipe instead of this error.
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            return Err(e);
        }
    };
    let arch = go_arch();
    let started = std::time::Instant::now();

    let tmp_dir = d.cfg.data_root.join("tmp");
    let spool = tempfile::NamedTempFile::new_in(&tmp_dir).ctx(|| "create a spool file".into())?;
    let mut file = tokio::fs::File::from_std(spool.reopen().ctx(|| "open the spool file".into())?);
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
            file.write_all(data)
                .await
                .ctx(|| "spool the upload".into())?;
        }
    }
    file.flush().await.ctx(|| "spool the upload".into())?;
    drop(file);
    if received == 0 {
        return Err(ApiError::BadRequest(
            "the import body is empty: send a tar of the root filesystem".into(),
        ));
    }

    let spooled = started.elapsed();
    let layer = tempfile::NamedTempFile::new_in(&tmp_dir).ctx(|| "create a layer file".into())?;
    let (input, output) = (spool.path().to_path_buf(), layer.path().to_path_buf());
    let (diff_id, size, compression) =
        tokio::task::spawn_blocking(move || decompress_to(&input, &output))
            .await
            .map_err(|e| ApiError::Internal(format!("import: {e}")))??;
    drop(spool);
    let decompressed = started.elapsed();

    let created = common::rfc3339_nanos(std::time::SystemTime::now());
    let image_config = json!({
        "architecture": arch,
        "os": "linux",
        "created": created,
        "comment": message,
        "docker_version": server::SERVER_VERSION,
        "config": Value::Object(config),
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": created, "comment": message }],
    });
    let config_bytes = serde_json::to_vec(&image_config)
        .map_err(|e| ApiError::Internal(format!("encode config: {e}")))?;
    let names: Vec<String> = name.into_iter().collect();
    let image = d
        .images
        .import(
            &config_bytes,
            image_config,
            layer.path(),
            &diff_id,
            size,
            &names,
        )
        .await?;
    info!(
        id = %image.id, names = ?names, ?compression, layer_bytes = size,
        spool_ms = spooled.as_millis() as u64,
        decompress_ms = (decompressed - spooled).as_millis() as u64,
        store_ms = (started.elapsed() - decompressed).as_millis() as u64,
        "imported"
    );
    d.events.image("import", &image.id, Some(&image.id));
    Ok(server::json(StatusCode::OK, &json!({ "status": image.id })))
}

/// Writes the uncompressed tar to `output` and checks that it is one; returns its
/// digest (the diff id), size and the compression it came in.
fn decompress_to(input: &Path, output: &Path) -> ApiResult<(String, i64, Compression)> {
    let mut f = std::fs::File::open(input).ctx(|| format!("open {}", input.display()))?;
    let mut head = [0u8; 6];
    let n = read_head(&mut f, &mut head).ctx(|| format!("read {}", input.display()))?;
    let compression = Compression::detect(&head[..n]);
    let f = std::fs::File::open(input).ctx(|| format!("open {}", input.display()))?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(f)
                .map_err(|e| ApiError::BadRequest(format!("invalid zstd stream: {e}")))?,
        ),
        Compression::Bzip2 | Compression::Xz => {
            return Err(ApiError::BadRequest(format!(
                "{compression:?}-compressed imports are not supported: send a plain, gzip or zstd tar"
            )));
        }
    };
    let out = std::fs::File::create(output).ctx(|| format!("create {}", output.display()))?;
    let mut w = HashingWriter {
        inner: std::io::BufWriter::new(out),
        hash: Sha256::new(),
        size: 0,
    };
    let mut reader = reader;
    std::io::copy(&mut reader, &mut w).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            ApiError::BadRequest(format!("invalid {compression:?} data: {e}"))
        }
        _ => ApiError::Io {
            context: "decompress the import".into(),
            source: e,
        },
    })?;
    w.inner
        .flush()
        .ctx(|| format!("write {}", output.display()))?;
    let size = w.size;
    let mut digest = String::from("sha256:");
    for b in w.hash.finalize() {
        digest.push_str(&format!("{b:02x}"));
    }
    check_tar(output, size)?;
    Ok((digest, size as i64, compression))
}

fn read_head(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A tar is whole 512-byte blocks of valid headers and data; anything else (a
/// stray text file, a truncated upload) is refused before it reaches a snapshot.
fn check_tar(path: &Path, size: u64) -> ApiResult<()> {
    let invalid = |m: String| ApiError::BadRequest(format!("the import is not a tar archive: {m}"));
    if size == 0 || !size.is_multiple_of(512) {
        return Err(invalid(format!(
            "{size} bytes is not a whole number of 512-byte blocks"
        )));
    }
    let f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut ar = tar::Archive::new(f);
    for entry in ar.entries_with_seek().map_err(|e| invalid(e.to_string()))? {
        entry.map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("./bin/hello").unwrap();
        h.set_size(3);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, &b"hi\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn digest(data: &[u8]) -> String {
        crate::images::digest_of(data)
    }

    fn roundtrip(body: &[u8]) -> ApiResult<(String, i64, Compression)> {
        let dir = tempfile::tempdir().unwrap();
        let (i, o) = (dir.path().join("in"), dir.path().join("out"));
        std::fs::write(&i, body).unwrap();
        let r = decompress_to(&i, &o)?;
        assert_eq!(std::fs::read(&o).unwrap().len() as i64, r.1);
        Ok(r)
    }

    #[test]
    fn plain_gzip_and_zstd_give_the_same_diff_id() {
        let tar = rootfs_tar();
        let want = digest(&tar);
        let (d, size, c) = roundtrip(&tar).unwrap();
        assert_eq!(
            (d.as_str(), size, c),
            (want.as_str(), tar.len() as i64, Compression::None)
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (d, _, c) = roundtrip(&gz.finish().unwrap()).unwrap();
        assert_eq!((d.as_str(), c), (want.as_str(), Compression::Gzip));

        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let (d, _, c) = roundtrip(&zst).unwrap();
        assert_eq!((d.as_str(), c), (want.as_str(), Compression::Zstd));
    }

    #[test]
    fn refuses_what_is_not_a_tar() {
        let e = roundtrip(b"just some text\n").unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{e}");
        let mut garbage = vec![0x55u8; 1024];
        garbage[0] = b'x';
        let e = roundtrip(&garbage).unwrap_err();
        assert!(e.to_string().contains("not a tar"), "{e}");
        let e = roundtrip(b"BZh91AY&SY").unwrap_err();
        assert!(e.to_string().contains("Bzip2"), "{e}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&rootfs_tar()).unwrap();
        let mut cut = gz.finish().unwrap();
        cut.truncate(cut.len() / 2);
        assert!(matches!(roundtrip(&cut), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn names_as_dockerd_forms_them() {
        assert_eq!(import_name("", "").unwrap(), None);
        assert_eq!(
            import_name("imported:v1", "").unwrap().as_deref(),
            Some("docker.io/library/imported:v1")
        );
        assert_eq!(
            import_name("imported:v1", "v2").unwrap().as_deref(),
            Some("docker.io/library/imported:v2")
        );
        assert_eq!(
            import_name("127.0.0.1:5000/me/x", "").unwrap().as_deref(),
            Some("127.0.0.1:5000/me/x:latest")
        );
        assert!(import_name("Bad", "").is_err());
        assert!(import_name("x@sha256:abcd", "").is_err());
    }
}
