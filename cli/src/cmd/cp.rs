//! `cp` both ways through the archive endpoints, with docker's rules for where
//! the copy lands (into an existing directory, or renamed to a path that does not
//! exist yet). Archives from the daemon are unpacked entry by entry, and an entry
//! that would land outside the destination (`..`, an absolute path) is refused.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use clap::Args;
use futures_util::StreamExt;

use crate::client::Engine;
use crate::error::{CliError, Result};
use crate::units::human_size4;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// SRC_PATH or CONTAINER:SRC_PATH ("-" for a tar on stdin)
    pub src: String,
    /// DEST_PATH or CONTAINER:DEST_PATH ("-" for a tar on stdout)
    pub dst: String,
}

/// `CONTAINER:PATH`, or a local path (absolute, or with a `/` before any `:`).
pub fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.contains('/') && !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub async fn cp(e: &Engine, a: CpArgs) -> Result<i32> {
    match (split_arg(&a.src), split_arg(&a.dst)) {
        ((Some(_), _), (Some(_), _)) => Err(CliError::Usage(
            "copying between containers is not supported".into(),
        )),
        ((None, _), (None, _)) => Err(CliError::Usage(
            "must specify at least one container source".into(),
        )),
        ((Some(c), p), (None, dst)) => from_container(e, c, p, dst, &a).await,
        ((None, src), (Some(c), p)) => to_container(e, src, c, p, &a).await,
    }
}

/// The first component of a relative entry path replaced by `first` (or
/// dropped when `first` is None); None for a path that would climb out.
pub fn rebase(entry: &Path, first: Option<&str>) -> Option<PathBuf> {
    let mut comps = entry
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    let head = comps.next()?;
    if !matches!(head, Component::Normal(_)) {
        return None;
    }
    let mut out = match first {
        Some(f) => PathBuf::from(f),
        None => PathBuf::new(),
    };
    for c in comps {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// `./a/b` as `a/b` (`./` alone as empty); None for a path that would climb out.
fn rebase_contents(entry: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in entry.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

async fn from_container(e: &Engine, ctr: &str, path: &str, dst: &str, a: &CpArgs) -> Result<i32> {
    let mut stream = e.docker.download_from_container(
        ctr,
        Some(DownloadFromContainerOptions {
            path: path.to_string(),
        }),
    );
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)
                .map_err(CliError::io("write to stdout"))?;
        }
        let _ = out.flush();
        return Ok(0);
    }
    let mut spool = tempfile::tempfile().map_err(CliError::io("create a spool file"))?;
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        spool
            .write_all(&chunk)
            .map_err(CliError::io("spool the archive"))?;
    }
    use std::io::Seek;
    spool
        .rewind()
        .map_err(CliError::io("rewind the spool file"))?;
    let dst_path = PathBuf::from(dst);
    let contents_only = path.ends_with("/.");
    let (dir, first): (PathBuf, Option<String>) = if dst_path.is_dir() {
        (dst_path.clone(), None)
    } else {
        let parent = dst_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if !parent.is_dir() {
            return Err(CliError::Other(format!(
                "destination directory {} does not exist",
                parent.display()
            )));
        }
        let name = dst_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| CliError::Other(format!("invalid destination {dst}")))?;
        (parent, Some(name))
    };
    let mut archive = tar::Archive::new(spool);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    let entries = archive
        .entries()
        .map_err(CliError::io("read the archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(CliError::io("read the archive"))?;
        let name = entry
            .path()
            .map_err(CliError::io("read the archive"))?
            .into_owned();
        // The daemon names the entries of `dir/.` `./...` (docker's rebase to the
        // base name `.`): they are already relative to the contents.
        let rel = if name.components().next() == Some(Component::CurDir) {
            // Into a new directory named by the destination.
            rebase_contents(&name).map(|r| match &first {
                Some(f) => Path::new(f).join(r),
                None => r,
            })
        } else if contents_only {
            rebase(&name, None)
        } else if dst_path.is_dir() && first.is_none() {
            rebase(
                &name,
                name.components()
                    .next()
                    .and_then(|c| c.as_os_str().to_str()),
            )
        } else {
            rebase(&name, first.as_deref())
        };
        let Some(rel) = rel else {
            return Err(CliError::Other(format!(
                "refusing to copy {}: it would land outside {}",
                name.display(),
                dir.display()
            )));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if let Ok(Some(link)) = entry.link_name()
            && entry.header().entry_type().is_hard_link()
            && rebase(&link, Some("x")).is_none()
        {
            return Err(CliError::Other(format!(
                "refusing to copy {}: its hard link points outside the copy",
                name.display()
            )));
        }
        if through_symlink(&dir, &rel) {
            return Err(CliError::Other(format!(
                "refusing to copy {}: a symbolic link in its path would take it outside {}",
                name.display(),
                dir.display()
            )));
        }
        let target = dir.join(&rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(CliError::io(format!("create {}", p.display())))?;
        }
        entry
            .unpack(&target)
            .map_err(CliError::io(format!("write {}", target.display())))?;
    }
    if !a.quiet {
        eprintln!("Successfully copied {} to {dst}", human_size4(size as f64));
    }
    Ok(0)
}

/// Whether a directory on the way to `dir/rel` is a symbolic link: an archive
/// that made `a -> /etc` would otherwise write `a/passwd` through it.
fn through_symlink(dir: &Path, rel: &Path) -> bool {
    let mut at = dir.to_path_buf();
    let Some(parent) = rel.parent() else {
        return false;
    };
    parent.components().any(|c| {
        at.push(c);
        std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// A tar of `src` whose top entry is named `name`.
fn tar_of(src: &Path, name: &str, follow: bool) -> Result<Vec<u8>> {
    let meta = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(CliError::io(format!("stat {}", src.display())))?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(follow);
    if meta.is_dir() {
        b.append_dir_all(name, src)
    } else {
        b.append_path_with_name(src, name)
    }
    .map_err(CliError::io(format!("archive {}", src.display())))?;
    b.into_inner().map_err(CliError::io("finish the archive"))
}

async fn to_container(e: &Engine, src: &str, ctr: &str, path: &str, a: &CpArgs) -> Result<i32> {
    let opts = |p: String| UploadToContainerOptions {
        path: p,
        no_overwrite_dir_non_dir: Some("true".into()),
        copy_uidgid: a.archive.then(|| "true".to_string()),
    };
    if src == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(CliError::io("read stdin"))?;
        e.docker
            .upload_to_container(
                ctr,
                Some(opts(path.to_string())),
                bollard::body_full(buf.into()),
            )
            .await?;
        return Ok(0);
    }
    let src_path = Path::new(src);
    let src_name = src_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::Other(format!("invalid source {src}")))?;
    let stat = e
        .docker
        .get_container_archive_info(
            ctr,
            Some(ContainerArchiveInfoOptions {
                path: path.to_string(),
            }),
        )
        .await
        .map_err(CliError::from);
    let is_dir = |mode: u32| mode & (1 << 31) != 0;
    let (target_dir, name) = match stat {
        Ok(s) if is_dir(s.file_mode) => (path.to_string(), src_name),
        Ok(_) if src_path.is_dir() => {
            return Err(CliError::Other(format!(
                "cannot copy directory {src} to file {ctr}:{path}"
            )));
        }
        Err(err @ CliError::Connect { .. }) => return Err(err),
        // Missing, a file, or a stat the daemon refused (a HEAD answer has no
        // body to say why): as docker does, the copy takes the target's name in
        // its parent, and the upload reports whatever is wrong.
        _ => {
            if path.ends_with('/') && !src_path.is_dir() {
                return Err(CliError::Other(format!(
                    "destination directory {ctr}:{path} does not exist"
                )));
            }
            let p = Path::new(path.trim_end_matches('/'));
            let parent = p
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| CliError::Other(format!("invalid destination {path}")))?;
            (parent, name)
        }
    };
    let tar = tar_of(src_path, &name, a.follow_link)?;
    let size = tar.len();
    e.docker
        .upload_to_container(ctr, Some(opts(target_dir)), bollard::body_full(tar.into()))
        .await?;
    if !a.quiet {
        eprintln!(
            "Successfully copied {} to {ctr}:{path}",
            human_size4(size as f64)
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_like_docker() {
        assert_eq!(split_arg("web:/tmp/x"), (Some("web"), "/tmp/x"));
        assert_eq!(split_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_arg("file.txt"), (None, "file.txt"));
        assert_eq!(split_arg("-"), (None, "-"));
    }

    #[test]
    fn contents_entries_keep_their_paths() {
        assert_eq!(rebase_contents(Path::new("./")), Some(PathBuf::new()));
        assert_eq!(
            rebase_contents(Path::new("./sub/in.txt")),
            Some(PathBuf::from("sub/in.txt"))
        );
        assert_eq!(rebase_contents(Path::new("./../x")), None);
    }

    #[test]
    fn symlinked_parents_are_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        assert!(through_symlink(d.path(), Path::new("link/passwd")));
        assert!(!through_symlink(d.path(), Path::new("real/passwd")));
        assert!(!through_symlink(d.path(), Path::new("link")));
    }

    #[test]
    fn rebase_refuses_escapes() {
        assert_eq!(
            rebase(Path::new("tmp/a/b"), Some("x")),
            Some(PathBuf::from("x/a/b"))
        );
        assert_eq!(rebase(Path::new("./tmp/a"), None), Some(PathBuf::from("a")));
        assert_eq!(rebase(Path::new("tmp/../../etc"), Some("x")), None);
        assert_eq!(rebase(Path::new("/etc/passwd"), Some("x")), None);
        assert_eq!(rebase(Path::new("../x"), None), None);
    }
}
