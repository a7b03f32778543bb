//! Reading a log while its writer (the shim) appends to it and rotates it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Entry, LogError, io_err};

/// Follows the live file of a json-file log across rotations: the writer renames
/// `PATH` to `PATH.1` and starts a new `PATH`, or truncates it when only one file is
/// kept. Entries come out once, in order, whole lines only.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the live file: only what is written from now on
    /// (from the start of a file that does not exist yet, or cannot be opened yet).
    pub fn from_end(path: &Path) -> Self {
        let mut f = Self {
            path: path.to_path_buf(),
            file: None,
            ino: 0,
            pos: 0,
            partial: Vec::new(),
        };
        if let Ok(file) = File::open(path)
            && let Ok(meta) = file.metadata()
        {
            f.ino = meta.ino();
            f.pos = meta.len();
            f.file = Some(file);
        }
        f
    }

    /// Starts at byte `offset` of the live file, e.g. where [`crate::read_file`] stopped.
    pub fn from_offset(path: &Path, offset: u64) -> Self {
        let mut f = Self::from_end(path);
        if f.file.is_some() {
            f.pos = offset.min(f.pos);
        }
        f
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends to `out` the entries written since the last call.
    pub fn read_new(&mut self, out: &mut Vec<Entry>) -> Result<(), LogError> {
        // Each turn drains one file; a rotation moves on to the next one.
        for _ in 0..8 {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(file) => {
                        self.ino = file.metadata().map_err(io_err("stat", &self.path))?.ino();
                        self.pos = 0;
                        self.partial.clear();
                        self.file = Some(file);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(io_err("open", &self.path)(e)),
                }
            }
            self.drain(out)?;
            let current = match std::fs::metadata(&self.path) {
                Ok(m) => m.ino(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("stat", &self.path)(e)),
            };
            if current == self.ino {
                return Ok(());
            }
            // Rotated: the writer renamed our file away and writes only to newer
            // ones, so one more read takes what it wrote before the rename. A fast
            // writer may have rotated more than once: the files between ours (now
            // `PATH.n`, or gone) and the live one are read whole, oldest first.
            self.drain(out)?;
            let ours = self.ino;
            self.file = None;
            let mut newer = Vec::new();
            for n in 1.. {
                let p = crate::rotated(&self.path, n);
                match std::fs::metadata(&p) {
                    Ok(m) if m.ino() == ours => break,
                    Ok(_) => newer.push(p),
                    Err(_) => break,
                }
            }
            for p in newer.iter().rev() {
                // A file rotated away again while we looked is gone: go on without it.
                let _ = crate::read_file(p, 0, out);
            }
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<Entry>) -> Result<(), LogError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let len = file.metadata().map_err(io_err("stat", &self.path))?.len();
        if len < self.pos {
            // Truncated in place (max-file=1): what is there now is new.
            self.pos = 0;
            self.partial.clear();
        }
        if len == self.pos {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.pos))
            .map_err(io_err("seek", &self.path))?;
        let start = self.partial.len();
        let n = file
            .take(len - self.pos)
            .read_to_end(&mut self.partial)
            .map_err(io_err("read", &self.path))?;
        self.pos += n as u64;
        let mut consumed = 0;
        let mut search_from = start;
        while let Some(nl) = self.partial[search_from..].iter().position(|&b| b == b'\n') {
            let end = search_from + nl + 1;
            if let Ok(e) = serde_json::from_slice::<Entry>(&self.partial[consumed..end]) {
                out.push(e);
            }
            consumed = end;
            search_from = end;
        }
        self.partial.drain(..consumed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rotation, Stream, Writer};
    use std::time::SystemTime;

    fn logs(out: &[Entry]) -> Vec<&str> {
        out.iter().map(|e| e.log.as_str()).collect()
    }

    #[test]
    fn follows_appends_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(Stream::Stdout, b"old\n", SystemTime::now())
            .unwrap();
        let mut f = Follower::from_end(&p);
        let mut out = Vec::new();
        f.read_new(&mut out).unwrap();
        assert!(out.is_empty());
        w.write(Stream::Stdout, b"a\n", SystemTime::now()).unwrap();
        w.write(Stream::Stderr, b"b\n", SystemTime::now()).unwrap();
        f.read_new(&mut out).unwrap();
        assert_eq!(logs(&out), ["a\n", "b\n"]);
        assert_eq!(out[1].stream, Stream::Stderr);
    }

    #[test]
    fn a_file_made_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut f = Follower::from_end(&p);
        let mut out = Vec::new();
        f.read_new(&mut out).unwrap();
        let mut w = Writer::open(&p, Rotation::default()).unwrap();
        w.write(Stream::Stdout, b"first\n", SystemTime::now())
            .unwrap();
        f.read_new(&mut out).unwrap();
        assert_eq!(logs(&out), ["first\n"]);
    }

    #[test]
    fn nothing_is_lost_or_repeated_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let rotation = Rotation::from_opts(Some("300"), Some("3")).unwrap();
        let mut w = Writer::open(&p, rotation).unwrap();
        let mut f = Follower::from_end(&p);
        let mut out = Vec::new();
        for i in 0..200 {
            w.write(
                Stream::Stdout,
                format!("{i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
            // Read now and then: sometimes after more than one rotation.
            if i % 7 == 0 {
                f.read_new(&mut out).unwrap();
            }
        }
        f.read_new(&mut out).unwrap();
        let want: Vec<String> = (0..200).map(|i| format!("{i}\n")).collect();
        assert_eq!(logs(&out), want);
    }

    #[test]
    fn truncation_in_place_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let rotation = Rotation::from_opts(Some("150"), Some("1")).unwrap();
        let mut w = Writer::open(&p, rotation).unwrap();
        let mut f = Follower::from_end(&p);
        let mut out = Vec::new();
        for i in 0..10 {
            w.write(
                Stream::Stdout,
                format!("line {i}\n").as_bytes(),
                SystemTime::now(),
            )
            .unwrap();
            f.read_new(&mut out).unwrap();
        }
        let want: Vec<String> = (0..10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(logs(&out), want);
    }

    #[test]
    fn a_torn_line_waits_for_its_end() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut raw = std::fs::File::create(&p).unwrap();
        let mut f = Follower::from_end(&p);
        let line = br#"{"log":"x\n","stream":"stdout","time":"2026-11-23T18:45:36.468073951Z"}"#;
        raw.write_all(&line[..20]).unwrap();
        let mut out = Vec::new();
        f.read_new(&mut out).unwrap();
        assert!(out.is_empty());
        raw.write_all(&line[20..]).unwrap();
        raw.write_all(b"\n").unwrap();
        f.read_new(&mut out).unwrap();
        assert_eq!(logs(&out), ["x\n"]);
    }
}
