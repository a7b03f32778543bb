//! `POST /build` with the classic builder's semantics (`DOCKER_BUILDKIT=0`): each
//! instruction makes an image; RUN runs a real container of engined on the image
//! built so far and commits its upper directory, COPY/ADD/WORKDIR write through a
//! created (never started) container's view, the others change the config alone.
//! The answer streams JSON lines as dockerd's builder writes them.

pub mod context;
pub mod dockerfile;
pub mod ignore;
mod steps;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use crate::error::{ApiError, ApiResult, Context};
use crate::images::ImageInfo;
use crate::reference;
use crate::rootfs::on_thread;
use crate::save::query_values;
use crate::server::{Body, channel_body};

/// What the query asks for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub quiet: bool,
    pub nocache: bool,
    pub rm: bool,
    pub forcerm: bool,
    pub build_args: HashMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: String,
    /// Credentials by registry, from `X-Registry-Config`, for FROM's pulls.
    pub registry_config: HashMap<String, registry::AuthConfig>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

impl Options {
    pub fn from_query(qs: Option<&str>) -> ApiResult<Self> {
        let last = |k: &str| query_values(qs, k).pop();
        let build_args = match last("buildargs").filter(|s| !s.is_empty()) {
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| ApiError::BadRequest(format!("invalid buildargs: {e}")))?,
            None => HashMap::new(),
        };
        let labels = match last("labels").filter(|s| !s.is_empty()) {
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| ApiError::BadRequest(format!("invalid labels: {e}")))?,
            None => BTreeMap::new(),
        };
        let mut tags = Vec::new();
        for t in query_values(qs, "t") {
            if t.is_empty() {
                continue;
            }
            if !reference::is_valid(&t) {
                return Err(ApiError::BadRequest(format!(
                    "invalid reference format: {t}"
                )));
            }
            tags.push(t);
        }
        Ok(Self {
            dockerfile: last("dockerfile")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "Dockerfile".into()),
            tags,
            quiet: last("q").is_some_and(|v| truthy(&v)),
            nocache: last("nocache").is_some_and(|v| truthy(&v)),
            rm: last("rm").is_none_or(|v| truthy(&v)),
            forcerm: last("forcerm").is_some_and(|v| truthy(&v)),
            build_args,
            labels,
            target: last("target").unwrap_or_default(),
            registry_config: HashMap::new(),
        })
    }

    /// The credentials the client gave for the registry of `image`, if any.
    pub fn registry_auth(&self, image: &str) -> registry::AuthConfig {
        let full = reference::normalize(image);
        let host = full.split('/').next().unwrap_or("");
        self.registry_config
            .iter()
            .find(|(k, _)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let k = k.split('/').next().unwrap_or("");
                k == host || (host == "docker.io" && k == "index.docker.io")
            })
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }
}

/// The output of a build, as JSON lines.
#[derive(Debug, Clone)]
pub struct Out {
    tx: mpsc::Sender<Bytes>,
    quiet: bool,
}

impl Out {
    async fn line(&self, v: Value) {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.extend_from_slice(b"\r\n");
        let _ = self.tx.send(Bytes::from(b)).await;
    }

    /// A `stream` message (left out with `q=1`).
    pub async fn stream(&self, s: impl Into<String>) {
        if !self.quiet {
            self.line(json!({ "stream": s.into() })).await;
        }
    }

    /// Where a pull inside the build sends its progress lines: the stream, or a
    /// drain with `q=1`.
    pub fn progress(&self) -> mpsc::Sender<Bytes> {
        if !self.quiet {
            return self.tx.clone();
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        tx
    }

    pub async fn error(&self, msg: &str, code: Option<i64>) {
        let detail = match code {
            Some(c) => json!({ "code": c, "message": msg }),
            None => json!({ "message": msg }),
        };
        self.line(json!({ "errorDetail": detail, "error": msg }))
            .await;
    }
}

/// Why a build stopped.
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    /// A RUN that exited non-zero: the message and its exit code.
    Exit(String, i64),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<dockerfile::ParseError> for Failure {
    fn from(e: dockerfile::ParseError) -> Self {
        Self::Api(ApiError::BadRequest(e.to_string()))
    }
}

/// `POST /build`.
pub async fn build(d: Arc<Daemon>, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let qs = req.uri().query().map(str::to_string);
    let mut opts = Options::from_query(qs.as_deref())?;
    if let Some(v) = req
        .headers()
        .get("X-Registry-Config")
        .and_then(|v| v.to_str().ok())
    {
        // Bad credentials are the registry's business to refuse, not a reason
        // to fail a build that may not pull at all.
        opts.registry_config = registry::AuthConfig::map_from_header(v).unwrap_or_default();
    }
    if query_values(qs.as_deref(), "remote")
        .iter()
        .any(|r| !r.is_empty())
    {
        return Err(ApiError::BadRequest(
            "remote build contexts (git, URLs) are not supported by engined's builder".into(),
        ));
    }
    // The body first: the CLI sends the whole context before it reads the answer.
    let tmp = d.cfg.data_root.join("tmp");
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .ctx(|| "create the build directory".into())?;
    let archive = work.path().join("context.tar");
    let mut f = tokio::fs::File::create(&archive)
        .await
        .ctx(|| "store the build context".into())?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("read the build context: {e}")))?;
        if let Some(data) = frame.data_ref() {
            f.write_all(data)
                .await
                .ctx(|| "store the build context".into())?;
        }
    }
    f.flush().await.ctx(|| "store the build context".into())?;
    drop(f);

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let out = Out {
        tx,
        quiet: opts.quiet,
    };
    let dockerfile = std::mem::take(&mut opts.dockerfile);
    tokio::spawn(async move {
        let result = run(&d, &opts, &dockerfile, work.path(), &archive, &out).await;
        match result {
            Ok(id) => {
                if opts.quiet {
                    out.line(json!({ "stream": format!("{id}\n") })).await;
                }
            }
            Err(Failure::Api(e)) => out.error(&e.to_string(), None).await,
            Err(Failure::Exit(msg, code)) => out.error(&msg, Some(code)).await,
        }
        drop(work);
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..12.min(hex.len())]
}

/// Unpacks the context, reads the Dockerfile and runs its instructions; returns the
/// image id.
async fn run(
    d: &Arc<Daemon>,
    opts: &Options,
    dockerfile: &str,
    work: &Path,
    archive: &Path,
    out: &Out,
) -> Result<String, Failure> {
    let ctx = work.join("context");
    let (ctx2, archive2) = (ctx.clone(), archive.to_path_buf());
    let df_rel = context::clean_rel(Path::new(dockerfile));
    let text = on_thread("build-context", move || -> ApiResult<Option<String>> {
        std::fs::create_dir(&ctx2).ctx(|| "create the context directory".into())?;
        let f = std::fs::File::open(&archive2).ctx(|| "open the build context".into())?;
        context::unpack(f, &ctx2).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let _ = std::fs::remove_file(&archive2);
        // Read through the context's scope: a Dockerfile that is a link stays inside.
        let root = std::fs::File::open(&ctx2).ctx(|| "open the context".into())?;
        let text = rootpath::resolve_in_root(
            std::os::fd::AsFd::as_fd(&root),
            &df_rel,
            rootpath::Create::Nothing,
        )
        .ok()
        .and_then(|fd| std::fs::read_to_string(rootpath::fd_path(&fd)).ok());
        let ignore = std::fs::read_to_string(ctx2.join(".dockerignore")).unwrap_or_default();
        context::apply_ignore(&ctx2, &ignore::Ignore::parse(&ignore))
            .ctx(|| "apply .dockerignore".into())?;
        Ok(text)
    })
    .await??;
    let Some(text) = text else {
        return Err(ApiError::BadRequest(format!(
            "Cannot locate specified Dockerfile: {dockerfile}"
        ))
        .into());
    };
    let (mut instructions, escape) = dockerfile::parse(&text)?;
    if !opts.labels.is_empty() {
        // As dockerd does: the build's labels are one more LABEL step.
        let body: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{:?}={:?}", k, v))
            .collect();
        let line = format!("LABEL {}", body.join(" "));
        let (mut extra, _) = dockerfile::parse(&line)?;
        instructions.append(&mut extra);
    }
    let mut b = steps::Builder::new(d.clone(), opts, ctx, escape, out.clone());
    let total = instructions.len();
    let mut final_id: Option<String> = None;
    for (i, ins) in instructions.iter().enumerate() {
        if ins.cmd == "FROM" && b.stage_done(&opts.target) {
            break;
        }
        out.stream(format!("Step {}/{} : {}", i + 1, total, ins.original))
            .await;
        out.stream("\n").await;
        let id = b.step(ins).await?;
        // ARG before FROM and FROM scratch make no image.
        if !id.is_empty() {
            out.stream(format!(" ---> {}\n", short(&id))).await;
            final_id = Some(id);
        }
    }
    let unused = b.unused_args();
    if !unused.is_empty() {
        out.stream(format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused.join(" ")
        ))
        .await;
    }
    let id = final_id.ok_or_else(|| {
        ApiError::BadRequest("No image was generated. Is your Dockerfile empty?".into())
    })?;
    out.line(json!({ "aux": { "ID": id } })).await;
    out.stream(format!("Successfully built {}\n", short(&id)))
        .await;
    for t in &opts.tags {
        d.images.tag(&id, t).await?;
        crate::events::tagged(d, &id, t).await;
        out.stream(format!(
            "Successfully tagged {}\n",
            reference::familiar(&reference::normalize(t))
        ))
        .await;
    }
    Ok(id)
}

/// The image a build step starts from (None: `FROM scratch`).
pub type Base = Option<ImageInfo>;

/// Where the build cache index lives.
fn cache_file(d: &Daemon) -> PathBuf {
    d.cfg.data_root.join("build-cache.json")
}
