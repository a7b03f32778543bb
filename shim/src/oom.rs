//! Live OOM notification for a running task, so that a kill the task survives
//! (a child OOM-killed while the init lives on) is reported too: cgroup v1
//! signals an eventfd registered through `cgroup.event_control` on
//! `memory.oom_control`; cgroup v2 modifies `memory.events`, watched with
//! inotify. Either fd is waited on by the reaper thread ([`Watch`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::error::{Result, ShimError};
use crate::reaper::Watch;

/// v1 notifies when the cgroup goes under OOM, before the killer has picked
/// and counted its victim: the count is looked at again this often...
const RECHECK_EVERY: Duration = Duration::from_millis(20);
/// ...this many times at most after one notification.
const RECHECKS: u32 = 100;

enum Source {
    V1(EventFd),
    V2(Inotify),
}

/// Called on every notification; returns whether it saw new OOM kills
/// (None: the cgroup is gone).
pub type OnEvent = Box<dyn FnMut() -> Option<bool> + Send>;

pub struct OomWatch {
    source: Source,
    on_event: OnEvent,
    rechecks_left: u32,
}

impl OomWatch {
    /// A watch on `cg`'s memory controller, or None when it has none.
    pub fn new(cg: &cgroups::Cgroup, on_event: OnEvent) -> Result<Option<OomWatch>> {
        let source = if cg.is_v2() {
            let Some(dir) = cg.unified_dir() else {
                return Ok(None);
            };
            let events = dir.join("memory.events");
            if !events.exists() {
                return Ok(None);
            }
            let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|e| ShimError::sys("inotify_init", e))?;
            ino.add_watch(&events, AddWatchFlags::IN_MODIFY)
                .map_err(|e| ShimError::io("watching", &events, e.into()))?;
            Source::V2(ino)
        } else {
            let Some(dir) = cg.dir("memory") else {
                return Ok(None);
            };
            let efd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| ShimError::sys("eventfd", e))?;
            let control = dir.join("memory.oom_control");
            // The kernel keeps its own reference: the file is closed right after.
            let oom_control =
                File::open(&control).map_err(|e| ShimError::io("opening", &control, e))?;
            let event_control = dir.join("cgroup.event_control");
            let mut w = File::options()
                .write(true)
                .open(&event_control)
                .map_err(|e| ShimError::io("opening", &event_control, e))?;
            w.write_all(
                format!("{} {}", efd.as_fd().as_raw_fd(), oom_control.as_raw_fd()).as_bytes(),
            )
            .map_err(|e| ShimError::io("registering with", &event_control, e))?;
            Source::V1(efd)
        };
        Ok(Some(OomWatch {
            source,
            on_event,
            rechecks_left: 0,
        }))
    }
}

impl Watch for OomWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1(e) => e.as_fd(),
            Source::V2(i) => i.as_fd(),
        }
    }

    fn ready(&mut self) -> Option<Duration> {
        // Drained either way (both fds are non-blocking): a recheck finds nothing.
        let notified = match &self.source {
            Source::V1(e) => e.read().is_ok(),
            Source::V2(i) => i.read_events().is_ok_and(|v| !v.is_empty()),
        };
        if notified {
            self.rechecks_left = RECHECKS;
        }
        match (self.on_event)() {
            // A cgroup that is gone sends no more kills.
            None => {
                self.rechecks_left = 0;
                None
            }
            Some(true) => {
                self.rechecks_left = 0;
                None
            }
            Some(false) if self.rechecks_left > 0 && matches!(self.source, Source::V1(_)) => {
                self.rechecks_left -= 1;
                Some(RECHECK_EVERY)
            }
            Some(false) => None,
        }
    }
}
