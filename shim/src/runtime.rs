//! Invocations of the OCI runtime (ocirun by default, or runc through the
//! runc shim's options). The runtime's own errors go to a JSON log in the
//! bundle because its stdio may be the container's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, ShimError};
use crate::reaper::Reaper;

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    log: PathBuf,
}

/// Stdio handed to a runtime command whose children become the container's
/// processes (create, exec): they inherit it.
#[derive(Debug)]
pub struct ChildStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ChildStdio {
    pub fn null() -> Self {
        ChildStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }
}

/// ocirun next to the shim binary (how the workspace installs them), else on PATH.
pub fn default_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let beside = dir.join("ocirun");
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from("ocirun")
}

impl Runtime {
    pub fn new(binary: PathBuf, root: Option<PathBuf>, namespace: &str, bundle: &Path) -> Self {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ocirun".into());
        let root = root.unwrap_or_else(|| {
            Path::new("/run/containerd")
                .join(name)
                .join(if namespace.is_empty() {
                    "default"
                } else {
                    namespace
                })
        });
        Runtime {
            binary,
            root,
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
            log: bundle.join("log.json"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        c.args(args);
        c
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// The last error the runtime logged, for the message of a failed call.
    fn last_error(&self, stderr: &str) -> String {
        let from_log = std::fs::read_to_string(&self.log).ok().and_then(|text| {
            text.lines().rev().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v.get("level")?.as_str()? == "error")
                    .then(|| v.get("msg")?.as_str().map(str::to_string))?
            })
        });
        from_log
            .or_else(|| (!stderr.trim().is_empty()).then(|| stderr.trim().to_string()))
            .unwrap_or_else(|| "exited with an error and logged nothing".into())
    }

    /// Runs a runtime command to completion and returns its stdout.
    pub fn run(
        &self,
        reaper: &Reaper,
        args: &[&str],
        stdin_data: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let action = args.first().copied().unwrap_or_default().to_string();
        let mut cmd = self.command(args);
        cmd.stdin(if stdin_data.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ShimError::io("running", &self.binary, e))?;
        drop(cmd);
        if let (Some(data), Some(mut stdin)) = (stdin_data, child.stdin.take()) {
            use std::io::Write;
            let _ = stdin.write_all(data);
        }
        // stderr is drained on a helper so neither pipe can fill and stall the runtime.
        let err_pipe = child.stderr.take();
        let err_reader = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = err_pipe {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
            .map_err(|e| ShimError::sys("spawning thread", e))?;
        let mut out = Vec::new();
        if let Some(mut p) = child.stdout.take() {
            let _ = p.read_to_end(&mut out);
        }
        let stderr = err_reader.join().unwrap_or_default();
        let exit = reaper.wait_child(&child);
        if exit.status != 0 {
            return Err(ShimError::Runtime {
                binary: self.name(),
                action,
                message: self.last_error(&stderr),
            });
        }
        Ok(out)
    }

    /// Runs a runtime command whose forked child becomes a container process
    /// holding `stdio`; only the runtime's own exit is awaited.
    pub fn run_detached(&self, reaper: &Reaper, args: &[&str], stdio: ChildStdio) -> Result<()> {
        let action = args.first().copied().unwrap_or_default().to_string();
        let mut cmd = self.command(args);
        cmd.stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let child = cmd
            .spawn()
            .map_err(|e| ShimError::io("running", &self.binary, e))?;
        // Dropping the command closes the shim's copies of the container's
        // pipe ends, so EOF arrives when the container's last holder exits.
        drop(cmd);
        let exit = reaper.wait_child(&child);
        if exit.status != 0 {
            return Err(ShimError::Runtime {
                binary: self.name(),
                action,
                message: self.last_error(""),
            });
        }
        Ok(())
    }

    pub fn create_args<'a>(
        &self,
        bundle: &'a str,
        pid_file: &'a str,
        console: Option<&'a str>,
        id: &'a str,
    ) -> Vec<&'a str> {
        let mut a = vec!["create", "--bundle", bundle, "--pid-file", pid_file];
        if let Some(c) = console {
            a.extend(["--console-socket", c]);
        }
        if self.no_pivot_root {
            a.push("--no-pivot");
        }
        if self.no_new_keyring {
            a.push("--no-new-keyring");
        }
        a.push(id);
        a
    }
}
