use std::io::Write;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use tracing::instrument;

use crate::container::load;
use crate::container::state::Status;
use crate::error::{OciError, Result};

/// Lets a created container's init exec its process: one byte into the exec FIFO.
#[instrument(skip(root))]
pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = load(root, id)?;
    if c.status != Status::Created {
        return Err(OciError::WrongState {
            op: "start",
            id: id.to_string(),
            status: c.status.to_string(),
        });
    }
    let fifo = c.dir.fifo();
    // Non-blocking: with init gone there is no reader and open fails with ENXIO at once.
    let fd = match open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENXIO | Errno::ENOENT) => {
            return Err(OciError::WrongState {
                op: "start",
                id: id.to_string(),
                status: "stopped (its init is gone)".into(),
            });
        }
        Err(e) => return Err(OciError::sys(format!("open {}", fifo.display()), e)),
    };
    std::fs::File::from(fd)
        .write_all(&[0])
        .map_err(|e| OciError::io("write", &fifo, e))?;
    std::fs::remove_file(&fifo).map_err(|e| OciError::io("remove", &fifo, e))
}
