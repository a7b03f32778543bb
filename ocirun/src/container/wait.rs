//! Waiting in the foreground for a container process (`run`'s init, `exec`'s process):
//! signals sent to ocirun go on to the process, its exit becomes ocirun's exit code,
//! and with a terminal the pty is relayed meanwhile.
use std::os::fd::AsFd;

use nix::poll::PollTimeout;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{OciError, Result};
use crate::process::tty::Relay;

/// Signals a foreground ocirun passes on to the process, as runc does.
const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Waits for `pid` (a child of ocirun, directly or as subreaper) and returns its exit
/// code, 128+N when signal N killed it.
pub fn wait_forwarding_signals(pid: Pid, mut relay: Option<Relay>) -> Result<i32> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| OciError::sys("sigprocmask", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| OciError::sys("signalfd", e))?;
    loop {
        // Reap everything that has exited (orphans of the container come to us too, as
        // subreaper); stop when the process is among them.
        let code = loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => break Some(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => break Some(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break None,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(OciError::sys("waitpid", e)),
            }
        };
        if let Some(code) = code {
            if let Some(r) = relay.as_mut() {
                r.drain(sfd.as_fd())?;
            }
            return Ok(code);
        }
        if let Some(r) = relay.as_mut() {
            // Relaying until a signal (SIGCHLD included) is pending.
            while !r.pump(sfd.as_fd(), PollTimeout::NONE)? {}
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => {
                if relay.is_none() {
                    // Non-blocking fd: wait for the next signal.
                    let mut fds = [nix::poll::PollFd::new(
                        sfd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
                }
                continue;
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(OciError::sys("read signalfd", e)),
        };
        let signo = info.ssi_signo as i32;
        if signo == Signal::SIGCHLD as i32 {
            continue;
        }
        if signo == Signal::SIGWINCH as i32
            && let Some(r) = relay.as_ref()
        {
            r.resize();
            continue;
        }
        if let Ok(sig) = Signal::try_from(signo) {
            let _ = kill(pid, sig);
        }
    }
}
