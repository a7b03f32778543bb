//! The caller's side of a container terminal: a console socket that receives the pty
//! master as containerd's does (one message, the fd in SCM_RIGHTS), a pty pair to put
//! a runtime on as its controlling terminal, and reading a master with a deadline.
use std::fs::File;
use std::io::{IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use rustix::pty::{OpenptFlags, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};

/// A listening console socket in its own temporary directory.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConsoleSocket {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ocirun-it-console.")
            .tempdir()
            .expect("console socket tempdir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        listener
            .set_nonblocking(true)
            .expect("non-blocking console socket");
        Self {
            listener,
            path,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 socket path")
    }

    /// Accepts the runtime's connection and receives the master from its first
    /// message; returns the master and the message's data (runc sends "/dev/ptmx").
    pub fn receive_master(&self, timeout: Duration) -> (File, String) {
        let deadline = Instant::now() + timeout;
        let (conn, _) = loop {
            match self.listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no connection on the console socket within {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept on the console socket: {e}"),
            }
        };
        conn.set_nonblocking(false).expect("blocking connection");
        conn.set_read_timeout(Some(timeout)).expect("read timeout");
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let msg = recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg on the console socket");
        let mut master: Option<OwnedFd> = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    master.get_or_insert(fd);
                }
            }
        }
        let name = String::from_utf8_lossy(&buf[..msg.bytes]).into_owned();
        let master = master.expect("the first console socket message carries an fd");
        (File::from(master), name)
    }
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

/// What `read_until` saw.
#[derive(Debug)]
pub struct Transcript {
    pub text: String,
    /// The slave side is closed (every process holding it has exited).
    pub closed: bool,
}

/// Reads `master` until `done(text so far)` or the slave side closes, for at most
/// `timeout` (then panics with what was read).
pub fn read_until(
    master: &impl AsFd,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Transcript {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if done(&text) {
            return Transcript {
                text,
                closed: false,
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("timed out after {timeout:?} reading the terminal; got {text:?}");
        }
        let mut fds = [PollFd::new(master, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("poll the terminal: {e}"),
        }
        match rustix::io::read(master, &mut buf) {
            Ok(0) | Err(Errno::IO) => {
                return Transcript {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    closed: true,
                };
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(e) => panic!("read the terminal: {e}"),
        }
    }
}

/// Reads until the slave side closes.
pub fn read_to_close(master: &impl AsFd, timeout: Duration) -> String {
    read_until(master, timeout, |_| false).text
}

/// Writes all of `s` to the terminal.
pub fn type_in(master: &File, s: &str) {
    let mut m = master;
    m.write_all(s.as_bytes()).expect("write to the terminal");
}

/// A pty pair made on the host for a runtime to run on (its stdio and controlling
/// terminal), sized `rows` x `cols`.
#[derive(Debug)]
pub struct HostPty {
    pub master: File,
    pub slave_path: PathBuf,
}

impl HostPty {
    pub fn new(rows: u16, cols: u16) -> Self {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .expect("open /dev/ptmx");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        tcsetwinsize(
            &master,
            Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("set the pty size");
        Self {
            master: File::from(master),
            slave_path: PathBuf::from(name.to_string_lossy().into_owned()),
        }
    }

    /// A new fd for the slave, to hand to a child as stdio.
    pub fn open_slave(&self) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.slave_path)
            .expect("open the pty slave")
    }
}
