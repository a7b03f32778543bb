//! Small file helpers for cgroupfs. Every error carries the operation and the path,
//! because "Invalid argument" alone never tells which of forty files the kernel refused.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{CgroupError, Result};

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
    source: std::io::Error,
) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.into(),
        source,
    }
}

/// Writes `value` to `dir/file` in one write(2) call.
///
/// cgroupfs parses each write(2) as one request, so the value must never be split;
/// the file is opened without O_CREAT because a missing file means the controller is
/// not available there, which the caller must hear about instead of getting a regular file.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    write_path(&dir.join(file), value)
}

pub(crate) fn write_path(path: &Path, value: &str) -> Result<()> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    #[cfg(test)]
    testlog::record(path, value);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(create_missing())
        .open(path)
        .map_err(|e| io_err("open for write", path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io_err("write", path, e))
}

#[cfg(test)]
fn create_missing() -> bool {
    testlog::create_missing()
}

#[cfg(not(test))]
fn create_missing() -> bool {
    false
}

/// Reads `dir/file`; `None` if it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // A cgroup removed while it is read shows up as ENODEV on kernfs files.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(io_err("read", path, e)),
    }
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| io_err("read", path, e))
}

pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single-value file. Missing file -> 0; "max" -> `max_as`.
pub(crate) fn read_u64(dir: &Path, file: &str, max_as: u64) -> Result<u64> {
    match read_opt(dir, file)? {
        None => Ok(0),
        Some(s) => parse_u64(&dir.join(file), s.trim(), max_as),
    }
}

pub(crate) fn parse_u64(path: &Path, s: &str, max_as: u64) -> Result<u64> {
    if s == "max" {
        return Ok(max_as);
    }
    if s.is_empty() {
        return Ok(0);
    }
    s.parse::<u64>().map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("{s:?}: {e}"),
    })
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events, ...). Lines that are
/// not a key and a u64 are skipped: newer kernels add fields we do not know.
pub(crate) fn parse_flat_keyed(s: &str) -> std::collections::BTreeMap<String, u64> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse::<u64>().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Reads a flat-keyed file; missing file -> empty map.
pub(crate) fn read_flat_keyed(
    dir: &Path,
    file: &str,
) -> Result<std::collections::BTreeMap<String, u64>> {
    Ok(read_opt(dir, file)?
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default())
}

/// Test-only record of every write in order, so tests can assert the order of writes
/// that the last file content cannot show (device rules, swap vs limit).
#[cfg(test)]
pub(crate) mod testlog {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static LOG: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
        static CREATE_MISSING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Plays the kernel, which creates a cgroup's files on mkdir: writes then create
    /// missing files instead of failing.
    pub(crate) fn set_create_missing(on: bool) {
        CREATE_MISSING.with(|c| c.set(on));
    }

    pub(crate) fn create_missing() -> bool {
        CREATE_MISSING.with(std::cell::Cell::get)
    }

    pub(crate) fn record(path: &Path, value: &str) {
        LOG.with(|l| l.borrow_mut().push((path.to_path_buf(), value.to_string())));
    }

    pub(crate) fn take() -> Vec<(PathBuf, String)> {
        LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}
