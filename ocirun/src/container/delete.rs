use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tracing::instrument;

use crate::container::state::{SavedState, Status, process_alive};
use crate::container::{Loaded, load};
use crate::error::{OciError, Result};
use crate::hooks;

#[instrument(skip(root))]
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match load(root, id) {
        Ok(c) => c,
        // runc: deleting what is not there with --force is not an error.
        Err(OciError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match c.status {
        Status::Stopped | Status::Creating | Status::Created => destroy(&c),
        Status::Running | Status::Paused if force => destroy(&c),
        status => Err(OciError::WrongState {
            op: "delete",
            id: id.to_string(),
            status: format!("{status} (use --force)"),
        }),
    }
}

/// Kills whatever is left, removes the cgroup and the state directory.
pub fn destroy(c: &Loaded) -> Result<()> {
    if let Some(s) = &c.state {
        kill_all(s)?;
        if let Some(paths) = &s.cgroup {
            cgroups::Cgroup::from_paths(paths.clone()).destroy()?;
        }
    }
    c.dir.remove()?;
    if let Some(s) = &c.state {
        hooks::poststop(&s.spec, &s.id, &s.bundle);
    }
    Ok(())
}

fn kill_all(s: &SavedState) -> Result<()> {
    let cg = s
        .cgroup
        .as_ref()
        .map(|p| cgroups::Cgroup::from_paths(p.clone()));
    if process_alive(s.init_pid, s.init_start_time) {
        let _ = kill(Pid::from_raw(s.init_pid), Signal::SIGKILL);
    }
    if let Some(cg) = &cg {
        for pid in cg.procs().unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Frozen tasks die only once thawed.
        if cg.is_frozen().unwrap_or(false) {
            cg.thaw()?;
        }
    }
    // The cgroup can only be removed once its tasks are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let init_gone = !process_alive(s.init_pid, s.init_start_time);
        let procs_gone = cg
            .as_ref()
            .map(|c| c.procs().unwrap_or_default().is_empty())
            .unwrap_or(true);
        if init_gone && procs_gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(OciError::Other(format!(
                "processes of container {} did not exit after SIGKILL",
                s.id
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
