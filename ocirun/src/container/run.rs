use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tracing::instrument;

use crate::container::create::{CreateOptions, create};
use crate::container::state::Status;
use crate::container::{Loaded, delete};
use crate::error::{OciError, Result};
use crate::hooks;
use crate::process::channel::Message;

/// Signals a foreground `run` passes on to the container's init, as runc does.
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

/// create + start in one process. Returns the exit code ocirun should exit with: the
/// container's own, 128+N when a signal killed it, 0 when detached.
#[instrument(skip_all, fields(container_id = opts.id))]
pub fn run(opts: &CreateOptions<'_>, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        // The bootstrap process exits once init is forked; as subreaper, ocirun becomes
        // init's parent and can wait for it.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| OciError::sys("PR_SET_CHILD_SUBREAPER", e))?;
    }
    let created = create(opts)?;
    let init = Pid::from_raw(created.state.init_pid);
    let cleanup = |status| {
        let _ = delete::destroy(&Loaded {
            dir: crate::container::state::ContainerDir {
                id: created.dir.id.clone(),
                dir: created.dir.dir.clone(),
            },
            state: Some(created.state.clone()),
            status,
        });
    };
    let started = created.chan.send(&Message::Start).and_then(|()| {
        // End-of-file means the exec succeeded (the channel is close-on-exec).
        match created.chan.recv()? {
            None => Ok(()),
            Some(Message::Error(e)) => Err(OciError::Child(e)),
            Some(other) => Err(OciError::Channel(format!("unexpected {other:?}"))),
        }
    });
    if let Err(e) = started {
        cleanup(Status::Stopped);
        return Err(e);
    }
    hooks::poststart(
        &created.state.spec,
        &created.state.id,
        created.state.init_pid,
        &created.state.bundle,
    );
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding_signals(init);
    if !keep {
        cleanup(Status::Stopped);
    }
    code
}

fn wait_forwarding_signals(init: Pid) -> Result<i32> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| OciError::sys("sigprocmask", e))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| OciError::sys("signalfd", e))?;
    loop {
        // Reap everything that has exited (orphans of the container come to us too, as
        // subreaper); stop when init is among them.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(OciError::sys("waitpid", e)),
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo != Signal::SIGCHLD as i32
                    && let Ok(sig) = Signal::try_from(signo)
                {
                    let _ = kill(init, sig);
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(OciError::sys("read signalfd", e)),
        }
    }
}
