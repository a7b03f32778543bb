use std::path::Path;
use std::str::FromStr;

use nix::sys::signal::{Signal, kill as send};
use nix::unistd::Pid;
use tracing::instrument;

use crate::container::load;
use crate::container::state::Status;
use crate::error::{OciError, Result};

/// "KILL", "SIGKILL", "kill" and "9" all name SIGKILL.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| OciError::InvalidSignal(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| OciError::InvalidSignal(s.to_string()))
}

#[instrument(skip(root))]
pub fn kill(root: &Path, id: &str, signal: Option<&str>, all: bool) -> Result<()> {
    let sig = parse_signal(signal.unwrap_or("SIGTERM"))?;
    let c = load(root, id)?;
    let state = match (&c.state, c.status) {
        (Some(s), Status::Created | Status::Running | Status::Paused) => s,
        _ => {
            return Err(OciError::WrongState {
                op: "kill",
                id: id.to_string(),
                status: c.status.to_string(),
            });
        }
    };
    if all && let Some(paths) = &state.cgroup {
        let cg = cgroups::Cgroup::from_paths(paths.clone());
        for pid in cg.procs()? {
            let _ = send(Pid::from_raw(pid), sig);
        }
        // A frozen process only acts on the signal once thawed.
        if c.status == Status::Paused && matches!(sig, Signal::SIGKILL) {
            cg.thaw()?;
        }
        return Ok(());
    }
    send(Pid::from_raw(state.init_pid), sig)
        .map_err(|e| OciError::sys(format!("kill {} {sig}", state.init_pid), e))?;
    // As runc: SIGKILL to a paused container thaws it, or the kill would wait for a
    // resume; other signals stay pending until then.
    if c.status == Status::Paused
        && matches!(sig, Signal::SIGKILL)
        && let Some(paths) = &state.cgroup
    {
        cgroups::Cgroup::from_paths(paths.clone()).thaw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        for s in ["KILL", "SIGKILL", "kill", "9"] {
            assert_eq!(parse_signal(s).unwrap(), Signal::SIGKILL);
        }
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
