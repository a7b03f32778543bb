//! The process's stdio: for non-tty processes, pipes between the container
//! and the paths containerd gave (FIFOs, or `file://` paths the shim writes
//! itself); for tty processes, the pty master received over the console
//! socket. Copies run on small threads so that no daemon sits in the path.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::error::{Result, ShimError};
use crate::jsonlog::{self, JsonLog};
use crate::runtime::ChildStdio;

const COPY_STACK: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's end of a process's stdio, kept for CloseIO, ResizePty and for
/// waiting until output is drained before Delete answers.
#[derive(Debug, Default)]
pub struct ProcIo {
    stdin: Arc<StdinSink>,
    console: Option<File>,
    copiers: Vec<JoinHandle<()>>,
}

/// The write end of a process's stdin (a pipe, or the pty master), shared by
/// the thread that feeds it and CloseIO.
#[derive(Debug, Default)]
struct StdinSink {
    file: Mutex<Option<File>>,
    /// CloseIO asked for EOF: the feeding thread forwards what its source
    /// already holds (a client writes, then closes), then closes.
    closing: std::sync::atomic::AtomicBool,
    /// The feeding thread runs; when it does not, CloseIO closes at once.
    fed: std::sync::atomic::AtomicBool,
}

impl StdinSink {
    fn new(file: File) -> Arc<Self> {
        Arc::new(Self {
            file: Mutex::new(Some(file)),
            ..Default::default()
        })
    }

    fn close_now(&self) {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Closes once the source's pending input is forwarded.
    fn close_after_pending(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if !self.fed.load(Ordering::SeqCst) {
            self.close_now();
        }
    }
}

/// Stdio prepared before the runtime runs; `finish` completes it afterwards.
#[derive(Debug)]
pub struct Prepared {
    pub child: ChildStdio,
    pub console_socket: Option<PathBuf>,
    listener: Option<UnixListener>,
    paths: StdioPaths,
    io: ProcIo,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(p) = &self.console_socket {
            let _ = std::fs::remove_file(p);
            if let Some(dir) = p.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn spawn_copy(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(COPY_STACK)
        .spawn(f)
        .map_err(|e| ShimError::sys("spawning copy thread", e))
}

/// Opens where output goes: a FIFO or plain path as given, or `file://PATH`
/// appended to (created if missing).
fn open_output(uri: &str) -> std::io::Result<File> {
    if let Some(path) = uri.strip_prefix("file://") {
        if let Some(dir) = Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        return OpenOptions::new().append(true).create(true).open(path);
    }
    if uri.contains("://") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("unsupported stdio URI {uri}"),
        ));
    }
    OpenOptions::new().write(true).open(uri)
}

fn check_uri(uri: &str) -> Result<()> {
    if uri.contains("://")
        && !uri.starts_with("file://")
        && !uri.starts_with("binary://")
        && !JsonLog::is_uri(uri)
    {
        return Err(ShimError::InvalidArgument(format!(
            "unsupported stdio URI {uri}"
        )));
    }
    Ok(())
}

/// Copies until EOF or error (a pty master reports EIO once the last slave
/// closes, which is its EOF).
fn pump(from: &mut impl Read, mut to: impl Write) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Output held for a FIFO while nobody reads it (the daemon is down), per
/// stream; beyond this the oldest bytes are dropped, so the container never
/// blocks and at most this much of the newest output waits for a reader.
pub const HOLD_BOUND: usize = 1 << 20;

/// How often a FIFO without a reader is retried while output is held.
const REOPEN_EVERY: Duration = Duration::from_millis(100);

/// Copies a process's output to `uri`: a FIFO is written through a reader
/// that may come and go (see [`HOLD_BOUND`]); anything else is appended to.
/// Whatever stops the copy early, the rest is drained so the container never
/// blocks on a full pipe nor dies of EPIPE.
fn copy_out(mut from: impl Read + AsFd, uri: &str) {
    let is_fifo =
        !uri.contains("://") && std::fs::metadata(uri).is_ok_and(|m| m.file_type().is_fifo());
    if is_fifo {
        copy_to_fifo(&mut from, uri);
    } else {
        match open_output(uri) {
            Ok(dest) => pump(&mut from, dest),
            Err(e) => tracing::warn!("opening {uri}: {e}"),
        }
    }
    pump(&mut from, std::io::sink());
}

/// Opens a FIFO for writing only if someone reads it now (ENXIO otherwise),
/// then makes writes blocking: a live reader gets ordinary backpressure.
fn open_fifo_if_read(path: &str) -> Option<File> {
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .ok()?;
    Some(f)
}

/// Writes all of `buf`; on failure (the reader went away) returns how much was written.
fn write_fully(dest: &mut File, buf: &[u8]) -> std::result::Result<(), usize> {
    let mut done = 0;
    while done < buf.len() {
        match dest.write(&buf[done..]) {
            Ok(0) => return Err(done),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(done),
        }
    }
    Ok(())
}

fn copy_to_fifo(from: &mut (impl Read + AsFd), path: &str) {
    let mut dest = open_fifo_if_read(path);
    let mut held: VecDeque<u8> = VecDeque::new();
    let mut dropped: u64 = 0;
    let mut buf = [0u8; 32 * 1024];
    let hold = |held: &mut VecDeque<u8>, dropped: &mut u64, data: &[u8]| {
        held.extend(data);
        let over = held.len().saturating_sub(HOLD_BOUND);
        if over > 0 {
            held.drain(..over);
            *dropped += over as u64;
        }
    };
    loop {
        if dest.is_none() && !held.is_empty() {
            dest = open_fifo_if_read(path);
            if let Some(d) = dest.as_mut() {
                if dropped > 0 {
                    tracing::warn!("{path}: dropped {dropped} bytes while nobody read it");
                    dropped = 0;
                }
                let (a, b) = held.as_slices();
                let pending = [a, b].concat();
                held.clear();
                if let Err(done) = write_fully(d, &pending) {
                    dest = None;
                    hold(&mut held, &mut dropped, &pending[done..]);
                }
            }
        }
        if dest.is_none() && !held.is_empty() {
            // Wake up to retry the reader even when the process is quiet.
            let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(REOPEN_EVERY).unwrap_or(PollTimeout::MAX);
            if matches!(
                poll(&mut fds, timeout),
                Ok(0) | Err(nix::errno::Errno::EINTR)
            ) {
                continue;
            }
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        match dest.as_mut() {
            Some(d) => {
                if let Err(done) = write_fully(d, &buf[..n]) {
                    dest = None;
                    hold(&mut held, &mut dropped, &buf[done..n]);
                }
            }
            None => hold(&mut held, &mut dropped, &buf[..n]),
        }
    }
    // The process is done: give a reader that is coming back a last chance.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !held.is_empty() && Instant::now() < deadline {
        if let Some(mut d) = open_fifo_if_read(path) {
            let (a, b) = held.as_slices();
            let _ = write_fully(&mut d, &[a, b].concat());
            return;
        }
        std::thread::sleep(REOPEN_EVERY);
    }
}

/// `fifo+keep://PATH`: a stdin FIFO that the shim also holds open for writing,
/// so its writer going away (a daemon restarting) is no EOF and a new writer can
/// take over; only CloseIO closes the process's stdin. A plain path is a FIFO
/// whose EOF closes it, as containerd's shims do.
pub const KEEP_STDIN_SCHEME: &str = "fifo+keep://";

/// How often the feeding thread looks whether CloseIO asked for EOF.
const CLOSE_CHECK: Duration = Duration::from_millis(100);

/// Feeds the stdin source into the process, closing its stdin at EOF or, after
/// what the source holds is forwarded, when CloseIO asks.
fn pump_stdin(source: String, sink: Arc<StdinSink>) {
    feed_stdin(&source, &sink);
    sink.fed.store(false, Ordering::SeqCst);
    sink.close_now();
}

fn feed_stdin(source: &str, sink: &StdinSink) {
    let (path, keep) = match source.strip_prefix(KEEP_STDIN_SCHEME) {
        Some(p) => (p, true),
        None => (source, false),
    };
    // Blocks until the client opens its end (unless kept): a CloseIO meanwhile
    // closes at once, as nothing can be pending.
    let Ok(mut src) = OpenOptions::new().read(true).write(keep).open(path) else {
        return;
    };
    sink.fed.store(true, Ordering::SeqCst);
    let mut buf = [0u8; 32 * 1024];
    loop {
        let closing = sink.closing.load(Ordering::SeqCst);
        let wait = if closing { Duration::ZERO } else { CLOSE_CHECK };
        let mut fds = [PollFd::new(src.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if closing => return,
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut guard = sink.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = guard.as_mut() else { return };
        if w.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Where one output stream goes.
enum Sink {
    Uri(String),
    Json(Arc<Mutex<JsonLog>>, ::jsonlog::Stream),
}

impl Sink {
    fn copy(self, from: impl Read + AsFd, tty: bool) {
        match self {
            Sink::Uri(uri) => copy_out(from, &uri),
            Sink::Json(log, stream) => jsonlog::copy(from, log, stream, tty),
        }
    }
}

/// The sinks for stdout and stderr; one json log is shared when both name it.
fn sinks(paths: &StdioPaths) -> Result<(Option<Sink>, Option<Sink>)> {
    let open = |uri: &str| {
        JsonLog::open(uri)
            .map(|l| Arc::new(Mutex::new(l)))
            .map_err(|e| ShimError::InvalidArgument(format!("opening {uri}: {e}")))
    };
    let mut shared: Option<Arc<Mutex<JsonLog>>> = None;
    let mut sink = |uri: &str, stream: ::jsonlog::Stream| -> Result<Option<Sink>> {
        if uri.is_empty() {
            return Ok(None);
        }
        if !JsonLog::is_uri(uri) {
            return Ok(Some(Sink::Uri(uri.to_string())));
        }
        let log = match (&shared, uri == paths.stdout && uri == paths.stderr) {
            (Some(l), true) => l.clone(),
            _ => {
                let l = open(uri)?;
                shared = Some(l.clone());
                l
            }
        };
        Ok(Some(Sink::Json(log, stream)))
    };
    let out = sink(&paths.stdout, ::jsonlog::Stream::Stdout)?;
    let err = if paths.terminal {
        None
    } else {
        sink(&paths.stderr, ::jsonlog::Stream::Stderr)?
    };
    Ok((out, err))
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Moves the pipes from fds 0-2 to 3 (stdout), 4 (stderr) and 5 (ready),
/// as containerd's logging binaries expect, without code in the forked child.
const LOGGER_FDS: &str =
    "exec 3<&0 4<&1 5>&2 </dev/null >/dev/null 2>/dev/null; exec \"$0\" \"$@\"";

/// How long a logging binary may take to close its ready fd.
const LOGGER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a `binary:///path?k=v` logger (containerd's protocol: the process's
/// stdout and stderr pipes on fds 3 and 4, a pipe it closes when ready on fd
/// 5, CONTAINER_ID and CONTAINER_NAMESPACE set; query pairs become arguments)
/// and returns the write ends for the process.
fn spawn_binary_logger(uri: &str, id: &str, namespace: &str) -> Result<(Stdio, Stdio)> {
    let (path, args) = parse_binary_uri(uri)?;
    let path = path.as_str();
    let (out_r, out_w) = std::io::pipe().map_err(|e| ShimError::sys("pipe", e))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| ShimError::sys("pipe", e))?;
    let (mut ready_r, ready_w) = std::io::pipe().map_err(|e| ShimError::sys("pipe", e))?;
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", LOGGER_FDS, path])
        .args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(out_r)
        .stdout(err_r)
        .stderr(ready_w);
    // The logger's exit is collected by the reaper like any orphan's.
    let _logger = cmd
        .spawn()
        .map_err(|e| ShimError::io("starting logger", path, e))?;
    drop(cmd);
    let deadline = Instant::now() + LOGGER_READY_TIMEOUT;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => {
                return Err(ShimError::FailedPrecondition(format!(
                    "logger {path} did not get ready in {LOGGER_READY_TIMEOUT:?}"
                )));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ShimError::sys("waiting for the logger", e)),
            Ok(_) => {}
        }
        match ready_r.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ShimError::sys("waiting for the logger", e)),
        }
    }
    Ok((out_w.into(), err_w.into()))
}

/// Percent-decodes a URI component (`+` is a space in query parts, as in
/// HTML forms and Go's url.ParseQuery, which containerd uses).
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `binary:///path?k=v&flag` -> (path, ["k", "v", "flag"]), decoded. A key
/// without a value is passed alone; pairs keep their order.
fn parse_binary_uri(uri: &str) -> Result<(String, Vec<String>)> {
    let bad = || ShimError::InvalidArgument(format!("bad percent-encoding in {uri}"));
    let rest = uri.strip_prefix("binary://").unwrap_or(uri);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_decode(path, false).ok_or_else(bad)?;
    if !path.starts_with('/') {
        return Err(ShimError::InvalidArgument(format!(
            "{uri}: the logging binary must be an absolute path"
        )));
    }
    let mut args = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        args.push(percent_decode(k, true).ok_or_else(bad)?);
        let v = percent_decode(v, true).ok_or_else(bad)?;
        if !v.is_empty() {
            args.push(v);
        }
    }
    Ok((path, args))
}

pub fn prepare(paths: &StdioPaths, id: &str, namespace: &str) -> Result<Prepared> {
    check_uri(&paths.stdout)?;
    check_uri(&paths.stderr)?;
    let binary = [&paths.stdout, &paths.stderr]
        .into_iter()
        .find(|u| u.starts_with("binary://"));
    let mut prepared = Prepared {
        child: ChildStdio::null(),
        console_socket: None,
        listener: None,
        paths: paths.clone(),
        io: ProcIo::default(),
    };
    if let Some(uri) = binary.filter(|_| paths.terminal) {
        // A pty has one output stream and the logger protocol wants two pipes.
        return Err(ShimError::InvalidArgument(format!(
            "cannot use a terminal with a binary:// logger ({uri}): use a FIFO or file:// \
             for tty output, or run without a terminal"
        )));
    }
    if paths.terminal {
        // A fresh 0700 directory: nobody else can connect, pre-create or swap the socket.
        let dir = std::env::temp_dir().join(format!(
            "shim-console-{}-{}",
            std::process::id(),
            CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ShimError::io("creating", &dir, e))?;
        let sock = dir.join("console.sock");
        let listener = UnixListener::bind(&sock).map_err(|e| ShimError::io("binding", &sock, e))?;
        prepared.listener = Some(listener);
        prepared.console_socket = Some(sock);
        return Ok(prepared);
    }
    if !paths.stdin.is_empty() {
        let (r, w) = std::io::pipe().map_err(|e| ShimError::sys("pipe", e))?;
        prepared.child.stdin = r.into();
        let sink = StdinSink::new(File::from(std::os::fd::OwnedFd::from(w)));
        prepared.io.stdin = sink.clone();
        let source = paths.stdin.clone();
        prepared
            .io
            .copiers
            .push(spawn_copy("stdin", move || pump_stdin(source, sink))?);
    }
    if let Some(uri) = binary {
        // The logger reads the process's pipes itself: no copy in the shim.
        let (out, err) = spawn_binary_logger(uri, id, namespace)?;
        prepared.child.stdout = out;
        prepared.child.stderr = err;
        return Ok(prepared);
    }
    let (out_sink, err_sink) = sinks(paths)?;
    for (which, sink) in [(1, out_sink), (2, err_sink)] {
        let Some(sink) = sink else {
            continue;
        };
        let (r, w) = std::io::pipe().map_err(|e| ShimError::sys("pipe", e))?;
        if which == 1 {
            prepared.child.stdout = w.into();
        } else {
            prepared.child.stderr = w.into();
        }
        let h = spawn_copy("output", move || sink.copy(r, false))?;
        // Only stdout/stderr copies are awaited before Delete answers.
        prepared.io.copiers.push(h);
    }
    Ok(prepared)
}

fn receive_console(listener: &UnixListener) -> Result<File> {
    listener
        .set_nonblocking(true)
        .map_err(|e| ShimError::sys("console socket", e))?;
    // The runtime has exited by now, so its connection is already queued.
    let deadline = Instant::now() + Duration::from_secs(2);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(ShimError::sys("accepting the console socket", e)),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| ShimError::sys("console socket", e))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    rustix::net::recvmsg(&stream, &mut iov, &mut cmsg, RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| ShimError::sys("receiving the pty master", e))?;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(File::from(fd));
        }
    }
    Err(ShimError::FailedPrecondition(
        "the runtime sent no pty master over the console socket".into(),
    ))
}

impl Prepared {
    /// Completes stdio after the runtime created the process: for a tty,
    /// takes the pty master and starts copying.
    pub fn finish(mut self) -> Result<ProcIo> {
        let mut io = std::mem::take(&mut self.io);
        let Some(listener) = self.listener.take() else {
            return Ok(io);
        };
        let master = receive_console(&listener)?;
        if !self.paths.stdin.is_empty() {
            let w = master
                .try_clone()
                .map_err(|e| ShimError::sys("dup pty master", e))?;
            let sink = StdinSink::new(w);
            io.stdin = sink.clone();
            let source = self.paths.stdin.clone();
            io.copiers
                .push(spawn_copy("stdin", move || pump_stdin(source, sink))?);
        }
        if let (Some(sink), _) = sinks(&self.paths)? {
            let r = master
                .try_clone()
                .map_err(|e| ShimError::sys("dup pty master", e))?;
            io.copiers
                .push(spawn_copy("output", move || sink.copy(r, true))?);
        }
        io.console = Some(master);
        Ok(io)
    }
}

impl ProcIo {
    /// CloseIO: EOF for the process once the input already sent is forwarded.
    pub fn close_stdin(&self) {
        self.stdin.close_after_pending();
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(console) = &self.console else {
            return Err(ShimError::FailedPrecondition(
                "the process has no terminal".into(),
            ));
        };
        let ws = rustix::termios::Winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(console, ws).map_err(|e| ShimError::sys("resizing pty", e))
    }

    /// Waits (bounded) for the output copies to drain, so that a Delete
    /// answered to the client means its FIFOs have everything.
    pub fn wait_drained(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        // The stdin copy may block forever on a FIFO nobody writes: don't wait for it.
        while Instant::now() < deadline
            && self
                .copiers
                .iter()
                .any(|h| !h.is_finished() && h.thread().name() == Some("output"))
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.console = None;
        self.stdin.close_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_uri_is_percent_decoded() {
        let (path, args) =
            parse_binary_uri("binary:///opt/my%20log?mode=a%20b+c&dir=%2Fvar%2Flog&flag&k%3D=")
                .unwrap();
        assert_eq!(path, "/opt/my log");
        assert_eq!(args, ["mode", "a b c", "dir", "/var/log", "flag", "k="]);
    }

    #[test]
    fn binary_uri_rejects_bad_escapes_and_relative_paths() {
        assert!(parse_binary_uri("binary:///x?a=%zz").is_err());
        assert!(parse_binary_uri("binary:///x?a=%4").is_err());
        assert!(parse_binary_uri("binary://x").is_err());
    }

    #[test]
    fn terminal_with_binary_logger_is_refused() {
        let paths = StdioPaths {
            stdout: "binary:///bin/true".into(),
            terminal: true,
            ..Default::default()
        };
        let e = prepare(&paths, "id", "ns").unwrap_err();
        assert!(matches!(e, ShimError::InvalidArgument(_)));
        assert!(e.to_string().contains("terminal"), "{e}");
    }
}
