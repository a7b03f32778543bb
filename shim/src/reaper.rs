//! The shim is a child subreaper: container inits and exec processes are
//! reparented to it when the runtime exits. One thread owns `waitpid(-1)`;
//! every exit (of those and of the runtime/publish commands the shim runs)
//! lands in one table that waiters take from, so no caller ever races the
//! reaper for a status.

use std::collections::HashMap;
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::error::{Result, ShimError};

/// Exit of a process as containerd reports it: the code, or 128+signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

type Listener = Box<dyn Fn(i32) + Send + Sync>;

pub struct Reaper {
    exits: Mutex<HashMap<i32, Exit>>,
    cond: Condvar,
    listener: OnceLock<Listener>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

/// Unclaimed exits beyond this many are dropped oldest-first, so stray
/// reparented orphans cannot grow the table without bound.
const MAX_UNCLAIMED: usize = 1024;

impl Reaper {
    /// Blocks SIGCHLD in the calling thread (call it before any other thread
    /// exists so that every thread inherits the mask) and starts the reaper.
    pub fn start() -> Result<Arc<Reaper>> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| ShimError::sys("blocking SIGCHLD", e))?;
        let sfd = SignalFd::new(&mask).map_err(|e| ShimError::sys("signalfd", e))?;
        let reaper = Arc::new(Reaper {
            exits: Mutex::new(HashMap::new()),
            cond: Condvar::new(),
            listener: OnceLock::new(),
        });
        let r = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                loop {
                    match sfd.read_signal() {
                        Ok(_) | Err(Errno::EINTR) => r.reap_all(),
                        Err(e) => {
                            tracing::error!("signalfd read: {e}");
                            return;
                        }
                    }
                }
            })
            .map_err(|e| ShimError::sys("spawning reaper thread", e))?;
        Ok(reaper)
    }

    /// Called with the pid of every exit the reaper records.
    pub fn set_listener(&self, f: impl Fn(i32) + Send + Sync + 'static) {
        let _ = self.listener.set(Box::new(f));
    }

    fn reap_all(&self) {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as u32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    return;
                }
            };
            let pid = pid.as_raw();
            {
                let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
                if exits.len() >= MAX_UNCLAIMED
                    && let Some(oldest) = exits.iter().min_by_key(|(_, e)| e.at).map(|(p, _)| *p)
                {
                    exits.remove(&oldest);
                }
                exits.insert(
                    pid,
                    Exit {
                        status,
                        at: SystemTime::now(),
                    },
                );
            }
            self.cond.notify_all();
            if let Some(l) = self.listener.get() {
                l(pid);
            }
        }
    }

    /// The recorded exit of `pid`, removing it from the table.
    pub fn take(&self, pid: i32) -> Option<Exit> {
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid)
    }

    /// Waits for a child the shim spawned itself. Never call `Child::wait`:
    /// the reaper may already have collected it.
    pub fn wait_child(&self, child: &Child) -> Exit {
        let pid = child.id() as i32;
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = exits.remove(&pid) {
                return e;
            }
            exits = self.cond.wait(exits).unwrap_or_else(|p| p.into_inner());
        }
    }
}
