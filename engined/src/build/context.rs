//! The build context: the request body (a tar, maybe gzip-compressed) unpacked into
//! a private directory. Entries are placed by their cleaned relative path only:
//! nothing lands outside the directory, whatever `..`, absolute names or symlinks
//! the archive holds, and symlinks are kept as links (never followed while writing).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use super::ignore::Ignore;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("invalid build context: {0}")]
    Tar(io::Error),
    #[error("write the build context: {0}")]
    Write(io::Error),
}

/// A relative path with `.`/`..`/root components resolved lexically and clamped at
/// the top, as the archive packages clean entry names.
pub fn clean_rel(raw: &Path) -> PathBuf {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.iter().collect()
}

/// Creates (or checks) each directory of `rel` below `root`, refusing to go
/// through anything that is not a real directory (a symlink from the archive).
fn ensure_dirs(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                // A file or link where a directory is needed: the later entry wins,
                // as tar extraction replaces it.
                fs::remove_file(&cur)?;
                fs::create_dir(&cur)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

fn remove_existing(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks `input` (tar or gzip'd tar) into the empty directory `root`.
pub fn unpack(input: impl Read, root: &Path) -> Result<(), ContextError> {
    let mut input = io::BufReader::new(input);
    let head = io::BufRead::fill_buf(&mut input).map_err(ContextError::Tar)?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut ar = tar::Archive::new(reader);
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for e in ar.entries().map_err(ContextError::Tar)? {
        let mut e = e.map_err(ContextError::Tar)?;
        let raw = e.path().map_err(ContextError::Tar)?.into_owned();
        let rel = clean_rel(&raw);
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = e.header().mtime().unwrap_or(0);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().unwrap_or_default();
        let dir = ensure_dirs(root, parent).map_err(ContextError::Write)?;
        let dest = dir.join(name);
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                ensure_dirs(root, &rel).map_err(ContextError::Write)?;
                dirs.push((dest, mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_existing(&dest).map_err(ContextError::Write)?;
                let mut f = fs::File::create(&dest).map_err(ContextError::Write)?;
                io::copy(&mut e, &mut f).map_err(ContextError::Write)?;
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(ContextError::Write)?;
                set_mtime(&f, mtime);
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(ContextError::Tar)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                remove_existing(&dest).map_err(ContextError::Write)?;
                // Kept as it is: readers of the context resolve it inside the context.
                symlink(&target, &dest).map_err(ContextError::Write)?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(ContextError::Tar)?
                    .map(|t| clean_rel(&t))
                    .unwrap_or_default();
                // The first copy, looked up without following links on the way.
                let src = ensure_dirs(root, target.parent().unwrap_or(Path::new("")))
                    .map_err(ContextError::Write)?
                    .join(target.file_name().unwrap_or_default());
                let ok = fs::symlink_metadata(&src).is_ok_and(|m| m.is_file());
                if ok {
                    remove_existing(&dest).map_err(ContextError::Write)?;
                    fs::hard_link(&src, &dest).map_err(ContextError::Write)?;
                }
            }
            // Devices, fifos and the like have no place in a build context.
            _ => {}
        }
    }
    // Directory modes and times last: writing entries changes them.
    for (d, mode, mtime) in dirs.into_iter().rev() {
        if fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(mode | 0o700));
            if let Ok(f) = fs::File::open(&d) {
                set_mtime(&f, mtime);
            }
        }
    }
    Ok(())
}

fn set_mtime(f: &fs::File, mtime: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    let _ = f.set_modified(t);
}

/// Removes what `.dockerignore` excludes (walking into excluded directories only
/// when an exception may bring something below back).
pub fn apply_ignore(root: &Path, ig: &Ignore) -> io::Result<()> {
    fn walk(root: &Path, rel: &Path, ig: &Ignore) -> io::Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let shown = r.to_string_lossy().into_owned();
            let p = root.join(&r);
            let is_dir = fs::symlink_metadata(&p)?.is_dir();
            if ig.excluded(&shown) {
                if is_dir && ig.may_include_below(&shown) {
                    walk(root, &r, ig)?;
                } else {
                    remove_existing(&p)?;
                }
            } else if is_dir {
                walk(root, &r, ig)?;
            }
        }
        Ok(())
    }
    if ig.is_empty() {
        return Ok(());
    }
    walk(root, Path::new(""), ig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, typ, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*typ);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            // Raw names: the builder's own path checks would refuse the `..` ones.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn escapes_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let root = t.path().join("ctx");
        fs::create_dir(&root).unwrap();
        let data = tar_of(&[
            ("Dockerfile", tar::EntryType::Regular, b"FROM x", None),
            ("../evil", tar::EntryType::Regular, b"e", None),
            ("/abs", tar::EntryType::Regular, b"a", None),
            (
                "link",
                tar::EntryType::Symlink,
                b"",
                Some(outside.to_str().unwrap()),
            ),
            ("link/through", tar::EntryType::Regular, b"t", None),
            ("hard", tar::EntryType::Link, b"", Some("../../Dockerfile")),
        ]);
        unpack(&data[..], &root).unwrap();
        assert_eq!(fs::read(root.join("Dockerfile")).unwrap(), b"FROM x");
        assert_eq!(fs::read(root.join("evil")).unwrap(), b"e");
        assert_eq!(fs::read(root.join("abs")).unwrap(), b"a");
        assert!(!t.path().join("evil").exists());
        // The link was replaced by a directory, not written through.
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        assert_eq!(fs::read(root.join("link/through")).unwrap(), b"t");
        assert_eq!(fs::read(root.join("hard")).unwrap(), b"FROM x");
    }

    #[test]
    fn gzip_and_ignore() {
        use std::io::Write;
        let data = tar_of(&[
            ("a.txt", tar::EntryType::Regular, b"a", None),
            ("secret.key", tar::EntryType::Regular, b"k", None),
            ("d/", tar::EntryType::Directory, b"", None),
            ("d/x.log", tar::EntryType::Regular, b"x", None),
            ("d/keep.log", tar::EntryType::Regular, b"x", None),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let t = tempfile::tempdir().unwrap();
        unpack(&gz[..], t.path()).unwrap();
        apply_ignore(t.path(), &Ignore::parse("*.key\nd/*.log\n!d/keep.log")).unwrap();
        assert!(t.path().join("a.txt").exists());
        assert!(!t.path().join("secret.key").exists());
        assert!(!t.path().join("d/x.log").exists());
        assert!(t.path().join("d/keep.log").exists());
    }
}
