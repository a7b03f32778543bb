//! `events`: runc's JSON lines. `--stats` prints one stats event; otherwise a stats
//! event every interval and an `oom` event whenever the OOM killer struck in the
//! container's cgroup (found by polling its oom_kill counter), until the container stops.
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::instrument;

use crate::container::load;
use crate::container::state::{Status, process_alive};
use crate::error::{OciError, Result};

/// How often the OOM counter and the container's liveness are looked at.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    typ: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<cgroups::EventStats>,
}

#[instrument(skip(root))]
pub fn events(root: &Path, id: &str, stats_only: bool, interval: &str) -> Result<()> {
    let interval = parse_duration(interval)?;
    if interval.is_zero() {
        return Err(OciError::InvalidConfig(
            "--interval must be greater than 0".into(),
        ));
    }
    let c = load(root, id)?;
    let state = match (&c.state, c.status) {
        (Some(s), Status::Created | Status::Running | Status::Paused) => s,
        _ => {
            return Err(OciError::WrongState {
                op: "get events of",
                id: id.to_string(),
                status: c.status.to_string(),
            });
        }
    };
    let paths = state
        .cgroup
        .clone()
        .ok_or_else(|| OciError::Unsupported(format!("container {id} has no cgroup")))?;
    let cg = cgroups::Cgroup::from_paths(paths);
    if stats_only {
        return emit(&Event {
            typ: "stats",
            id,
            data: Some(cg.event_stats()?),
        });
    }
    let mut ooms = cg.oom_kill_count().unwrap_or(0);
    let mut next_stats = Instant::now() + interval;
    while process_alive(state.init_pid, state.init_start_time) {
        let count = cg.oom_kill_count().unwrap_or(ooms);
        for _ in ooms..count {
            emit(&Event {
                typ: "oom",
                id,
                data: None,
            })?;
        }
        ooms = ooms.max(count);
        let now = Instant::now();
        if now >= next_stats {
            // As runc: a failed read is logged and the next tick tries again.
            match cg.event_stats() {
                Ok(s) => emit(&Event {
                    typ: "stats",
                    id,
                    data: Some(s),
                })?,
                Err(e) => tracing::error!("stats of {id}: {e}"),
            }
            next_stats += interval;
            if next_stats < now {
                next_stats = now + interval;
            }
        }
        std::thread::sleep(POLL.min(next_stats.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

fn emit(e: &Event<'_>) -> Result<()> {
    let line = serde_json::to_string(e).map_err(|e| OciError::Other(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| OciError::io("write", "stdout", e))
}

/// A Go duration ("5s", "1m30s", "250ms", "1.5h"); a bare 0 is zero.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || OciError::InvalidConfig(format!("invalid duration {s:?}"));
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[u_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn oom_event_has_no_data() {
        let e = Event {
            typ: "oom",
            id: "c",
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"oom","id":"c"}"#
        );
    }
}
