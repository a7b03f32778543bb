//! A typed message channel between ocirun and the processes it forks: a SOCK_SEQPACKET
//! socketpair carrying one JSON message per packet, so message boundaries survive and
//! a dead peer shows up as end-of-file instead of a hang.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use serde::{Deserialize, Serialize};

use crate::error::{ChildError, OciError, Result};

const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// parent -> bootstrap: the bootstrap process is in the container's cgroup; go on.
    Go,
    /// bootstrap -> parent: I have unshared the user namespace; write my id maps.
    MapIds,
    /// parent -> bootstrap: the id maps are written.
    IdsMapped,
    /// bootstrap -> parent: the container's init has this pid (in the parent's view).
    InitPid { pid: i32 },
    /// parent -> init (or exec'd process): InitPid has been read. The forked process
    /// shares the channel with the one that forked it and waits for this before it
    /// sends anything, so that nothing it says can overtake InitPid.
    PidKnown,
    /// init -> parent: the rootfs is mounted and pivot_root is next; run the prestart
    /// and createRuntime hooks (sent only when the spec has some).
    RunHooks,
    /// parent -> init: those hooks succeeded; go on.
    HooksDone,
    /// init -> parent: the container is set up and waits for start.
    Ready,
    /// parent -> init: exec the process now (`run`, which needs no exec fifo).
    Start,
    /// child -> parent: a setup stage failed.
    Error(ChildError),
    /// exec'd process -> parent: the pty master rides along (SCM_RIGHTS), for a
    /// foreground process whose terminal ocirun relays.
    Console,
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair; both ends are close-on-exec, so the container process never
    /// inherits one and a successful exec reads as end-of-file on the other side.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| OciError::sys("socketpair", e))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| OciError::Channel(e.to_string()))?;
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(OciError::Channel(format!("send: {e}"))),
            }
        }
    }

    /// `msg` with `fd` attached.
    pub fn send_with_fd(&self, msg: &Message, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| OciError::Channel(e.to_string()))?;
        crate::process::fdpass::send_with_fd(self.fd.as_fd(), &data, fd)
            .map_err(|e| OciError::Channel(format!("send: {e}")))
    }

    /// Waits for `expected` with an fd attached, and returns the fd.
    pub fn expect_fd(&self, expected: &Message, waiting_for: &str) -> Result<OwnedFd> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, fd) = crate::process::fdpass::recv_with_fd(&self.fd, &mut buf)
            .map_err(|e| OciError::Channel(format!("recv: {e}")))?;
        if n == 0 {
            return Err(OciError::Channel(format!(
                "container process exited while {waiting_for}"
            )));
        }
        let msg: Message = serde_json::from_slice(&buf[..n])
            .map_err(|e| OciError::Channel(format!("bad message: {e}")))?;
        match (msg, fd) {
            (m, Some(fd)) if &m == expected => Ok(fd),
            (Message::Error(e), _) => Err(OciError::Child(e)),
            (other, _) => Err(OciError::Channel(format!(
                "expected {waiting_for}, got {other:?}"
            ))),
        }
    }

    /// The next message with the fd attached to it, if any; None when the other side
    /// has closed.
    pub fn recv_with_fd(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (n, fd) = crate::process::fdpass::recv_with_fd(&self.fd, &mut buf)
            .map_err(|e| OciError::Channel(format!("recv: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| OciError::Channel(format!("bad message: {e}")))?;
        Ok(Some((msg, fd)))
    }

    /// The next message, or None when the other side has closed (exited or exec'd).
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(OciError::Channel(format!("recv: {e}"))),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| OciError::Channel(format!("bad message: {e}")))
    }

    /// Waits for `expected`; a child error or an early close becomes the error.
    pub fn expect(&self, expected: &Message, waiting_for: &str) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == expected => Ok(()),
            Some(Message::Error(e)) => Err(OciError::Child(e)),
            Some(other) => Err(OciError::Channel(format!(
                "expected {waiting_for}, got {other:?}"
            ))),
            None => Err(OciError::Channel(format!(
                "container process exited while {waiting_for}"
            ))),
        }
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_messages_and_reports_close() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Message::InitPid { pid: 42 }).unwrap();
        a.send(&Message::Error(ChildError {
            stage: "mount".into(),
            message: "boom".into(),
        }))
        .unwrap();
        assert_eq!(b.recv().unwrap(), Some(Message::InitPid { pid: 42 }));
        let err = b.expect(&Message::Ready, "ready").unwrap_err();
        assert_eq!(err.to_string(), "container init: mount: boom");
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
