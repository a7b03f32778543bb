//! `pause` / `resume`: the cgroup freezer (v1 freezer.state, v2 cgroup.freeze).
use std::path::Path;

use tracing::instrument;

use crate::container::load;
use crate::container::state::Status;
use crate::error::{OciError, Result};

#[instrument(skip(root))]
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (c, cg) = frozen_target(root, id)?;
    // runc pauses created containers too; they resume to created.
    if !matches!(c, Status::Running | Status::Created) {
        return Err(OciError::WrongState {
            op: "pause",
            id: id.to_string(),
            status: format!("{c}, not running or created"),
        });
    }
    cg.freeze()?;
    Ok(())
}

#[instrument(skip(root))]
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (c, cg) = frozen_target(root, id)?;
    if c != Status::Paused {
        return Err(OciError::WrongState {
            op: "resume",
            id: id.to_string(),
            status: format!("{c}, not paused"),
        });
    }
    cg.thaw()?;
    Ok(())
}

fn frozen_target(root: &Path, id: &str) -> Result<(Status, cgroups::Cgroup)> {
    let c = load(root, id)?;
    let paths = c
        .state
        .as_ref()
        .and_then(|s| s.cgroup.clone())
        .ok_or_else(|| OciError::Unsupported(format!("container {id} has no cgroup")))?;
    Ok((c.status, cgroups::Cgroup::from_paths(paths)))
}
