//! Following a container's json-file log as the shim writes it: `logs -f` and
//! attach read the file, so output reaches clients without passing through us on
//! its way to disk, and a restart of engined loses nothing.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventStream, Inotify, WatchMask};
use jsonlog::{Entry, Follower};

/// A backstop for an event the watch did not see (or could not be set up for).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Wakes a follower when something in the log's directory changes: appends,
/// and the rename and create of a rotation.
pub struct LogWatch {
    events: Option<EventStream<Vec<u8>>>,
}

impl std::fmt::Debug for LogWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWatch")
            .field("inotify", &self.events.is_some())
            .finish()
    }
}

impl LogWatch {
    /// Watches the directory of `log`. Without inotify (out of watches) it
    /// still works, by polling.
    pub fn new(log: &Path) -> Self {
        let events = log.parent().and_then(|dir| {
            let ino = Inotify::init().ok()?;
            ino.watches()
                .add(
                    dir,
                    WatchMask::MODIFY
                        | WatchMask::CREATE
                        | WatchMask::MOVED_TO
                        | WatchMask::MOVED_FROM,
                )
                .ok()?;
            ino.into_event_stream(vec![0u8; 4096]).ok()
        });
        Self { events }
    }

    /// Returns after the next change (or a short while).
    pub async fn changed(&mut self) {
        match &mut self.events {
            Some(events) => {
                let _ = tokio::time::timeout(POLL_EVERY, events.next()).await;
            }
            None => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// A log being followed: the file reader and its wake-ups.
#[derive(Debug)]
pub struct LogTail {
    follower: Follower,
    watch: LogWatch,
}

impl LogTail {
    /// From the end of the log: what is written from now on.
    pub fn from_end(log: &Path) -> Self {
        let watch = LogWatch::new(log);
        let follower = Follower::from_end(log);
        Self { follower, watch }
    }

    /// From byte `offset` of the live file (where a read of the past stopped).
    pub fn from_offset(log: &Path, offset: u64) -> Self {
        let watch = LogWatch::new(log);
        let follower = Follower::from_offset(log, offset);
        Self { follower, watch }
    }

    /// What was written since the last call (may be nothing).
    pub fn read_new(&mut self) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Err(e) = self.follower.read_new(&mut out) {
            tracing::debug!(error = %e, "reading the log");
        }
        out
    }

    pub async fn changed(&mut self) {
        self.watch.changed().await;
    }
}
