//! The local terminal for `run -it` and `exec -it`: raw mode (restored on drop),
//! its size, stdin read on a thread of its own, and the detach keys (`ctrl-p,
//! ctrl-q` by default), which are caught here as docker's CLI catches them: the
//! keys of a complete sequence never reach the container, a partial one is sent
//! on once the next key does not match.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;

use crate::error::{CliError, Result};

pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    termios::isatty(fd)
}

pub fn stdin_is_terminal() -> bool {
    is_terminal(std::io::stdin().as_fd())
}

pub fn stdout_is_terminal() -> bool {
    is_terminal(std::io::stdout().as_fd())
}

/// Rows and columns of the terminal on stdout (else stdin), if there is one.
pub fn size() -> Option<(u16, u16)> {
    let try_fd = |fd: BorrowedFd<'_>| {
        termios::tcgetwinsize(fd)
            .ok()
            .filter(|w| w.ws_row > 0 && w.ws_col > 0)
            .map(|w| (w.ws_row, w.ws_col))
    };
    try_fd(std::io::stdout().as_fd()).or_else(|| try_fd(std::io::stdin().as_fd()))
}

/// Raw mode on stdin while alive.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> Result<Self> {
        let fd = std::io::stdin();
        let saved = termios::tcgetattr(fd.as_fd())
            .map_err(|e| CliError::Other(format!("read the terminal settings: {e}")))?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd.as_fd(), OptionalActions::Now, &raw)
            .map_err(|e| CliError::Other(format!("set the terminal to raw mode: {e}")))?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// `ctrl-p,ctrl-q` to bytes: each comma-separated item is one character or
/// `ctrl-X` for X in a-z, `@`, `[`, `\`, `]`, `^`, `_`.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let bad = || CliError::Usage(format!("Invalid detach keys ({spec}) provided"));
    let mut out = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if let Some(k) = item.strip_prefix("ctrl-") {
            let b = match k.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [c @ b'A'..=b'Z'] => c - b'A' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if item.len() == 1 {
            out.push(item.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// What the escape scanner makes of a chunk of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Bytes to send on.
    Send(Vec<u8>),
    /// The detach sequence was typed; the bytes before it are to be sent first.
    Detach(Vec<u8>),
}

/// docker's escape proxy: holds back a partial detach sequence.
#[derive(Debug)]
pub struct EscapeScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
                continue;
            }
            // A mismatch releases what was held back, then this byte may start
            // a new match.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Scan::Send(out)
    }
}

/// Reads stdin on a thread (a blocking read must not hold up the runtime, and the
/// thread simply ends with the process); `None` is EOF.
pub fn stdin_chunks() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(
            parse_detach_keys(DEFAULT_DETACH_KEYS).unwrap(),
            vec![16, 17]
        );
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn scanner_holds_back_partial_sequences() {
        let mut s = EscapeScanner::new(vec![16, 17]);
        assert_eq!(s.scan(b"ab"), Scan::Send(b"ab".to_vec()));
        assert_eq!(s.scan(&[16]), Scan::Send(vec![]));
        assert_eq!(s.scan(b"x"), Scan::Send(vec![16, b'x']));
        assert_eq!(s.scan(&[b'y', 16]), Scan::Send(vec![b'y']));
        assert_eq!(s.scan(&[17, b'z']), Scan::Detach(vec![]));
        assert_eq!(s.scan(&[16, 16, 17]), Scan::Detach(vec![16]));
    }
}
