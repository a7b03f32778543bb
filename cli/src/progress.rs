//! Docker's JSON-message display (pull, push, load, build, import): on a terminal
//! every layer id keeps a line of its own that is rewritten in place with a
//! progress bar (`[=====>     ] 1.2MB/3.4MB`); elsewhere progress updates are
//! dropped and each status prints once, as `docker pull | cat` shows it.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;

use crate::error::{CliError, Result};
use crate::units::human_size4;

#[derive(Debug)]
pub struct Display {
    terminal: bool,
    width: usize,
    /// Line of each id, counted from the first id line (docker's `ids` map).
    ids: HashMap<String, usize>,
}

impl Display {
    pub fn new(terminal: bool, width: Option<usize>) -> Self {
        Self {
            terminal,
            width: width.unwrap_or(200),
            ids: HashMap::new(),
        }
    }

    /// Shows one message; an `error` message becomes the error it carries.
    /// Messages with `aux` are for the caller and print nothing.
    pub fn show(&mut self, m: &Value, out: &mut dyn Write) -> Result<()> {
        if let Some(err) = error_of(m) {
            return Err(CliError::Stream(err));
        }
        if m.get("aux").is_some() {
            return Ok(());
        }
        let id = m.get("id").and_then(Value::as_str).unwrap_or("");
        let progress = m.get("progressDetail").filter(|p| p.is_object());
        let has_progress_msg = m
            .get("progress")
            .and_then(Value::as_str)
            .is_some_and(|p| !p.is_empty());
        let mut diff = 0;
        if !id.is_empty() && (progress.is_some() || has_progress_msg) {
            let line = match self.ids.get(id) {
                Some(l) => *l,
                None => {
                    let l = self.ids.len();
                    self.ids.insert(id.to_string(), l);
                    if self.terminal {
                        let _ = out.write_all(b"\n");
                    }
                    l
                }
            };
            diff = self.ids.len() - line;
            if self.terminal && diff > 0 {
                let _ = write!(out, "\x1b[{diff}A");
            }
        } else {
            // Output that is not a layer's line ends the block of layer lines.
            self.ids.clear();
        }
        self.display(m, id, progress, out);
        if !id.is_empty() && self.terminal && diff > 0 {
            let _ = write!(out, "\x1b[{diff}B");
        }
        let _ = out.flush();
        Ok(())
    }

    fn display(&self, m: &Value, id: &str, progress: Option<&Value>, out: &mut dyn Write) {
        let status = m.get("status").and_then(Value::as_str).unwrap_or("");
        let stream = m.get("stream").and_then(Value::as_str).unwrap_or("");
        let bar = progress.map(|p| bar(p, self.width)).unwrap_or_default();
        let mut endl = "";
        if self.terminal && stream.is_empty() && progress.is_some() {
            let _ = out.write_all(b"\x1b[2K\r");
            endl = "\r";
        } else if !bar.is_empty() {
            // No progress bars off a terminal.
            return;
        }
        if !id.is_empty() {
            let _ = write!(out, "{id}: ");
        }
        if let Some(from) = m
            .get("from")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
        {
            let _ = write!(out, "(from {from}) ");
        }
        if progress.is_some() && self.terminal {
            let _ = write!(out, "{status} {bar}{endl}");
        } else if !stream.is_empty() {
            let _ = write!(out, "{stream}{endl}");
        } else {
            let _ = writeln!(out, "{status}{endl}");
        }
    }
}

/// The error a message carries (`errorDetail.message`, else `error`).
pub fn error_of(m: &Value) -> Option<String> {
    let detail = m
        .pointer("/errorDetail/message")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let plain = m
        .get("error")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    detail.or(plain).map(str::to_string)
}

/// docker's `JSONProgress.String`: a 50-wide bar (on terminals wider than 110)
/// and `current/total` in decimal units; just the count when the total is unknown.
pub fn bar(p: &Value, width: usize) -> String {
    let current = p.get("current").and_then(Value::as_i64).unwrap_or(0);
    let total = p.get("total").and_then(Value::as_i64).unwrap_or(0);
    if current <= 0 && total <= 0 {
        return String::new();
    }
    let cur = human_size4(current as f64);
    if total <= 0 {
        return format!("{cur:>8}");
    }
    let pct = ((current as f64 / total as f64 * 100.0) as usize / 2).min(50);
    let bar = if width > 110 {
        format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct))
    } else {
        String::new()
    };
    let numbers = if current > total {
        format!("{cur:>8}")
    } else {
        format!("{cur:>8}/{}", human_size4(total as f64))
    };
    format!("{bar}{numbers}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(terminal: bool, msgs: &[Value]) -> String {
        let mut d = Display::new(terminal, Some(200));
        let mut out = Vec::new();
        for m in msgs {
            d.show(m, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn bars() {
        assert_eq!(bar(&json!({}), 200), "");
        assert_eq!(
            bar(&json!({"current": 108, "total": 216}), 200),
            format!("[{}>{}]     108B/216B", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(bar(&json!({"current": 5000}), 200), "     5kB");
        assert_eq!(
            bar(&json!({"current": 108, "total": 216}), 80),
            "    108B/216B"
        );
    }

    #[test]
    fn plain_output_drops_progress() {
        let msgs = [
            json!({"status": "Pulling from busybox", "id": "latest"}),
            json!({"status": "Pulling fs layer", "progressDetail": {}, "id": "3c1e"}),
            json!({"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": "3c1e"}),
            json!({"status": "Pull complete", "progressDetail": {}, "id": "3c1e"}),
            json!({"status": "Digest: sha256:abc"}),
        ];
        assert_eq!(
            run(false, &msgs),
            "latest: Pulling from busybox\n3c1e: Pulling fs layer\n3c1e: Pull complete\nDigest: sha256:abc\n"
        );
    }

    #[test]
    fn terminal_rewrites_each_layer_line() {
        let msgs = [
            json!({"status": "Preparing", "progressDetail": {}, "id": "a"}),
            json!({"status": "Preparing", "progressDetail": {}, "id": "b"}),
            json!({"status": "Pushing", "progressDetail": {"current": 1, "total": 2}, "id": "a"}),
        ];
        let out = run(true, &msgs);
        // The update of `a` moves up two lines, rewrites, and comes back down.
        assert!(out.ends_with("\x1b[2A\x1b[2K\ra: Pushing [=========================>                         ]       1B/2B\r\x1b[2B"), "{out:?}");
    }

    #[test]
    fn errors_end_the_stream() {
        let mut d = Display::new(false, None);
        let e = d
            .show(
                &json!({"errorDetail": {"message": "boom"}, "error": "boom"}),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }
}
