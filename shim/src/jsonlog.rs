//! `jsonfile://PATH?max-size=10m&max-file=3`: the shim writes Docker's
//! json-file log itself (one `{"log":..,"stream":..,"time":..}` object per
//! line, RFC 3339 nano timestamps of arrival, rotation by size and count), so
//! no daemon sits in the output path. The format and rotation are the
//! `jsonlog` crate's, the same code engined reads the files with.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jsonlog::{LineSplitter, Rotation, Stream, Writer};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// A partial line (no `\n` yet) waits this long for its end before it is
/// logged alone, so that a prompt reaches whoever follows the log (attach)
/// without waiting for a newline that may never come.
const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(50);

/// On a terminal, output is keystroke echo and prompts: log it at once.
const TTY_PARTIAL_WAIT: Duration = Duration::from_millis(2);

#[derive(Debug)]
pub struct JsonLog(Writer);

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
        let (mut max_size, mut max_file) = (None, None);
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("max-size", v)) => max_size = Some(v),
                Some(("max-file", v)) => max_file = Some(v),
                _ => return Err(invalid(format!("{uri}: unknown option {kv}"))),
            }
        }
        let rotation =
            Rotation::from_opts(max_size, max_file).map_err(|e| invalid(format!("{uri}: {e}")))?;
        let path = Path::new(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Writer::open(path, rotation)
            .map(JsonLog)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Whether more input arrives within `wait`.
fn readable_within(from: &impl AsFd, wait: Duration) -> bool {
    let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    loop {
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            // Let the read report it.
            Err(_) => return true,
        }
    }
}

/// Copies a process's output into the log until EOF: one entry per line,
/// long lines split at 16 KiB as Docker does, a partial line flushed when
/// nothing follows it for a moment (see [`PARTIAL_LINE_WAIT`]).
pub fn copy(mut from: impl Read + AsFd, log: Arc<Mutex<JsonLog>>, stream: Stream, tty: bool) {
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 32 * 1024];
    let mut failed = false;
    let mut emit = |data: &[u8]| {
        let r =
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .write(stream, data, SystemTime::now());
        if let Err(e) = r
            && !failed
        {
            failed = true;
            tracing::warn!("writing json log: {e}");
        }
    };
    let wait = if tty {
        TTY_PARTIAL_WAIT
    } else {
        PARTIAL_LINE_WAIT
    };
    loop {
        if splitter.pending() > 0 && !readable_within(&from, wait) {
            splitter.finish(&mut emit);
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A pty master reads EIO once the last slave is closed: its EOF.
            Err(_) => break,
        };
        splitter.push(&buf[..n], &mut emit);
    }
    splitter.finish(&mut emit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entries(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Feeds `chunks` through a pipe, pausing `pause` between them.
    fn copy_chunks(uri: &str, chunks: &[&[u8]], pause: Duration, stream: Stream) {
        let log = Arc::new(Mutex::new(JsonLog::open(uri).unwrap()));
        let (r, mut w) = std::io::pipe().unwrap();
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let writer = std::thread::spawn(move || {
            for c in chunks {
                w.write_all(&c).unwrap();
                std::thread::sleep(pause);
            }
        });
        copy(r, log, stream, false);
        writer.join().unwrap();
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(JsonLog::open("jsonfile:///tmp/x?max-size=huge").is_err());
        assert!(JsonLog::open("jsonfile:///tmp/x?max-file=0").is_err());
        assert!(JsonLog::open("jsonfile:///tmp/x?color=red").is_err());
        assert!(JsonLog::open("jsonfile://").is_err());
    }

    #[test]
    fn rotates_and_keeps_max_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let uri = format!("jsonfile://{}?max-size=200&max-file=3", path.display());
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        copy_chunks(&uri, &[text.as_bytes()], Duration::ZERO, Stream::Stdout);
        assert!(dir.path().join("c.log.1").exists());
        assert!(dir.path().join("c.log.2").exists());
        assert!(!dir.path().join("c.log.3").exists());
        let last = entries(&path).pop().unwrap();
        assert_eq!(last["log"], "line 99\n");
        assert_eq!(last["stream"], "stdout");
        let time = last["time"].as_str().unwrap();
        // RFC 3339 in UTC; trailing zeros of the fraction are dropped, as Go's
        // RFC3339Nano does.
        assert!(
            jsonlog::parse_rfc3339_nanos(time).is_some() && time.ends_with('Z'),
            "not RFC 3339 UTC: {time}"
        );
        for f in ["c.log", "c.log.1", "c.log.2"] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(len <= 200, "{f} is {len} bytes");
        }
    }

    #[test]
    fn long_lines_are_split_and_tail_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut text = vec![b'a'; jsonlog::MAX_LINE + 10];
        text.extend_from_slice(b"\nno-newline");
        let uri = format!("jsonfile://{}", path.display());
        copy_chunks(&uri, &[&text], Duration::ZERO, Stream::Stderr);
        let entries = entries(&path);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["log"].as_str().unwrap().len(), jsonlog::MAX_LINE);
        assert_eq!(entries[1]["log"], "aaaaaaaaaa\n");
        assert_eq!(entries[2]["log"], "no-newline");
        assert_eq!(entries[2]["stream"], "stderr");
    }

    #[test]
    fn a_partial_line_is_logged_when_nothing_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let uri = format!("jsonfile://{}", path.display());
        // A prompt, then the rest of the line much later; and a line written in
        // two quick pieces, which stays one entry.
        copy_chunks(
            &uri,
            &[b"Name? ", b"bob\n", b"a", b"b\n"],
            Duration::from_millis(300),
            Stream::Stdout,
        );
        let logs: Vec<String> = entries(&path)
            .iter()
            .map(|e| e["log"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(logs, ["Name? ", "bob\n", "a", "b\n"]);

        let path = dir.path().join("quick.log");
        let uri = format!("jsonfile://{}", path.display());
        copy_chunks(
            &uri,
            &[b"half ", b"line\n"],
            Duration::from_millis(1),
            Stream::Stdout,
        );
        let logs: Vec<String> = entries(&path)
            .iter()
            .map(|e| e["log"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(logs, ["half line\n"]);
    }
}
