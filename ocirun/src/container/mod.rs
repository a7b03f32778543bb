//! The lifecycle commands, one file per verb.
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod start;
pub mod state;
pub mod update;
pub mod wait;

use std::path::Path;

use crate::error::Result;
use state::{ContainerDir, SavedState, Status};

/// A container that exists under --root, with its record and live status.
#[derive(Debug)]
pub struct Loaded {
    pub dir: ContainerDir,
    pub state: Option<SavedState>,
    pub status: Status,
}

pub fn load(root: &Path, id: &str) -> Result<Loaded> {
    let id = common::ContainerId::new(id)?;
    let dir = ContainerDir::new(root, &id);
    let state = dir.load()?;
    let status = match &state {
        Some(s) => dir.status(s),
        None => Status::Creating,
    };
    Ok(Loaded { dir, state, status })
}
