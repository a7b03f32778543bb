//! Stage 1, `ocirun:[1:BOOT]`: a child of ocirun that joins the namespaces given by path,
//! creates the user namespace (ocirun writes its id maps from outside: only a process
//! in the parent namespace may), then the other namespaces, and forks init so that init
//! is pid 1 of the new pid namespace.
use nix::sched::{setns, unshare};
use nix::unistd::{ForkResult, Gid, Uid, setresgid, setresuid};

use crate::error::{ChildError, OciError};
use crate::process::channel::{Channel, Message};
use crate::process::init::{self, InitContext};
use crate::process::namespaces::{NamespacePlan, clone_flag};
use crate::sys;

/// Never returns: the process exits once init is forked (or on error).
pub fn run(chan: Channel, plan: NamespacePlan, ctx: InitContext<'_>) -> ! {
    let _ = nix::sys::prctl::set_name(c"ocirun:[1:BOOT]");
    match bootstrap(&chan, plan) {
        Ok(ForkResult::Child) => init::run(chan, ctx),
        Ok(ForkResult::Parent { child }) => {
            let code = match chan.send(&Message::InitPid {
                pid: child.as_raw(),
            }) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            crate::sys::exit_now(code)
        }
        Err((stage, e)) => {
            let _ = chan.send(&Message::Error(ChildError {
                stage: stage.to_string(),
                message: e.to_string(),
            }));
            crate::sys::exit_now(1)
        }
    }
}

fn bootstrap(chan: &Channel, plan: NamespacePlan) -> Result<ForkResult, (&'static str, OciError)> {
    chan.expect(&Message::Go, "waiting to join the cgroup")
        .map_err(|e| ("start", e))?;
    for (t, fd) in &plan.join {
        setns(fd, clone_flag(*t))
            .map_err(|e| ("join namespaces", OciError::sys(format!("setns {t}"), e)))?;
    }
    drop(plan.join);
    if plan.new_user {
        unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| ("user namespace", OciError::sys("unshare user", e)))?;
        chan.send(&Message::MapIds)
            .map_err(|e| ("user namespace", e))?;
        chan.expect(&Message::IdsMapped, "waiting for id maps")
            .map_err(|e| ("user namespace", e))?;
    }
    if plan.in_userns {
        // Become root of the user namespace, so files the runtime creates in the rootfs
        // get a mapped owner (an unmapped fsuid fails with EOVERFLOW).
        let root_u = Uid::from_raw(0);
        let root_g = Gid::from_raw(0);
        setresgid(root_g, root_g, root_g).map_err(|e| {
            (
                "user namespace",
                OciError::sys("setgid 0 in the user namespace", e),
            )
        })?;
        setresuid(root_u, root_u, root_u).map_err(|e| {
            (
                "user namespace",
                OciError::sys("setuid 0 in the user namespace", e),
            )
        })?;
    }
    if !plan.create.is_empty() {
        unshare(plan.create).map_err(|e| {
            (
                "namespaces",
                OciError::sys(format!("unshare {:?}", plan.create), e),
            )
        })?;
    }
    sys::fork().map_err(|e| ("fork init", OciError::sys("fork", e)))
}
