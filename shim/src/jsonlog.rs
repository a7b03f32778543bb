//! `jsonfile://PATH?max-size=10m&max-file=3`: the shim writes Docker's
//! json-file log itself (one `{"log":..,"stream":..,"time":..}` object per
//! line, RFC 3339 nano timestamps, rotation by size and count), so no daemon
//! sits in the output path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Docker splits lines longer than this into partial entries.
const MAX_ENTRY: usize = 16 * 1024;

#[derive(Debug)]
pub struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    /// 0: never rotate.
    max_size: u64,
    /// Files kept including the live one (1: the live file is truncated).
    max_file: u32,
}

/// Docker's size syntax: a number with an optional k/m/g suffix (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl JsonLog {
    pub fn is_uri(uri: &str) -> bool {
        uri.starts_with("jsonfile://")
    }

    pub fn open(uri: &str) -> std::io::Result<JsonLog> {
        let rest = uri
            .strip_prefix("jsonfile://")
            .ok_or_else(|| invalid(format!("not a jsonfile URI: {uri}")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(invalid(format!("{uri}: no path")));
        }
        let mut max_size = 0;
        let mut max_file = 1;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("max-size", v)) => {
                    max_size =
                        parse_size(v).ok_or_else(|| invalid(format!("{uri}: bad max-size")))?;
                }
                Some(("max-file", v)) => {
                    max_file = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| invalid(format!("{uri}: bad max-file")))?;
                }
                _ => return Err(invalid(format!("{uri}: unknown option {kv}"))),
            }
        }
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::open_file(&path)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path,
            file,
            size,
            max_size,
            max_file,
        })
    }

    fn open_file(path: &PathBuf) -> std::io::Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_file <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = Self::open_file(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends one entry (a line with its newline, or a partial line).
    pub fn write_entry(&mut self, stream: &str, data: &[u8]) -> std::io::Result<()> {
        let mut entry = serde_json::json!({
            "log": String::from_utf8_lossy(data),
            "stream": stream,
            "time": common::rfc3339_nanos(SystemTime::now()),
        })
        .to_string();
        entry.push('\n');
        if self.max_size > 0 && self.size > 0 && self.size + entry.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(entry.as_bytes())?;
        self.size += entry.len() as u64;
        Ok(())
    }
}

/// Splits a stream into lines and logs each; errors writing the log are
/// reported once and the stream is still drained.
pub fn copy(mut from: impl Read, log: Arc<Mutex<JsonLog>>, stream: &'static str) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 32 * 1024];
    let mut failed = false;
    let mut emit = |data: &[u8]| {
        let r = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_entry(stream, data);
        if let Err(e) = r
            && !failed
        {
            failed = true;
            tracing::warn!("writing json log: {e}");
        }
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            for part in pending[start..start + pos + 1].chunks(MAX_ENTRY) {
                emit(part);
            }
            start += pos + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_ENTRY {
            emit(&pending[..MAX_ENTRY]);
            pending.drain(..MAX_ENTRY);
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2KB"), Some(2048));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn rotates_and_keeps_max_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let uri = format!("jsonfile://{}?max-size=200&max-file=3", path.display());
        let log = Arc::new(Mutex::new(JsonLog::open(&uri).unwrap()));
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        copy(text.as_bytes(), log, "stdout");
        assert!(path.exists());
        assert!(dir.path().join("c.log.1").exists());
        assert!(dir.path().join("c.log.2").exists());
        assert!(!dir.path().join("c.log.3").exists());
        let live = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(live.lines().last().unwrap()).unwrap();
        assert_eq!(last["log"], "line 99\n");
        assert_eq!(last["stream"], "stdout");
        assert!(last["time"].as_str().unwrap().ends_with('Z'));
        for f in ["c.log", "c.log.1", "c.log.2"] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(len <= 200, "{f} is {len} bytes");
        }
    }

    #[test]
    fn long_lines_are_split_and_tail_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let log = Arc::new(Mutex::new(
            JsonLog::open(&format!("jsonfile://{}", path.display())).unwrap(),
        ));
        let mut text = vec![b'a'; MAX_ENTRY + 10];
        text.extend_from_slice(b"\nno-newline");
        copy(&text[..], log, "stderr");
        let entries: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["log"].as_str().unwrap().len(), MAX_ENTRY);
        assert_eq!(entries[1]["log"], "aaaaaaaaaa\n");
        assert_eq!(entries[2]["log"], "no-newline");
        assert_eq!(entries[2]["stream"], "stderr");
    }
}
