//! Which namespaces the container creates and which it joins, worked out (and the
//! join paths opened) in the parent, before anything is forked or created.
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{OciError, Result};

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces to join, user first and mount last (joining a mount namespace changes
    /// how later paths resolve; joining a user namespace grants the rights for the rest).
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Namespaces to create, except the user namespace.
    pub create: CloneFlags,
    pub new_user: bool,
    pub in_userns: bool,
    pub own_pid_ns: bool,
    pub new_uts: bool,
}

impl NamespacePlan {
    pub fn from_spec(spec: &Spec) -> Result<NamespacePlan> {
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default();
        let mut plan = NamespacePlan {
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_user: false,
            in_userns: false,
            own_pid_ns: false,
            new_uts: false,
        };
        let mut has_mount = false;
        for ns in namespaces {
            let t = ns.typ();
            match t {
                LinuxNamespaceType::User => plan.in_userns = true,
                LinuxNamespaceType::Pid => plan.own_pid_ns = true,
                LinuxNamespaceType::Mount => has_mount = true,
                _ => {}
            }
            match ns.path() {
                Some(p) => plan.join.push((t, open_ns(t, p)?)),
                None if t == LinuxNamespaceType::User => plan.new_user = true,
                None => {
                    if t == LinuxNamespaceType::Uts {
                        plan.new_uts = true;
                    }
                    plan.create |= clone_flag(t);
                }
            }
        }
        if !has_mount {
            return Err(OciError::InvalidConfig(
                "a mount namespace is required to set up the rootfs".into(),
            ));
        }
        let rank = |t: LinuxNamespaceType| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        };
        plan.join.sort_by_key(|(t, _)| rank(*t));
        Ok(plan)
    }
}

fn open_ns(t: LinuxNamespaceType, p: &Path) -> Result<OwnedFd> {
    open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| OciError::InvalidConfig(format!("namespace {t} path {}: {e}", p.display())))
}
