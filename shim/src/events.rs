//! Task events go to containerd through its publish binary
//! (`<bin> --address A publish --topic T --namespace N`, the event as a
//! protobuf `Any` on stdin). A short-lived thread drains the queue in order
//! and retries while the daemon is down, so no RPC ever waits on it.

use std::collections::VecDeque;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message;
use protobuf::well_known_types::any::Any;

use crate::reaper::Reaper;

/// How long one event is retried before it is dropped (logged).
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

type Pending = (&'static str, Vec<u8>);

#[derive(Debug)]
pub struct Publisher {
    binary: String,
    address: String,
    namespace: String,
    reaper: Arc<Reaper>,
    /// Pending (topic, encoded event), and whether a drain thread runs.
    queue: Mutex<(VecDeque<Pending>, bool)>,
}

impl Publisher {
    pub fn new(
        binary: String,
        address: String,
        namespace: String,
        reaper: Arc<Reaper>,
    ) -> Arc<Self> {
        Arc::new(Publisher {
            binary,
            address,
            namespace,
            reaper,
            queue: Mutex::new((VecDeque::new(), false)),
        })
    }

    pub fn publish<E: protobuf::MessageFull>(self: &Arc<Self>, topic: &'static str, event: &E) {
        if self.binary.is_empty() {
            return;
        }
        let any = match Any::pack(event) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("encoding {topic} event: {e}");
                return;
            }
        };
        // containerd resolves event types by their bare proto name.
        let any = Any {
            type_url: E::descriptor().full_name().to_string(),
            value: any.value,
            ..Default::default()
        };
        let bytes = match any.write_to_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("encoding {topic} event: {e}");
                return;
            }
        };
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.0.push_back((topic, bytes));
        if q.1 {
            return;
        }
        q.1 = true;
        drop(q);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("publish".into())
            .stack_size(128 * 1024)
            .spawn(move || me.drain());
        if let Err(e) = spawned {
            tracing::warn!("spawning publisher: {e}");
            self.queue.lock().unwrap_or_else(|p| p.into_inner()).1 = false;
        }
    }

    /// Waits, at most `limit`, until every queued event has been handed to the
    /// publish binary (or given up on). A shim that exits first loses the events
    /// of its last moments, TaskDelete among them.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let idle = {
                let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                q.0.is_empty() && !q.1
            };
            if idle {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn drain(&self) {
        loop {
            let next = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.0.pop_front() {
                    Some(e) => e,
                    None => {
                        q.1 = false;
                        return;
                    }
                }
            };
            let start = Instant::now();
            let mut delay = Duration::from_millis(100);
            while let Err(e) = self.send(next.0, &next.1) {
                if start.elapsed() > GIVE_UP_AFTER {
                    tracing::error!("dropping {} event after retries: {e}", next.0);
                    break;
                }
                tracing::debug!("publishing {}: {e}; retrying", next.0);
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }

    fn send(&self, topic: &str, bytes: &[u8]) -> Result<(), String> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--address", &self.address, "publish", "--topic", topic])
            .args(["--namespace", &self.namespace])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(bytes);
        }
        let exit = self.reaper.wait_child(&child);
        if exit.status == 0 {
            Ok(())
        } else {
            Err(format!("publish exited with {}", exit.status))
        }
    }
}
