//! Images: list, pull, push, load, save, import (and `image import-rootfs`, which
//! tars a directory and imports it), tag, rmi, prune; commit and export of
//! containers.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bollard::query_parameters::{
    CommitContainerOptions, CreateImageOptions, ImportImageOptions, ListImagesOptions,
    PruneImagesOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use clap::Args;
use futures_util::{Stream, StreamExt};
use hyper::Method;
use serde_json::{Value, json};

use super::{each, filters, print, println, to_value};
use crate::client::{Engine, full, query};
use crate::error::{CliError, Result};
use crate::progress::Display;
use crate::reference::{Reference, familiar_repo};
use crate::streams::JsonLines;
use crate::table::{Format, render};
use crate::tty;
use crate::units::{ago, go_time_string, human_size, human_size4, short_id};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// [REPOSITORY[:TAG]]
    pub reference: Option<String>,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// `repo:tag` split at the tag's colon (a registry port has a `/` after it).
fn split_repo_tag(rt: &str) -> (String, String) {
    let slash = rt.rfind('/').map_or(0, |i| i + 1);
    match rt[slash..].rfind(':') {
        Some(i) => (rt[..slash + i].to_string(), rt[slash + i + 1..].to_string()),
        None => (rt.to_string(), "<none>".into()),
    }
}

/// The rows docker shows for one image: one per tag, or one `<none>` row.
pub fn image_rows(i: &Value, trunc: bool) -> Vec<Value> {
    let id = i.get("Id").and_then(Value::as_str).unwrap_or("");
    let created = i.get("Created").and_then(Value::as_i64).unwrap_or(0);
    let size = i.get("Size").and_then(Value::as_i64).unwrap_or(0) as f64;
    let strs = |k: &str| -> Vec<String> {
        i.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let tags: Vec<String> = strs("RepoTags")
        .into_iter()
        .filter(|t| t != "<none>:<none>")
        .collect();
    let digests: Vec<String> = strs("RepoDigests")
        .into_iter()
        .filter(|d| d != "<none>@<none>")
        .collect();
    let digest_of = |repo: &str| {
        digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| r == &repo)
                    .map(|(_, dg)| dg.to_string())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut pairs: Vec<(String, String)> = tags.iter().map(|t| split_repo_tag(t)).collect();
    if pairs.is_empty() {
        pairs = match digests.first().and_then(|d| d.split_once('@')) {
            Some((r, _)) => vec![(r.to_string(), "<none>".into())],
            None => vec![("<none>".into(), "<none>".into())],
        };
    }
    let labels = i.get("Labels").cloned().unwrap_or(Value::Null);
    pairs
        .into_iter()
        .map(|(repo, tag)| {
            json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest_of(&repo),
                "ID": if trunc { short_id(id) } else { id.to_string() },
                "CreatedSince": ago(created),
                "CreatedAt": go_time_string(created),
                "Size": human_size(size),
                "VirtualSize": human_size(size),
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "Containers": "N/A",
                "_labels": labels,
            })
        })
        .collect()
}

pub async fn images(e: &Engine, a: ImagesArgs) -> Result<i32> {
    let mut f = filters(&a.filter)?;
    if let Some(r) = &a.reference {
        f.entry("reference".into()).or_default().push(r.clone());
    }
    let list = e
        .docker
        .list_images(Some(ListImagesOptions {
            all: a.all,
            filters: (!f.is_empty()).then_some(f),
            digests: a.digests,
            ..Default::default()
        }))
        .await?;
    let values: Vec<Value> = list.iter().map(to_value).collect();
    let trunc = !a.no_trunc;
    if a.quiet {
        let mut seen = HashSet::new();
        let mut out = String::new();
        for i in &values {
            let id = i.get("Id").and_then(Value::as_str).unwrap_or("");
            let id = if trunc { short_id(id) } else { id.to_string() };
            if seen.insert(id.clone()) {
                out.push_str(&id);
                out.push('\n');
            }
        }
        print(&out);
        return Ok(0);
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let format = Format::parse(a.format.as_deref(), default)?;
    let rows: Vec<Value> = values.iter().flat_map(|i| image_rows(i, trunc)).collect();
    print(&render(&format, IMAGE_HEADERS, &rows)?);
    Ok(0)
}

/// `X-Registry-Auth` for a registry: the `auths` entry of the CLI config
/// (`docker login` writes it), else `{}`, base64url-encoded as docker sends it.
pub fn registry_auth(repo: &str) -> String {
    let registry = match repo.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    };
    let config = crate::host::config_dir(None).join("config.json");
    let mut auth = json!({});
    if let Ok(text) = std::fs::read_to_string(config)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
        && let Some(auths) = v.get("auths").and_then(Value::as_object)
    {
        let keys: &[&str] = if registry == "docker.io" {
            &[
                "https://index.docker.io/v1/",
                "docker.io",
                "index.docker.io",
            ]
        } else {
            &[registry]
        };
        let entry = keys.iter().find_map(|k| {
            auths
                .get(*k)
                .or_else(|| auths.get(&format!("https://{k}")))
                .or_else(|| auths.get(&format!("http://{k}")))
        });
        if let Some(encoded) = entry.and_then(|e| e.get("auth")).and_then(Value::as_str)
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded)
            && let Some((user, pass)) = String::from_utf8_lossy(&raw).split_once(':')
        {
            auth = json!({"username": user, "password": pass, "serveraddress": registry});
            // `login` keeps a registry's identity token instead of the password.
            if let Some(t) = entry
                .and_then(|e| e.get("identitytoken"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                auth["identitytoken"] = json!(t);
            }
        }
    }
    base64::engine::general_purpose::URL_SAFE.encode(auth.to_string())
}

/// Shows a JSON-lines stream; returns the `aux` objects it carried.
pub async fn show_stream(body: hyper::body::Incoming, to_stderr: bool) -> Result<Vec<Value>> {
    let terminal = if to_stderr {
        tty::is_terminal(std::os::fd::AsFd::as_fd(&std::io::stderr()))
    } else {
        tty::stdout_is_terminal()
    };
    let mut d = Display::new(terminal, tty::size().map(|(_, c)| c as usize));
    let mut lines = JsonLines::new(body);
    let mut aux = Vec::new();
    while let Some(m) = lines.next().await? {
        if let Some(a) = m.get("aux") {
            aux.push(a.clone());
        }
        if to_stderr {
            d.show(&m, &mut std::io::stderr().lock())?;
        } else {
            d.show(&m, &mut std::io::stdout().lock())?;
        }
    }
    Ok(aux)
}

/// Pulls `image` (docker's `POST /images/create?fromImage=&tag=`); `quiet`
/// shows nothing, `to_stderr` sends the progress to stderr (as `run` does).
pub async fn pull_image(
    e: &Engine,
    image: &str,
    quiet: bool,
    to_stderr: bool,
) -> Result<Reference> {
    let r = Reference::parse(image).map_err(CliError::Usage)?;
    let mut q = vec![("fromImage", r.repo.as_str())];
    let tag = r.tag_or_latest();
    let digest = r.digest.clone();
    match (&digest, &tag) {
        (Some(d), _) => q.push(("tag", d.as_str())),
        (None, Some(t)) => q.push(("tag", t.as_str())),
        _ => {}
    }
    let auth = registry_auth(&r.repo);
    let res = e
        .request(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            &[("X-Registry-Auth", auth.as_str())],
            full(Bytes::new()),
        )
        .await?;
    if quiet {
        let mut lines = JsonLines::new(res.into_body());
        while let Some(m) = lines.next().await? {
            if let Some(err) = crate::progress::error_of(&m) {
                return Err(CliError::Stream(err));
            }
        }
    } else {
        show_stream(res.into_body(), to_stderr).await?;
    }
    Ok(r)
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

pub async fn pull(e: &Engine, a: PullArgs) -> Result<i32> {
    let r = Reference::parse(&a.name).map_err(CliError::Usage)?;
    if r.tag.is_none() && r.digest.is_none() && !a.quiet {
        println("Using default tag: latest");
    }
    let r = pull_image(e, &a.name, a.quiet, false).await?;
    println(&r.full());
    Ok(0)
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub name: String,
}

pub async fn push(e: &Engine, a: PushArgs) -> Result<i32> {
    let r = Reference::parse(&a.name).map_err(CliError::Usage)?;
    let repo = familiar_repo(&r.repo);
    let tag = if a.all_tags { None } else { r.tag_or_latest() };
    if r.tag.is_none() && !a.all_tags && !a.quiet {
        println("Using default tag: latest");
    }
    let q: Vec<(&str, &str)> = tag.as_deref().map(|t| vec![("tag", t)]).unwrap_or_default();
    let auth = registry_auth(&r.repo);
    let res = e
        .request(
            Method::POST,
            &format!("/images/{repo}/push{}", query(&q)),
            &[("X-Registry-Auth", auth.as_str())],
            full(Bytes::new()),
        )
        .await?;
    if a.quiet {
        let mut lines = JsonLines::new(res.into_body());
        while let Some(m) = lines.next().await? {
            if let Some(err) = crate::progress::error_of(&m) {
                return Err(CliError::Stream(err));
            }
        }
        println(&r.familiar());
    } else {
        show_stream(res.into_body(), false).await?;
    }
    Ok(0)
}

/// A file (or stdin) as a body stream, read in 64 KiB chunks.
fn file_stream(
    path: Option<PathBuf>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (path, None::<Box<dyn tokio::io::AsyncRead + Send + Unpin>>),
        |(path, reader)| async move {
            use tokio::io::AsyncReadExt;
            let mut reader = match reader {
                Some(r) => r,
                None => match &path {
                    Some(p) => match tokio::fs::File::open(p).await {
                        Ok(f) => Box::new(f) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Err(e) => return Some((Err(e), (None, None))),
                    },
                    None => Box::new(tokio::io::stdin()),
                },
            };
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (path, Some(reader))))
                }
                Err(e) => Some((Err(e), (path, None))),
            }
        },
    )
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long, value_name = "string")]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub async fn load(e: &Engine, a: LoadArgs) -> Result<i32> {
    if a.input.is_none() && tty::stdin_is_terminal() {
        return Err(CliError::Other(
            "requested load from stdin, but stdin is empty".into(),
        ));
    }
    if let Some(p) = &a.input
        && !p.exists()
    {
        return Err(CliError::Other(format!(
            "open {}: no such file or directory",
            p.display()
        )));
    }
    let quiet = a.quiet || !tty::stdout_is_terminal();
    let mut s = e.docker.import_image_stream(
        ImportImageOptions {
            quiet,
            platform: None,
        },
        file_stream(a.input.clone()),
        None,
    );
    let mut d = Display::new(
        tty::stdout_is_terminal(),
        tty::size().map(|(_, c)| c as usize),
    );
    while let Some(item) = s.next().await {
        let v = build_info(&item?);
        if a.quiet {
            if let Some(err) = crate::progress::error_of(&v) {
                return Err(CliError::Stream(err));
            }
            continue;
        }
        d.show(&v, &mut std::io::stdout().lock())?;
    }
    Ok(0)
}

/// A load message as the JSON the display reads (bollard's type is not Serialize).
fn build_info(b: &bollard::models::BuildInfo) -> Value {
    let mut v = json!({});
    if let Some(s) = &b.stream {
        v["stream"] = json!(s);
    }
    if let Some(s) = &b.status {
        v["status"] = json!(s);
    }
    if let Some(i) = &b.id {
        v["id"] = json!(i);
    }
    if let Some(p) = &b.progress_detail {
        v["progressDetail"] = json!({"current": p.current, "total": p.total});
    }
    if let Some(m) = b.error_detail.as_ref().and_then(|e| e.message.as_ref()) {
        v["errorDetail"] = json!({"message": m});
    }
    v
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long, value_name = "string")]
    pub output: Option<PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

async fn write_stream<S, E>(mut s: S, output: Option<&Path>) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    CliError: From<E>,
{
    match output {
        Some(p) => {
            // Written beside the target and renamed, so a failed save leaves no
            // half archive under the name.
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(CliError::io(format!("create a file in {}", dir.display())))?;
            while let Some(chunk) = s.next().await {
                tmp.write_all(&chunk?)
                    .map_err(CliError::io(format!("write {}", p.display())))?;
            }
            tmp.persist(p)
                .map_err(|e| CliError::io(format!("write {}", p.display()))(e.error))?;
        }
        None => {
            if tty::stdout_is_terminal() {
                return Err(CliError::Other(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
                ));
            }
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = s.next().await {
                out.write_all(&chunk?)
                    .map_err(CliError::io("write to stdout"))?;
            }
            let _ = out.flush();
        }
    }
    Ok(())
}

pub async fn save(e: &Engine, a: SaveArgs) -> Result<i32> {
    let names: Vec<&str> = a.images.iter().map(String::as_str).collect();
    write_stream(e.docker.export_images(&names), a.output.as_deref()).await?;
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long, value_name = "string")]
    pub output: Option<PathBuf>,
    pub container: String,
}

pub async fn export(e: &Engine, a: ExportArgs) -> Result<i32> {
    write_stream(e.docker.export_container(&a.container), a.output.as_deref()).await?;
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "list")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long, value_name = "string")]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// file|- (a tar of a root filesystem; - for stdin)
    pub source: String,
    /// [REPOSITORY[:TAG]]
    pub reference: Option<String>,
}

/// `POST /images/create?fromSrc=-` with `body`; prints what the daemon says
/// (the new image's id).
async fn import_body<S>(
    e: &Engine,
    body: S,
    reference: Option<&str>,
    changes: Vec<String>,
    message: Option<String>,
    platform: Option<String>,
) -> Result<String>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let (repo, tag) = match reference {
        Some(r) => {
            let parsed = Reference::parse(r).map_err(CliError::Usage)?;
            (Some(familiar_repo(&parsed.repo)), parsed.tag)
        }
        None => (None, None),
    };
    let mut s = e.docker.create_image(
        Some(CreateImageOptions {
            from_src: Some("-".into()),
            repo,
            tag,
            message,
            changes,
            platform: platform.unwrap_or_default(),
            ..Default::default()
        }),
        Some(bollard::body_try_stream(body)),
        None,
    );
    let mut last = String::new();
    while let Some(item) = s.next().await {
        let v = to_value(&item?);
        if let Some(err) = crate::progress::error_of(&v) {
            return Err(CliError::Stream(err));
        }
        if let Some(st) = v.get("status").and_then(Value::as_str) {
            last = st.to_string();
        }
    }
    Ok(last)
}

pub async fn import(e: &Engine, a: ImportArgs) -> Result<i32> {
    if a.source.starts_with("http://") || a.source.starts_with("https://") {
        return Err(CliError::Other(
            "engine imports from a file or stdin, not from a URL".into(),
        ));
    }
    let path = (a.source != "-").then(|| PathBuf::from(&a.source));
    if let Some(p) = &path
        && !p.is_file()
    {
        return Err(CliError::Other(format!(
            "open {}: no such file or directory",
            p.display()
        )));
    }
    let id = import_body(
        e,
        file_stream(path),
        a.reference.as_deref(),
        a.change,
        a.message,
        a.platform,
    )
    .await?;
    println(&id);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ImportRootfsArgs {
    /// Apply Dockerfile instruction to the created image (default: CMD ["/bin/sh"]
    /// when the directory has /bin/sh and no CMD is given)
    #[arg(short = 'c', long = "change", value_name = "list")]
    pub change: Vec<String>,
    /// Set commit message for the image
    #[arg(short = 'm', long, value_name = "string")]
    pub message: Option<String>,
    /// The root filesystem directory
    pub dir: PathBuf,
    /// REPOSITORY[:TAG] of the new image
    pub name: String,
}

/// Appends `dir`'s tree to `b` with paths relative to it (symlinks as links,
/// never followed out of the tree).
fn append_tree(
    b: &mut tar::Builder<std::fs::File>,
    root: &Path,
    dir: &Path,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
        b.append_path_with_name(&path, rel)?;
        if e.file_type()?.is_dir() {
            append_tree(b, root, &path)?;
        }
    }
    Ok(())
}

pub async fn import_rootfs(e: &Engine, a: ImportRootfsArgs) -> Result<i32> {
    if !a.dir.is_dir() {
        return Err(CliError::Other(format!(
            "{} is not a directory",
            a.dir.display()
        )));
    }
    Reference::parse(&a.name).map_err(CliError::Usage)?;
    let dir = a.dir.clone();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = tempfile::tempfile()?;
        let mut b = tar::Builder::new(file);
        b.follow_symlinks(false);
        append_tree(&mut b, &dir, &dir)?;
        let mut file = b.into_inner()?;
        use std::io::Seek;
        file.rewind()?;
        Ok(file)
    })
    .await
    .map_err(|j| CliError::Other(format!("archive {}: {j}", a.dir.display())))?
    .map_err(CliError::io(format!("archive {}", a.dir.display())))?;
    let mut changes = a.change.clone();
    let has_cmd = changes
        .iter()
        .any(|c| c.trim_start().to_ascii_uppercase().starts_with("CMD"));
    if !has_cmd && a.dir.join("bin/sh").symlink_metadata().is_ok() {
        changes.push("CMD [\"/bin/sh\"]".into());
    }
    let body = futures_util::stream::unfold(tokio::fs::File::from_std(tar), |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), f))
            }
            Err(err) => Some((Err(err), f)),
        }
    });
    let message = a
        .message
        .clone()
        .or_else(|| Some(format!("engine image import-rootfs {}", a.dir.display())));
    let id = import_body(e, body, Some(&a.name), changes, message, None).await?;
    println(&id);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

pub async fn tag(e: &Engine, a: TagArgs) -> Result<i32> {
    let t = Reference::parse(&a.target).map_err(CliError::Usage)?;
    if t.digest.is_some() {
        return Err(CliError::Usage(
            "refusing to create a tag with a digest reference".into(),
        ));
    }
    e.docker
        .tag_image(
            &a.source,
            Some(TagImageOptions {
                repo: Some(t.repo.clone()),
                tag: t.tag_or_latest(),
            }),
        )
        .await?;
    Ok(0)
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub async fn rmi(e: &Engine, a: RmiArgs) -> Result<i32> {
    each(&a.images, |n| async move {
        let items = e
            .docker
            .remove_image(
                &n,
                Some(RemoveImageOptions {
                    force: a.force,
                    noprune: a.no_prune,
                    platforms: None,
                }),
                None,
            )
            .await?;
        let lines: Vec<String> = items
            .iter()
            .flat_map(|i| {
                i.untagged
                    .iter()
                    .map(|u| format!("Untagged: {u}"))
                    .chain(i.deleted.iter().map(|d| format!("Deleted: {d}")))
            })
            .collect();
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    })
    .await
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub async fn prune(e: &Engine, a: PruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !super::confirm(a.force, warning) {
        return Ok(0);
    }
    let mut f = filters(&a.filter)?;
    f.insert("dangling".into(), vec![(!a.all).to_string()]);
    let r = e
        .docker
        .prune_images(Some(PruneImagesOptions { filters: Some(f) }))
        .await?;
    let mut out = String::new();
    let deleted = r.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for d in deleted {
            if let Some(u) = d.untagged {
                out.push_str(&format!("untagged: {u}\n"));
            }
            if let Some(x) = d.deleted {
                out.push_str(&format!("deleted: {x}\n"));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size4(r.space_reclaimed.unwrap_or(0) as f64)
    ));
    print(&out);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long, value_name = "string")]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "list")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long, value_name = "string")]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "bool")]
    pub pause: bool,
    pub container: String,
    /// [REPOSITORY[:TAG]]
    pub reference: Option<String>,
}

pub async fn commit(e: &Engine, a: CommitArgs) -> Result<i32> {
    let (repo, tag) = match &a.reference {
        Some(r) => {
            let p = Reference::parse(r).map_err(CliError::Usage)?;
            (Some(p.repo.clone()), p.tag_or_latest())
        }
        None => (None, None),
    };
    let r = e
        .docker
        .commit_container(
            CommitContainerOptions {
                container: Some(a.container.clone()),
                repo,
                tag,
                comment: a.message.clone(),
                author: a.author.clone(),
                pause: a.pause,
                changes: (!a.change.is_empty()).then(|| a.change.join("\n")),
            },
            bollard::models::ContainerConfig::default(),
        )
        .await?;
    println(&r.id);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_tag_and_none() {
        let i = json!({"Id": "sha256:0123456789abcdef", "RepoTags": ["busybox:latest", "127.0.0.1:5055/bb:v1"],
                       "RepoDigests": [], "Created": 0, "Size": 4_264_960});
        let rows = image_rows(&i, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[1]["Repository"], "127.0.0.1:5055/bb");
        assert_eq!(rows[1]["Tag"], "v1");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        let none = image_rows(&json!({"Id": "sha256:ab", "RepoTags": []}), true);
        assert_eq!(none[0]["Repository"], "<none>");
        assert_eq!(none[0]["Tag"], "<none>");
    }

    #[test]
    fn empty_auth_is_docker_s() {
        // With no login for the registry the header is base64 of {}.
        assert_eq!(
            registry_auth("127.0.0.1:1/nosuch-registry-for-test"),
            "e30="
        );
    }
}
