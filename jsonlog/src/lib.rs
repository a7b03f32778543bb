//! Docker's `json-file` log format: one JSON object per line,
//! `{"log":"hi\n","stream":"stdout","time":"2026-11-23T18:45:36.468073951Z"}`, in
//! `<id>-json.log`, rotated to `<id>-json.log.1`, `.2`... when it reaches `max-size`.
//!
//! The writer is synchronous and owns no thread, so the shim (single-threaded) and
//! engined (tokio, through `spawn_blocking` or small writes) can both use it.
#![forbid(unsafe_code)]

mod follow;
pub use follow::Follower;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid log option {name}={value}")]
    InvalidOption { name: String, value: String },
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

impl Entry {
    /// Nanoseconds since the epoch of [`Entry::time`] (0 if it does not parse).
    pub fn time_nanos(&self) -> i128 {
        parse_rfc3339_nanos(&self.time).unwrap_or(0)
    }
}

/// Rotation settings (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the current file reaches this many bytes; `None` never rotates.
    pub max_size: Option<u64>,
    /// How many files to keep in all, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_size: None,
            max_file: 1,
        }
    }
}

impl Rotation {
    /// Builds the settings from Docker's `max-size` (`10k`, `20m`, `1g`, bytes) and
    /// `max-file` log options.
    pub fn from_opts(max_size: Option<&str>, max_file: Option<&str>) -> Result<Self, LogError> {
        let bad = |name: &str, value: &str| LogError::InvalidOption {
            name: name.to_string(),
            value: value.to_string(),
        };
        let max_size = match max_size {
            None => None,
            Some("-1") => None,
            Some(v) => Some(parse_size(v).ok_or_else(|| bad("max-size", v))?),
        };
        let max_file = match max_file {
            None => 1,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("max-file", v))?,
        };
        Ok(Self { max_size, max_file })
    }
}

fn parse_size(v: &str) -> Option<u64> {
    let lower = v.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1024u64),
        'm' => (&lower[..lower.len() - 1], 1024 * 1024),
        'g' => (&lower[..lower.len() - 1], 1024 * 1024 * 1024),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().ok()?;
    if n <= 0.0 {
        return None;
    }
    Some((n * mult as f64) as u64)
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Appends entries to a json-file log, rotating by size.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl Writer {
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let size = file.metadata().map_err(io_err("stat", path))?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one entry (`log` is normally one line with its `\n`) stamped `time`.
    pub fn write(&mut self, stream: Stream, log: &[u8], time: SystemTime) -> Result<(), LogError> {
        let entry = Entry {
            log: String::from_utf8_lossy(log).into_owned(),
            stream,
            time: common::rfc3339_nanos(time),
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| LogError::Io {
            op: "encode",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        if let Some(max) = self.rotation.max_size
            && self.size > 0
            && self.size + line.len() as u64 > max
        {
            self.rotate()?;
        }
        // One write per entry, so a reader never sees half a line from us unless the
        // disk is full.
        self.file
            .write_all(&line)
            .map_err(io_err("write", &self.path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let keep = self.rotation.max_file.max(1);
        if keep == 1 {
            // A new file renamed over the old one rather than a truncation in place,
            // so that a follower sees another inode and knows to start over.
            let mut tmp = self.path.as_os_str().to_owned();
            tmp.push(".new");
            let tmp = PathBuf::from(tmp);
            let _ = std::fs::remove_file(&tmp);
            let file = open_append(&tmp)?;
            std::fs::rename(&tmp, &self.path).map_err(io_err("rename", &tmp))?;
            self.file = file;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep - 1).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))
                    .map_err(io_err("rename", &from))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
            .map_err(io_err("rename", &self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Log files are 0640, as dockerd makes them: output can hold secrets.
fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(io_err("open", path))
}

/// `<path>.<n>`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Every entry of the log and its rotated files, oldest first. Lines that do not
/// parse (a torn last line) are skipped.
pub fn read_all(path: &Path, max_file: u32) -> Result<Vec<Entry>, LogError> {
    let mut out = Vec::new();
    for n in (1..max_file.max(1)).rev() {
        let p = rotated(path, n);
        if p.exists() {
            read_file(&p, 0, &mut out)?;
        }
    }
    if path.exists() {
        read_file(path, 0, &mut out)?;
    }
    Ok(out)
}

/// Reads the complete lines of `path` from byte `offset`, appends their entries to
/// `out` and returns the offset after the last complete line.
pub fn read_file(path: &Path, offset: u64, out: &mut Vec<Entry>) -> Result<u64, LogError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io_err("seek", path))?;
    let mut r = BufReader::new(f);
    let mut pos = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(io_err("read", path))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(pos);
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            out.push(e);
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into nanoseconds since the epoch.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse().ok()?;
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = oh * 3600 + om * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Nanoseconds since the epoch of a `SystemTime`.
pub fn nanos_of(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The `SystemTime` of nanoseconds since the epoch (clamped at the epoch).
pub fn time_of(nanos: i128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

/// Splits a byte stream into log lines the way Docker does: each `\n` ends an entry,
/// and a partial line is flushed once it reaches [`MAX_LINE`] bytes or at EOF.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

/// Docker's json-file driver flushes partial lines at 16 KiB.
pub const MAX_LINE: usize = 16 * 1024;

impl LineSplitter {
    /// Feeds bytes; calls `emit` for each complete entry.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&c| c == b'\n') {
            // A line longer than MAX_LINE goes out in MAX_LINE pieces, its end last.
            for piece in self.buf[start..start + nl + 1].chunks(MAX_LINE) {
                emit(piece);
            }
            start += nl + 1;
        }
        while self.buf.len() - start >= MAX_LINE {
            emit(&self.buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.buf.drain(..start);
    }

    /// Bytes of a partial line waiting for its end.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Emits what is left (at EOF, or a partial line flushed early).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_docker_lines_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        let t = UNIX_EPOCH + Duration::new(1_795_459_597, 835_321_911);
        w.write(Stream::Stdout, b"hi\n", t).unwrap();
        w.write(Stream::Stderr, b"e\n", t).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"log":"hi\n","stream":"stdout","time":"2026-11-23T18:46:37.835321911Z"}"#
        );
        let all = read_all(&p, 1).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].stream, Stream::Stderr);
        assert_eq!(all[0].time_nanos(), nanos_of(t));
    }

    #[test]
    fn rotates_and_keeps_max_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let rot = Rotation::from_opts(Some("200"), Some("3")).unwrap();
        let mut w = Writer::open(&p, rot).unwrap();
        for i in 0..50 {
            w.write(
                Stream::Stdout,
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
        }
        assert!(rotated(&p, 1).exists() && rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        let all = read_all(&p, 3).unwrap();
        assert_eq!(all.last().unwrap().log, "line 49\n");
        let nums: Vec<u32> = all
            .iter()
            .map(|e| e.log.trim()[5..].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        for n in 0..3 {
            let f = if n == 0 { p.clone() } else { rotated(&p, n) };
            assert!(std::fs::metadata(f).unwrap().len() <= 200);
        }
    }

    #[test]
    fn torn_last_line_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        std::fs::write(
            &p,
            "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00Z\"}\n{\"log\":",
        )
        .unwrap();
        let mut out = Vec::new();
        let off = read_file(&p, 0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(off, 62);
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-01-01T00:00:00.5Z"),
            Some(1_704_067_200_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-01-01T01:00:00+01:00"),
            Some(1_704_067_200_000_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("nope"), None);
        let now = SystemTime::now();
        assert_eq!(
            parse_rfc3339_nanos(&common::rfc3339_nanos(now)),
            Some(nanos_of(now))
        );
    }

    #[test]
    fn splits_lines() {
        let mut s = LineSplitter::default();
        let mut got: Vec<Vec<u8>> = Vec::new();
        s.push(b"a\nb", |l| got.push(l.to_vec()));
        s.push(b"c\n\n", |l| got.push(l.to_vec()));
        s.push(b"tail", |l| got.push(l.to_vec()));
        s.finish(|l| got.push(l.to_vec()));
        assert_eq!(
            got,
            vec![
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"tail".to_vec()
            ]
        );
    }

    #[test]
    fn a_long_line_goes_out_in_max_line_pieces() {
        let mut s = LineSplitter::default();
        let mut got: Vec<usize> = Vec::new();
        let mut line = vec![b'x'; 2 * MAX_LINE + 5];
        line.push(b'\n');
        s.push(&line, |l| got.push(l.len()));
        assert_eq!(got, [MAX_LINE, MAX_LINE, 6]);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10k"), Some(10240));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert!(Rotation::from_opts(Some("x"), None).is_err());
        assert!(Rotation::from_opts(None, Some("0")).is_err());
    }
}
