//! `build` with the classic builder's API (`POST /build?version=1`): the context
//! directory as a tar (less what `.dockerignore` excludes; the Dockerfile and
//! `.dockerignore` always go), the output stream shown as docker shows it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::Args;
use hyper::Method;
use serde_json::Value;

use super::images::show_stream;
use super::println;
use crate::client::{Engine, full, query};
use crate::error::{CliError, Result};
use crate::units::human_size;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag", value_name = "list")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin)
    #[arg(short = 'f', long = "file", value_name = "string")]
    pub file: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "list")]
    pub build_arg: Vec<String>,
    /// Set metadata for an image
    #[arg(long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Set the target build stage to build
    #[arg(long, value_name = "string")]
    pub target: Option<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "bool")]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, value_name = "string")]
    pub network: Option<String>,
    /// PATH | - (a tar of the context on stdin)
    pub context: String,
}

/// `.dockerignore` rules: docker's patterns (Go's `filepath.Match` plus `**`),
/// `!` exceptions, the last matching rule wins, a matched directory takes its
/// contents with it.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(Vec<String>, bool)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let parts: Vec<String> = pat
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .map(str::to_string)
                .collect();
            if !parts.is_empty() {
                rules.push((parts, negate));
            }
        }
        Self { rules }
    }

    /// Whether `rel` (a `/`-separated path in the context) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for (pat, negate) in &self.rules {
            // The path or one of its parent directories matches.
            let hit = (1..=parts.len()).any(|n| match_parts(pat, &parts[..n]));
            if hit {
                excluded = !negate;
            }
        }
        excluded
    }

    /// Whether an exception could re-include something under `dir` (then the
    /// walk must go into an excluded directory).
    fn may_reinclude_under(&self, dir: &str) -> bool {
        self.rules.iter().any(|(p, negate)| {
            *negate && (p.first().is_some_and(|f| f.contains('*')) || p.join("/").starts_with(dir))
        })
    }
}

fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match (pat.first(), path.first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(p), _) if p == "**" => {
            (0..=path.len()).any(|skip| match_parts(&pat[1..], &path[skip..]))
        }
        (Some(_), None) => false,
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && match_parts(&pat[1..], &path[1..])
        }
    }
}

/// One path component against a pattern with `*`, `?`, `[...]` and `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let Some(&c) = s.first() else {
                return false;
            };
            let class = &p[1..end];
            let (neg, class) = match class.first() {
                Some(b'^') | Some(b'!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob(&p[end + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

fn walk(
    b: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    dir: &Path,
    ignore: &Ignore,
    keep: &[String],
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        let is_dir = e.file_type()?.is_dir();
        let excluded = ignore.excluded(&rel) && !keep.contains(&rel);
        if !excluded {
            b.append_path_with_name(&path, &rel)?;
        }
        if is_dir && (!excluded || ignore.may_reinclude_under(&rel)) {
            walk(b, root, &path, ignore, keep)?;
        }
    }
    Ok(())
}

/// The context tar and the Dockerfile's name in it.
pub fn context_tar(
    dir: &Path,
    dockerfile: Option<&str>,
    stdin_dockerfile: Option<Vec<u8>>,
) -> Result<(Vec<u8>, String)> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => Ignore::parse(&t),
        Err(_) => Ignore::default(),
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut name = "Dockerfile".to_string();
    let mut outside: Option<(PathBuf, String)> = None;
    if let Some(f) = dockerfile.filter(|f| *f != "-") {
        let p = PathBuf::from(f);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .map_err(CliError::io("current dir"))?
                .join(p)
        };
        let ctx = dir
            .canonicalize()
            .map_err(CliError::io(format!("resolve {}", dir.display())))?;
        let abs = abs
            .canonicalize()
            .map_err(CliError::io(format!("open {f}")))?;
        match abs.strip_prefix(&ctx) {
            Ok(rel) => name = rel.to_string_lossy().into_owned(),
            Err(_) => {
                let n = format!(
                    ".dockerfile.{:012x}",
                    std::process::id() as u64 * 2_654_435_761 % (1 << 48)
                );
                outside = Some((abs, n.clone()));
                name = n;
            }
        }
    }
    let keep = vec![name.clone(), ".dockerignore".to_string()];
    walk(&mut b, dir, dir, &ignore, &keep)
        .map_err(CliError::io(format!("archive {}", dir.display())))?;
    if let Some((path, n)) = outside {
        b.append_path_with_name(&path, &n)
            .map_err(CliError::io(format!("add {}", path.display())))?;
    }
    if let Some(content) = stdin_dockerfile {
        let n = format!(
            ".dockerfile.{:012x}",
            std::process::id() as u64 * 40_503 % (1 << 48)
        );
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(crate::units::now_unix().max(0) as u64);
        b.append_data(&mut h, &n, content.as_slice())
            .map_err(CliError::io("add the Dockerfile"))?;
        name = n;
    }
    let tar = b.into_inner().map_err(CliError::io("finish the context"))?;
    Ok((tar, name))
}

pub async fn build(e: &Engine, a: BuildArgs) -> Result<i32> {
    if a.context.starts_with("http://")
        || a.context.starts_with("https://")
        || a.context.starts_with("git@")
    {
        return Err(CliError::Other(
            "engine builds from a local directory or a tar on stdin".into(),
        ));
    }
    let (body, dockerfile) = if a.context == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(CliError::io("read the context from stdin"))?;
        (buf, a.file.clone().unwrap_or_else(|| "Dockerfile".into()))
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            return Err(CliError::Other(format!(
                "unable to prepare context: path {:?} not found",
                a.context
            )));
        }
        let stdin_df = if a.file.as_deref() == Some("-") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(CliError::io("read the Dockerfile from stdin"))?;
            Some(buf)
        } else {
            None
        };
        let (dir2, file) = (dir.clone(), a.file.clone());
        tokio::task::spawn_blocking(move || context_tar(&dir2, file.as_deref(), stdin_df))
            .await
            .map_err(|j| CliError::Other(format!("archive the context: {j}")))??
    };
    if !a.quiet {
        eprintln!(
            "Sending build context to Docker daemon  {}",
            human_size(body.len() as f64)
        );
    }
    let mut buildargs = HashMap::new();
    for kv in &a.build_arg {
        match kv.split_once('=') {
            Some((k, v)) => {
                buildargs.insert(k.to_string(), v.to_string());
            }
            // A bare name takes its value from our environment, as docker does.
            None => {
                if let Ok(v) = std::env::var(kv) {
                    buildargs.insert(kv.clone(), v);
                }
            }
        }
    }
    let mut labels = HashMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let buildargs_json = serde_json::to_string(&buildargs).unwrap_or_default();
    let labels_json = serde_json::to_string(&labels).unwrap_or_default();
    let mut q: Vec<(&str, &str)> = vec![("dockerfile", dockerfile.as_str())];
    for t in &a.tag {
        q.push(("t", t.as_str()));
    }
    if a.quiet {
        q.push(("q", "1"));
    }
    if a.no_cache {
        q.push(("nocache", "1"));
    }
    if a.pull {
        q.push(("pull", "1"));
    }
    if !a.rm {
        q.push(("rm", "0"));
    }
    if a.force_rm {
        q.push(("forcerm", "1"));
    }
    if !buildargs.is_empty() {
        q.push(("buildargs", buildargs_json.as_str()));
    }
    if !labels.is_empty() {
        q.push(("labels", labels_json.as_str()));
    }
    if let Some(t) = &a.target {
        q.push(("target", t.as_str()));
    }
    if let Some(n) = &a.network {
        q.push(("networkmode", n.as_str()));
    }
    q.push(("version", "1"));
    let res = e
        .request(
            Method::POST,
            &format!("/build{}", query(&q)),
            &[
                ("Content-Type", "application/x-tar"),
                ("X-Registry-Config", "e30="),
            ],
            full(Bytes::from(body)),
        )
        .await?;
    if a.quiet {
        let mut lines = crate::streams::JsonLines::new(res.into_body());
        let mut id = String::new();
        while let Some(m) = lines.next().await? {
            if let Some(err) = crate::progress::error_of(&m) {
                return Err(CliError::Stream(err));
            }
            if let Some(i) = m.pointer("/aux/ID").and_then(Value::as_str) {
                id = i.to_string();
            } else if let Some(s) = m.get("stream").and_then(Value::as_str)
                && s.trim().starts_with("sha256:")
            {
                id = s.trim().to_string();
            }
        }
        println(&id);
    } else {
        show_stream(res.into_body(), false).await?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# comment\n*.log\n/build\n**/tmp\n!keep.log\nsecret?\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("dir/a.log"));
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out/x"));
        assert!(i.excluded("tmp"));
        assert!(i.excluded("a/b/tmp/c"));
        assert!(i.excluded("secret1"));
        assert!(!i.excluded("secret12"));
        assert!(!i.excluded("src/main.rs"));
    }

    #[test]
    fn context_keeps_the_dockerfile_and_drops_ignored_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::write(d.path().join(".dockerignore"), "Dockerfile\n*.tmp\nsub\n").unwrap();
        std::fs::write(d.path().join("a.tmp"), "x").unwrap();
        std::fs::write(d.path().join("hello.txt"), "hi").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x"), "x").unwrap();
        let (tar, name) = context_tar(d.path(), None, None).unwrap();
        assert_eq!(name, "Dockerfile");
        let mut a = tar::Archive::new(tar.as_slice());
        let mut names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![".dockerignore", "Dockerfile", "hello.txt"]);
    }
}
