use nix::unistd::Pid;
use tracing::instrument;

use crate::container::create::{CreateOptions, create};
use crate::container::state::Status;
use crate::container::wait::wait_forwarding_signals;
use crate::container::{Loaded, delete};
use crate::error::{OciError, Result};
use crate::hooks;
use crate::process::channel::Message;
use crate::process::tty::{HostConsole, Relay};

/// create + start in one process. Returns the exit code ocirun should exit with: the
/// container's own, 128+N when a signal killed it, 0 when detached.
#[instrument(skip_all, fields(container_id = opts.id))]
pub fn run(opts: &CreateOptions<'_>, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        // The bootstrap process exits once init is forked; as subreaper, ocirun becomes
        // init's parent and can wait for it.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| OciError::sys("PR_SET_CHILD_SUBREAPER", e))?;
    }
    // The caller's terminal is needed only to relay a terminal in the foreground; runc
    // looks for it before creating anything, and so fails early without one.
    let host_console = if !detach && process_terminal(opts)? {
        Some(HostConsole::open()?)
    } else {
        None
    };
    let mut created = create(opts)?;
    let console = created.console.take();
    let init = Pid::from_raw(created.state.init_pid);
    let cleanup = |status| {
        let _ = delete::destroy(&Loaded {
            dir: crate::container::state::ContainerDir {
                id: created.dir.id.clone(),
                dir: created.dir.dir.clone(),
            },
            state: Some(created.state.clone()),
            status,
        });
    };
    // Sized and in raw mode before the process runs, so it sees the caller's size.
    let relay = match (console, host_console) {
        (Some(master), Some(host)) => match Relay::new(master, host) {
            Ok(r) => Some(r),
            Err(e) => {
                cleanup(Status::Stopped);
                return Err(e);
            }
        },
        _ => None,
    };
    let started = created.chan.send(&Message::Start).and_then(|()| {
        // End-of-file means the exec succeeded (the channel is close-on-exec).
        match created.chan.recv()? {
            None => Ok(()),
            Some(Message::Error(e)) => Err(OciError::Child(e)),
            Some(other) => Err(OciError::Channel(format!("unexpected {other:?}"))),
        }
    });
    if let Err(e) = started {
        cleanup(Status::Stopped);
        return Err(e);
    }
    hooks::poststart(
        &created.state.spec,
        &created.state.id,
        created.state.init_pid,
        &created.state.bundle,
    );
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding_signals(init, relay);
    if !keep {
        cleanup(Status::Stopped);
    }
    code
}

fn process_terminal(opts: &CreateOptions<'_>) -> Result<bool> {
    let bundle = crate::spec::load_bundle(opts.bundle)?;
    Ok(bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false))
}
