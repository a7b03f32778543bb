//! `process.terminal`: a pseudo-terminal made inside the container, from the
//! container's own /dev/ptmx (so the slave belongs to the container's devpts and shows
//! as /dev/pts/N there), whose master goes either to a console socket (create, detached
//! run and exec: what containerd does) or back to ocirun, which relays it to its own
//! stdio (foreground run and exec, as runc 1.1 does).
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use oci_spec::runtime::Box as ConsoleSize;
use rustix::io::Errno;
use rustix::pty::{OpenptFlags, ioctl_tiocgptpeer, openpt, unlockpt};
use rustix::termios::{OptionalActions, Termios, Winsize, tcgetattr, tcgetwinsize, tcsetattr};

use crate::error::{OciError, Result};
use crate::process::channel::{Channel, Message};

/// The name runc sends with the master: go-runc's console socket ignores it, but
/// other readers may log it.
const MASTER_NAME: &[u8] = b"/dev/ptmx";

fn errno(op: impl Into<String>, e: Errno) -> OciError {
    OciError::sys(op, nix::errno::Errno::from_raw(e.raw_os_error()))
}

/// Where the pty master goes once the container side is set up.
#[derive(Debug)]
pub enum ConsoleTarget {
    /// A console socket the caller listens on, connected by ocirun on the host (the
    /// container cannot see the socket's path).
    Socket(OwnedFd),
    /// Back to ocirun over the setup channel, for a foreground relay.
    Parent,
}

/// runc's rules for terminal and console socket, with its messages: a detached
/// process with a terminal needs a socket to hand the master to, and a socket is
/// only for a detached process with a terminal.
pub fn check_terminal(detach: bool, terminal: bool, socket: Option<&Path>) -> Result<()> {
    if detach && terminal && socket.is_none() {
        return Err(OciError::InvalidConfig(
            "cannot allocate tty if runc will detach without setting console socket".into(),
        ));
    }
    if (!detach || !terminal) && socket.is_some() {
        return Err(OciError::InvalidConfig(
            "cannot use console socket if runc will not detach or allocate tty".into(),
        ));
    }
    Ok(())
}

/// The console target for a process, connecting to the socket now (on the host).
pub fn target(terminal: bool, socket: Option<&Path>) -> Result<Option<ConsoleTarget>> {
    if !terminal {
        return Ok(None);
    }
    match socket {
        Some(p) => {
            let s =
                UnixStream::connect(p).map_err(|e| OciError::io("connect console socket", p, e))?;
            Ok(Some(ConsoleTarget::Socket(s.into())))
        }
        None => Ok(Some(ConsoleTarget::Parent)),
    }
}

/// In the container, once its mount namespace and /dev are in place: a new pty whose
/// slave becomes this process's controlling terminal and stdio (the process must be
/// a session leader), sized from `process.consoleSize`; the master is then delivered.
pub fn setup_console(
    target: ConsoleTarget,
    size: Option<&ConsoleSize>,
    chan: &Channel,
) -> Result<()> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(|e| errno("open /dev/ptmx", e))?;
    unlockpt(&master).map_err(|e| errno("unlockpt", e))?;
    // The peer ioctl opens the slave without a path lookup in /dev/pts, which the
    // container's processes could have changed (exec into a running container).
    let slave = ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .map_err(|e| errno("open the pty slave (TIOCGPTPEER)", e))?;
    if let Some(s) = size
        && s.width() > 0
        && s.height() > 0
    {
        resize(&master, clamp(s.height()), clamp(s.width()))?;
    }
    rustix::stdio::dup2_stdin(&slave).map_err(|e| errno("dup2 pty to stdin", e))?;
    rustix::stdio::dup2_stdout(&slave).map_err(|e| errno("dup2 pty to stdout", e))?;
    rustix::stdio::dup2_stderr(&slave).map_err(|e| errno("dup2 pty to stderr", e))?;
    drop(slave);
    rustix::process::ioctl_tiocsctty(rustix::stdio::stdin()).map_err(|e| errno("TIOCSCTTY", e))?;
    match target {
        ConsoleTarget::Socket(sock) => {
            crate::process::fdpass::send_with_fd(sock.as_fd(), MASTER_NAME, master.as_fd())
                .map_err(|e| errno("send the pty master to the console socket", e))
        }
        ConsoleTarget::Parent => chan.send_with_fd(&Message::Console, master.as_fd()),
    }
}

fn clamp(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn resize(master: &impl AsFd, rows: u16, cols: u16) -> Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, ws).map_err(|e| errno("set the console size", e))
}

/// The caller's terminal while ocirun relays a container's pty: in raw mode (so keys
/// reach the container's line discipline untouched) until dropped.
#[derive(Debug)]
pub struct HostConsole {
    fd: OwnedFd,
    saved: Termios,
}

impl HostConsole {
    /// The first of stderr, stdout, stdin that is a terminal, else /dev/tty; runc
    /// fails the same way when there is none.
    pub fn open() -> Result<HostConsole> {
        let std_fds: [BorrowedFd<'static>; 3] = [
            rustix::stdio::stderr(),
            rustix::stdio::stdout(),
            rustix::stdio::stdin(),
        ];
        let fd = match std_fds.into_iter().find(|fd| rustix::termios::isatty(fd)) {
            Some(fd) => fd
                .try_clone_to_owned()
                .map_err(|e| OciError::io("dup", "the terminal", e))?,
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .map_err(|e| OciError::io("open", "/dev/tty", e))?
                .into(),
        };
        let saved = tcgetattr(&fd).map_err(|e| errno("tcgetattr", e))?;
        Ok(HostConsole { fd, saved })
    }

    fn make_raw(&self) -> Result<()> {
        let mut raw = self.saved.clone();
        raw.make_raw();
        tcsetattr(&self.fd, OptionalActions::Now, &raw).map_err(|e| errno("tcsetattr", e))
    }

    /// Copies the caller's window size to the container's pty.
    fn copy_size_to(&self, master: &impl AsFd) {
        if let Ok(ws) = tcgetwinsize(&self.fd)
            && ws.ws_row > 0
            && ws.ws_col > 0
        {
            let _ = resize(master, ws.ws_row, ws.ws_col);
        }
    }
}

impl Drop for HostConsole {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

/// ocirun in the middle of a foreground process's terminal: the caller's stdin goes
/// to the pty master, the master's output to the caller's stdout.
#[derive(Debug)]
pub struct Relay {
    master: OwnedFd,
    host: HostConsole,
    stdin_open: bool,
    master_open: bool,
}

impl Relay {
    pub fn new(master: OwnedFd, host: HostConsole) -> Result<Relay> {
        host.copy_size_to(&master);
        host.make_raw()?;
        Ok(Relay {
            master,
            host,
            stdin_open: true,
            master_open: true,
        })
    }

    /// SIGWINCH: the kernel tells the container's foreground job once the size changes.
    pub fn resize(&self) {
        self.host.copy_size_to(&self.master);
    }

    /// Polls `extra` (the signal fd) together with the relayed fds for up to
    /// `timeout`, moves whatever data is ready, and returns whether `extra` is ready.
    pub fn pump(&mut self, extra: BorrowedFd<'_>, timeout: PollTimeout) -> Result<bool> {
        let stdin = rustix::stdio::stdin();
        let mut fds = vec![PollFd::new(extra, PollFlags::POLLIN)];
        let master_at = self.master_open.then(|| {
            fds.push(PollFd::new(self.master.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let stdin_at = self.stdin_open.then(|| {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(false),
            Err(e) => return Err(OciError::sys("poll", e)),
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let extra_ready = ready(0);
        let master_ready = master_at.is_some_and(ready);
        let stdin_ready = stdin_at.is_some_and(ready);
        drop(fds);
        let mut buf = [0u8; 8192];
        if master_ready {
            match rustix::io::read(&self.master, &mut buf) {
                Ok(0) | Err(Errno::IO) => self.master_open = false,
                Ok(n) => write_all(rustix::stdio::stdout(), &buf[..n])?,
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(e) => return Err(errno("read the pty", e)),
            }
        }
        if stdin_ready {
            match rustix::io::read(stdin, &mut buf) {
                Ok(0) => self.stdin_open = false,
                Ok(n) => write_all(self.master.as_fd(), &buf[..n])?,
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(_) => self.stdin_open = false,
            }
        }
        Ok(extra_ready)
    }

    /// After the process has exited: what it printed that is still buffered (bounded,
    /// in case something left in the container keeps writing).
    pub fn drain(&mut self, extra: BorrowedFd<'_>) -> Result<()> {
        let stdin_was = std::mem::replace(&mut self.stdin_open, false);
        for _ in 0..1024 {
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if !self.master_open || poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
                break;
            }
            self.pump(extra, PollTimeout::ZERO)?;
        }
        self.stdin_open = stdin_was;
        Ok(())
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u8));
            }
            Err(e) => return Err(errno("write", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_socket_rules_match_runc() {
        let sock = Some(Path::new("/s"));
        assert!(check_terminal(true, true, None).is_err());
        assert!(check_terminal(false, true, None).is_ok());
        assert!(check_terminal(true, true, sock).is_ok());
        assert!(check_terminal(false, true, sock).is_err());
        assert!(check_terminal(true, false, sock).is_err());
        assert!(check_terminal(true, false, None).is_ok());
    }
}
