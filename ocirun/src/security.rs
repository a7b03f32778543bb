//! The process's identity and privileges: rlimits, user and groups, capabilities and
//! no_new_privs, applied in the order the kernel requires.
use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process};

use crate::error::{OciError, Result};
use crate::sys;

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as R;
    match t {
        R::RlimitCpu => libc::RLIMIT_CPU,
        R::RlimitFsize => libc::RLIMIT_FSIZE,
        R::RlimitData => libc::RLIMIT_DATA,
        R::RlimitStack => libc::RLIMIT_STACK,
        R::RlimitCore => libc::RLIMIT_CORE,
        R::RlimitRss => libc::RLIMIT_RSS,
        R::RlimitNproc => libc::RLIMIT_NPROC,
        R::RlimitNofile => libc::RLIMIT_NOFILE,
        R::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        R::RlimitAs => libc::RLIMIT_AS,
        R::RlimitLocks => libc::RLIMIT_LOCKS,
        R::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        R::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        R::RlimitNice => libc::RLIMIT_NICE,
        R::RlimitRtprio => libc::RLIMIT_RTPRIO,
        R::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Applied while still privileged: raising a hard limit needs CAP_SYS_RESOURCE.
pub fn set_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().as_deref().unwrap_or_default() {
        sys::setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard())
            .map_err(|e| OciError::sys(format!("setrlimit {}", r.typ()), e))?;
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = Cap::from_str(&name)
            .map_err(|_| OciError::InvalidConfig(format!("unknown capability {name}")))?;
        out.insert(cap);
    }
    Ok(out)
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The capability sets to apply, parsed before any privilege is dropped so that an
/// unknown name fails early.
#[derive(Debug, Default)]
pub struct CapPlan {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapPlan {
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapPlan> {
        let Some(c) = c else {
            return Ok(CapPlan::default());
        };
        Ok(CapPlan {
            bounding: to_caps(c.bounding())?,
            effective: to_caps(c.effective())?,
            permitted: to_caps(c.permitted())?,
            inheritable: to_caps(c.inheritable())?,
            ambient: to_caps(c.ambient())?,
        })
    }

    /// Drops what is not in the bounding set; needs CAP_SETPCAP, so it comes before the
    /// switch to the container user.
    pub fn drop_bounding(&self) -> Result<()> {
        let last = last_cap();
        for cap in caps::all() {
            if cap.index() > last || self.bounding.contains(&cap) {
                continue;
            }
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| OciError::Other(format!("drop {cap} from the bounding set: {e}")))?;
        }
        Ok(())
    }

    /// The other four sets, after the uid switch (which clears the effective set).
    pub fn apply(&self) -> Result<()> {
        let err = |set: &str, e: caps::errors::CapsError| {
            OciError::Other(format!("set {set} capabilities: {e}"))
        };
        caps::set(None, CapSet::Effective, &self.effective).map_err(|e| err("effective", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(|e| err("permitted", e))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| err("inheritable", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
        for cap in &self.ambient {
            // The kernel refuses an ambient cap that is not both permitted and
            // inheritable; runc warns and goes on, so do we.
            if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
                tracing::debug!("cannot raise ambient capability {cap}: {e}");
            }
        }
        Ok(())
    }
}

/// Switches to the container's user and groups, keeping the permitted capabilities
/// across setuid (PR_SET_KEEPCAPS) so `CapPlan::apply` can set them after.
pub fn switch_user(process: &Process, setgroups_allowed: bool) -> Result<()> {
    let user = process.user();
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    if setgroups_allowed {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        setgroups(&groups).map_err(|e| OciError::sys("setgroups", e))?;
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| OciError::sys("PR_SET_KEEPCAPS", e))?;
    setresgid(gid, gid, gid).map_err(|e| OciError::sys(format!("setgid {gid}"), e))?;
    setresuid(uid, uid, uid).map_err(|e| OciError::sys(format!("setuid {uid}"), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| OciError::sys("PR_SET_KEEPCAPS", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_capability_names_map_to_kernel_caps() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL","CAP_SYS_ADMIN"],"effective":["CAP_NET_BIND_SERVICE"]}"#,
        )
        .unwrap();
        let plan = CapPlan::from_spec(Some(&spec)).unwrap();
        assert!(plan.bounding.contains(&Cap::CAP_KILL));
        assert!(plan.bounding.contains(&Cap::CAP_SYS_ADMIN));
        assert_eq!(plan.effective.len(), 1);
        assert!(plan.effective.contains(&Cap::CAP_NET_BIND_SERVICE));
    }

    #[test]
    fn every_spec_capability_is_known_to_the_caps_crate() {
        for cap in caps::all() {
            let json = format!("[\"{cap}\"]");
            let set: Capabilities = serde_json::from_str(&json).unwrap();
            assert_eq!(to_caps(&Some(set)).unwrap().len(), 1, "{cap}");
        }
    }
}
