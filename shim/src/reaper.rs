//! The shim is a child subreaper: container inits and exec processes are
//! reparented to it when the runtime exits. One thread owns `waitpid(-1)`;
//! every exit (of those and of the runtime/publish commands the shim runs)
//! lands in one table that waiters take from, so no caller ever races the
//! reaper for a status.
//!
//! The same thread waits (epoll) on the other kernel notifications a task
//! needs, such as its memory cgroup's OOM events ([`Watch`]), so that
//! watching costs an fd per task and no thread.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::error::{Result, ShimError};

/// Exit of a process as containerd reports it: the code, or 128+signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

type Listener = Box<dyn Fn(i32) + Send + Sync>;

/// A readable fd the reaper thread waits on besides SIGCHLD.
pub trait Watch: Send {
    fn fd(&self) -> BorrowedFd<'_>;
    /// The fd is readable (drain it), or the delay this asked for last time
    /// has passed. Returns when to be called again without an event.
    /// Runs on the reaper thread with the watch table locked: it must not
    /// call [`Reaper::watch`]/[`Reaper::unwatch`].
    fn ready(&mut self) -> Option<Duration>;
}

struct Watched {
    watch: Box<dyn Watch>,
    again_at: Option<Instant>,
}

/// epoll token of the signalfd; watches get tokens from 1.
const SIGNAL_TOKEN: u64 = 0;

pub struct Reaper {
    exits: Mutex<HashMap<i32, Exit>>,
    cond: Condvar,
    listener: OnceLock<Listener>,
    epoll: Epoll,
    watches: Mutex<HashMap<u64, Watched>>,
    next_token: AtomicU64,
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
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| ShimError::sys("signalfd", e))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| ShimError::sys("epoll_create", e))?;
        epoll
            .add(&sfd, EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN))
            .map_err(|e| ShimError::sys("epoll_ctl", e))?;
        let reaper = Arc::new(Reaper {
            exits: Mutex::new(HashMap::new()),
            cond: Condvar::new(),
            listener: OnceLock::new(),
            epoll,
            watches: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(SIGNAL_TOKEN + 1),
        });
        let r = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || r.run(&sfd))
            .map_err(|e| ShimError::sys("spawning reaper thread", e))?;
        Ok(reaper)
    }

    fn run(&self, sfd: &SignalFd) {
        let mut events = [EpollEvent::empty(); 8];
        loop {
            let timeout = self.next_timeout();
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("epoll_wait: {e}");
                    return;
                }
            };
            let mut sigchld = false;
            let mut ready = Vec::new();
            for ev in &events[..n] {
                if ev.data() == SIGNAL_TOKEN {
                    sigchld = true;
                } else {
                    ready.push(ev.data());
                }
            }
            // Watches first: an OOM kill is counted before the exit it caused.
            self.run_watches(&ready);
            if sigchld {
                // Drained before reaping: a SIGCHLD arriving meanwhile wakes us again.
                while let Ok(Some(_)) = sfd.read_signal() {}
                self.reap_all();
            }
        }
    }

    fn next_timeout(&self) -> EpollTimeout {
        let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        match watches.values().filter_map(|w| w.again_at).min() {
            None => EpollTimeout::NONE,
            Some(at) => {
                // Rounded up so that the wake-up is never early.
                let left = at.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
                EpollTimeout::try_from(left).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn run_watches(&self, ready: &[u64]) {
        let now = Instant::now();
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        for (token, w) in watches.iter_mut() {
            if ready.contains(token) || w.again_at.is_some_and(|at| at <= now) {
                w.again_at = w.watch.ready().map(|d| Instant::now() + d);
            }
        }
    }

    /// Starts waiting on `watch`'s fd in the reaper thread; returns its token
    /// for [`Reaper::unwatch`].
    pub fn watch(&self, watch: Box<dyn Watch>) -> Result<u64> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        self.epoll
            .add(watch.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|e| ShimError::sys("epoll_ctl", e))?;
        watches.insert(
            token,
            Watched {
                watch,
                again_at: None,
            },
        );
        Ok(token)
    }

    /// Stops a watch and closes its fd.
    pub fn unwatch(&self, token: u64) {
        let removed = self
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&token);
        if let Some(w) = removed {
            let _ = self.epoll.delete(w.watch.fd());
        }
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
