use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use tracing::instrument;

use crate::container::load;
use crate::container::state::{Status, process_alive};
use crate::error::{OciError, Result};
use crate::hooks;
use crate::process::init::INIT_NAME;

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
    std::fs::remove_file(&fifo).map_err(|e| OciError::io("remove", &fifo, e))?;
    if let Some(s) = &c.state
        && !hooks::HookKind::Poststart.of(&s.spec).is_empty()
    {
        wait_for_exec(s.init_pid, s.init_start_time);
        hooks::poststart(&s.spec, &s.id, s.init_pid, &s.bundle);
    }
    Ok(())
}

/// Waits until init has exec'd the user's process (its name is no longer init's), or
/// is gone: poststart hooks run after the process started, not merely after start.
fn wait_for_exec(pid: i32, start_time: u64) {
    let comm = format!("/proc/{pid}/comm");
    let mut delay = Duration::from_millis(1);
    while process_alive(pid, start_time)
        && std::fs::read_to_string(&comm).is_ok_and(|c| c.trim_end() == INIT_NAME)
    {
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
