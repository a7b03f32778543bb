//! Reading the daemon's streams: stdcopy frames (`[stream, 0, 0, 0, len_be32]` +
//! payload) or raw terminal bytes, decided by the container's `Tty` as docker
//! decides; JSON lines (pull, push, build, events) from a response body.

use std::io::Write;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{CliError, Result};

/// Where decoded output goes.
pub trait Sink {
    fn stdout(&mut self, b: &[u8]);
    fn stderr(&mut self, b: &[u8]);
}

/// The process's own stdout and stderr, flushed at every write so a prompt with
/// no newline shows at once.
#[derive(Debug, Default)]
pub struct Stdio;

impl Sink for Stdio {
    fn stdout(&mut self, b: &[u8]) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(b);
        let _ = o.flush();
    }
    fn stderr(&mut self, b: &[u8]) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(b);
        let _ = e.flush();
    }
}

/// Splits stdcopy frames as bytes arrive.
#[derive(Debug, Default)]
pub struct Demux {
    buf: BytesMut,
}

impl Demux {
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn Sink) {
        self.buf.extend_from_slice(data);
        loop {
            if self.buf.len() < 8 {
                return;
            }
            let len =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                return;
            }
            let kind = self.buf[0];
            self.buf.advance(8);
            let payload = self.buf.split_to(len);
            match kind {
                2 => sink.stderr(&payload),
                // 0 (stdin echoed) and 1 both go to stdout, as docker's stdcopy does
                // for anything that is not stderr... except unknown kinds, which
                // docker rejects; we print them rather than lose output.
                _ => sink.stdout(&payload),
            }
        }
    }
}

/// Copies a hijacked or streamed output to `sink` until EOF.
pub async fn copy_output<R: AsyncRead + Unpin>(
    mut r: R,
    tty: bool,
    sink: &mut dyn Sink,
) -> Result<()> {
    let mut demux = Demux::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(CliError::io("read the container's output"))?;
        if n == 0 {
            return Ok(());
        }
        if tty {
            sink.stdout(&buf[..n]);
        } else {
            demux.feed(&buf[..n], sink);
        }
    }
}

/// Copies a response body's frames to `sink` (logs).
pub async fn copy_body(mut body: Incoming, tty: bool, sink: &mut dyn Sink) -> Result<()> {
    let mut demux = Demux::default();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            if tty {
                sink.stdout(data);
            } else {
                demux.feed(data, sink);
            }
        }
    }
    Ok(())
}

/// Reads a JSON-lines body, one value per line, as lines complete.
#[derive(Debug)]
pub struct JsonLines {
    body: Incoming,
    buf: BytesMut,
    done: bool,
}

impl JsonLines {
    pub fn new(body: Incoming) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            done: false,
        }
    }

    pub async fn next(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return parse_line(line).map(Some);
            }
            if self.done {
                let rest = self.buf.split();
                let rest = rest.trim_ascii();
                return if rest.is_empty() {
                    Ok(None)
                } else {
                    parse_line(rest).map(Some)
                };
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Some(d) = frame?.data_ref() {
                        self.buf.extend_from_slice(d);
                    }
                }
                None => self.done = true,
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Result<Value> {
    serde_json::from_slice(line).map_err(|e| {
        CliError::Other(format!(
            "bad JSON from the daemon ({e}): {}",
            String::from_utf8_lossy(line)
        ))
    })
}

/// The whole body as bytes.
pub async fn read_all(body: Incoming) -> Result<Bytes> {
    Ok(body.collect().await?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Cap {
        out: Vec<u8>,
        err: Vec<u8>,
    }
    impl Sink for Cap {
        fn stdout(&mut self, b: &[u8]) {
            self.out.extend_from_slice(b);
        }
        fn stderr(&mut self, b: &[u8]) {
            self.err.extend_from_slice(b);
        }
    }

    #[test]
    fn demux_handles_split_frames() {
        let mut stream = vec![1, 0, 0, 0, 0, 0, 0, 3];
        stream.extend_from_slice(b"hi\n");
        stream.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        stream.extend_from_slice(b"e\n");
        let mut cap = Cap::default();
        let mut d = Demux::default();
        for chunk in stream.chunks(3) {
            d.feed(chunk, &mut cap);
        }
        assert_eq!(cap.out, b"hi\n");
        assert_eq!(cap.err, b"e\n");
    }
}
