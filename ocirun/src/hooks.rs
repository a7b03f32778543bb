//! OCI lifecycle hooks: each hook is a program that gets the container's state as JSON
//! on stdin. Where (which namespaces, which root) a hook runs is decided by its caller:
//! prestart/createRuntime/poststart/poststop by the runtime, createContainer and
//! startContainer by the container's init.
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::memfd::{MFdFlags, memfd_create};
use oci_spec::runtime::{Hook, Spec};
use tracing::instrument;

use crate::error::{OciError, Result};
use crate::process::channel::{Channel, Message};

/// How much of a failed hook's output goes into the error message.
const MAX_OUTPUT_IN_ERROR: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }

    /// The spec's hooks of this kind (empty when none).
    pub fn of(self, spec: &Spec) -> &[Hook] {
        let Some(h) = spec.hooks().as_ref() else {
            return &[];
        };
        #[allow(deprecated)]
        let list = match self {
            HookKind::Prestart => h.prestart(),
            HookKind::CreateRuntime => h.create_runtime(),
            HookKind::CreateContainer => h.create_container(),
            HookKind::StartContainer => h.start_container(),
            HookKind::Poststart => h.poststart(),
            HookKind::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// The state document a hook reads on stdin (runtime spec "State"): `pid` is left out
/// once the container has stopped and `annotations` when there are none, as runc does.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    /// Field order as runc writes it.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct State<'a> {
        oci_version: &'a str,
        id: &'a str,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
        bundle: &'a Path,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: &'a BTreeMap<String, String>,
    }
    let doc = State {
        oci_version: "1.0.2",
        id,
        status,
        pid: (pid > 0).then_some(pid),
        bundle,
        annotations,
    };
    // Strings, a number and a map of strings always serialize.
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// The annotations of a spec, ordered.
pub fn annotations_of(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Runs the hooks in order; the first failure stops the rest and is the error
/// (prestart, createRuntime, createContainer, startContainer).
#[instrument(skip(hooks, state), fields(hook = kind.as_str(), count = hooks.len()))]
pub fn run_all(kind: HookKind, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state).map_err(|reason| OciError::Hook {
            kind: kind.as_str(),
            index: i,
            path: h.path().clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Runs every hook; a failure is logged and the next hook runs anyway (the spec's rule
/// for poststart and poststop).
pub fn run_all_logged(kind: HookKind, hooks: &[Hook], state: &[u8]) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(reason) = run_one(h, state) {
            tracing::warn!(
                "{} hook #{i} {}: {reason}",
                kind.as_str(),
                h.path().display()
            );
        }
    }
}

/// Runs one hook to completion; the error is a reason for the caller to wrap.
fn run_one(h: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let timeout = match h.timeout() {
        None => None,
        Some(t) if t > 0 => Some(Duration::from_secs(t.unsigned_abs())),
        Some(t) => return Err(format!("timeout {t} must be greater than zero")),
    };
    let args = h.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    // No env in the hook means the runtime's environment, as with runc.
    if let Some(env) = h.env() {
        cmd.env_clear();
        for kv in env {
            match kv.split_once('=') {
                Some((k, v)) => cmd.env(k, v),
                None => cmd.env(kv, ""),
            };
        }
    }
    // Output goes to a memfd, not a pipe: a hook that leaves a background child
    // holding a pipe open would otherwise keep us reading forever.
    let out = memfd_create(c"ocirun-hook-output", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| format!("memfd_create: {e}"))?;
    let mut out = std::fs::File::from(out);
    let out2 = out.try_clone().map_err(|e| format!("dup: {e}"))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out2))
        .stderr(Stdio::from(
            out.try_clone().map_err(|e| format!("dup: {e}"))?,
        ));
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state is fine (EPIPE).
        let _ = stdin.write_all(state);
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(1);
    let status = loop {
        if timeout.is_none() {
            break child.wait().map_err(|e| format!("wait: {e}"))?;
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if let Some(t) = timeout
            && started.elapsed() >= t
        {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", t.as_secs()));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let mut output = Vec::new();
    let _ = out.seek(SeekFrom::Start(0));
    let _ = (&mut out)
        .take(MAX_OUTPUT_IN_ERROR as u64)
        .read_to_end(&mut output);
    let text = String::from_utf8_lossy(&output);
    let text = text.trim();
    if text.is_empty() {
        Err(status.to_string())
    } else {
        Err(format!("{status}, output: {text}"))
    }
}

/// Whether the parent runs hooks between init's mounts and its pivot_root (init then
/// asks for them with `RunHooks`).
pub fn parent_runs_hooks(spec: &Spec) -> bool {
    !HookKind::Prestart.of(spec).is_empty() || !HookKind::CreateRuntime.of(spec).is_empty()
}

/// In init, between the mounts and pivot_root: has the parent run prestart and
/// createRuntime (runtime namespace), then runs createContainer itself: in the
/// container's namespaces, with paths still resolved against the host's root.
pub fn init_before_pivot(chan: &Channel, spec: &Spec, id: &str, bundle: &Path) -> Result<()> {
    if parent_runs_hooks(spec) {
        chan.send(&Message::RunHooks)?;
        chan.expect(&Message::HooksDone, "prestart and createRuntime hooks")?;
    }
    let hooks = HookKind::CreateContainer.of(spec);
    if hooks.is_empty() {
        return Ok(());
    }
    let state = state_json(
        id,
        "creating",
        nix::unistd::getpid().as_raw(),
        bundle,
        &annotations_of(spec),
    );
    run_all(HookKind::CreateContainer, hooks, &state)
}

/// In init, once start was given and before the exec: startContainer, in the container.
pub fn init_before_exec(spec: &Spec, id: &str, bundle: &Path) -> Result<()> {
    let hooks = HookKind::StartContainer.of(spec);
    if hooks.is_empty() {
        return Ok(());
    }
    let state = state_json(
        id,
        "created",
        nix::unistd::getpid().as_raw(),
        bundle,
        &annotations_of(spec),
    );
    run_all(HookKind::StartContainer, hooks, &state)
}

/// In the runtime, when init asks: prestart then createRuntime.
pub fn runtime_create_hooks(spec: &Spec, id: &str, init_pid: i32, bundle: &Path) -> Result<()> {
    let state = state_json(id, "creating", init_pid, bundle, &annotations_of(spec));
    run_all(HookKind::Prestart, HookKind::Prestart.of(spec), &state)?;
    run_all(
        HookKind::CreateRuntime,
        HookKind::CreateRuntime.of(spec),
        &state,
    )
}

/// In the runtime, after the user process started; failures are only logged.
pub fn poststart(spec: &Spec, id: &str, init_pid: i32, bundle: &Path) {
    let hooks = HookKind::Poststart.of(spec);
    if hooks.is_empty() {
        return;
    }
    let state = state_json(id, "running", init_pid, bundle, &annotations_of(spec));
    run_all_logged(HookKind::Poststart, hooks, &state);
}

/// In the runtime, once the container is deleted; failures are only logged.
pub fn poststop(spec: &Spec, id: &str, bundle: &Path) {
    let hooks = HookKind::Poststop.of(spec);
    if hooks.is_empty() {
        return;
    }
    let state = state_json(id, "stopped", 0, bundle, &annotations_of(spec));
    run_all_logged(HookKind::Poststop, hooks, &state);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut h = Hook::default();
        h.set_path("/bin/sh".into());
        h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        h.set_timeout(timeout);
        h
    }

    #[test]
    fn state_leaves_out_pid_when_stopped() {
        let s = state_json("a", "stopped", 0, Path::new("/b"), &BTreeMap::new());
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert!(v.get("pid").is_none());
        assert!(v.get("annotations").is_none());
        assert_eq!(v["status"], "stopped");
    }

    #[test]
    fn hook_reads_state_and_failure_carries_output() {
        let ok = hook(&["sh", "-c", "grep -q '\"id\":\"x\"'"], None);
        run_one(&ok, br#"{"id":"x"}"#).unwrap();
        let bad = hook(&["sh", "-c", "echo oops; exit 3"], None);
        let e = run_one(&bad, b"{}").unwrap_err();
        assert!(e.contains("3") && e.contains("oops"), "{e}");
    }

    #[test]
    fn hook_timeout_kills() {
        let slow = hook(&["sh", "-c", "sleep 5"], Some(1));
        let t = Instant::now();
        let e = run_one(&slow, b"{}").unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(run_one(&hook(&["sh"], Some(0)), b"{}").is_err());
    }
}
