//! `ctrbench [--iterations N] [--warmup N] [--ocirun PATH]`: end-to-end wall time of
//! `ctr run --rm --runc-binary RT docker.io/library/busybox:latest ID true` on a
//! private containerd (its own root, state and socket under a temporary directory),
//! with ocirun and with runc as the runtime the runc shim calls.
//!
//! Like ocibench, runs are interleaved round-robin (the order rotates every round),
//! every exit status is checked, and a failing runtime drops out of the table.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: ctrbench [--iterations N] [--warmup N] [--ocirun PATH]";
const IMAGE: &str = "docker.io/library/busybox:latest";

#[derive(Debug)]
struct Opts {
    iterations: usize,
    warmup: usize,
    ocirun: Option<PathBuf>,
}

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        iterations: 30,
        warmup: 3,
        ocirun: None,
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| anyhow::anyhow!("invalid argument {a:?}\n{USAGE}"))?;
        let mut value = || -> Result<OsString> {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--iterations" | "-n" => opts.iterations = parse_count(value()?, &arg)?,
            "--warmup" => opts.warmup = parse_count(value()?, &arg)?,
            "--ocirun" => opts.ocirun = Some(value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg:?}\n{USAGE}"),
        }
    }
    if opts.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    Ok(opts)
}

fn parse_count(v: OsString, flag: &str) -> Result<usize> {
    v.to_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{flag} needs a non-negative integer, got {v:?}"))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// A containerd of our own; stopped (and its leftovers removed) on drop.
#[derive(Debug)]
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    namespace: String,
}

impl Daemon {
    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ctrbench-")
            .tempdir_in("/tmp")
            .context("cannot create a temporary directory in /tmp")?;
        let config = dir.path().join("config.toml");
        fs::write(&config, testkit::engine::containerd_config(dir.path()))
            .context("cannot write containerd's config")?;
        let log = fs::File::create(dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start containerd (apt-get install -y containerd)")?;
        let mut d = Self {
            dir,
            child,
            namespace: format!("ctrbench-{}", std::process::id()),
        };
        let start = Instant::now();
        loop {
            if d.socket().exists() && d.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
                break;
            }
            if let Some(status) = d.child.try_wait()? {
                bail!("containerd exited with {status}:\n{}", d.log_tail());
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("containerd not ready after 30 s:\n{}", d.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn ctr_command(&self, args: &[&OsString]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn ctr(&self, args: &[&str]) -> Result<Output> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let refs: Vec<&OsString> = args.iter().collect();
        self.ctr_command(&refs)
            .output()
            .context("cannot run ctr (apt-get install -y containerd)")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `ctr run --rm` leaves nothing running; SIGTERM lets containerd exit cleanly.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for entry in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(entry.path().join(&self.namespace));
        }
        let _ = fs::remove_dir_all(testkit::engine::runc_shim_root(&self.namespace));
    }
}

#[derive(Debug)]
struct Subject {
    name: &'static str,
    runtime: PathBuf,
    samples_ms: Vec<f64>,
    failed: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn run(opts: &Opts) -> Result<bool> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let ocirun = opts
        .ocirun
        .clone()
        .or_else(|| exe.parent().map(|d| d.join("ocirun")))
        .filter(|p| is_executable(p))
        .context("ocirun not found: run make build, or pass --ocirun PATH")?;
    // The shim runs the binary from the bundle directory, where a relative path (as
    // `make bench` passes without CARGO_TARGET_DIR) names nothing.
    let ocirun = std::path::absolute(&ocirun)
        .with_context(|| format!("cannot make {} absolute", ocirun.display()))?;
    let runc = find_in_path("runc").context("runc not found (apt-get install -y runc)")?;
    let daemon = Daemon::start()?;
    let image = testkit::image::busybox_image()?;
    let tar = daemon.dir.path().join("busybox.tar");
    testkit::image::write_docker_archive(&image, &tar)?;
    let tar_str = tar.to_str().context("non-UTF-8 temporary path")?;
    let out = daemon.ctr(&["images", "import", tar_str])?;
    if !out.status.success() {
        bail!(
            "ctr images import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    println!("ctrbench: `ctr run --rm --runc-binary RT {IMAGE} ID true`, wall time per run");
    println!(
        "containerd {} with the runc shim (io.containerd.runc.v2), private root in /tmp",
        first_line(Command::new("containerd").arg("--version"))
    );
    let mut subjects = vec![
        Subject {
            name: "ocirun",
            runtime: ocirun,
            samples_ms: vec![],
            failed: false,
        },
        Subject {
            name: "runc",
            runtime: runc,
            samples_ms: vec![],
            failed: false,
        },
    ];
    for s in &subjects {
        println!("{:<8} {}", s.name, s.runtime.display());
    }
    let _ = std::io::stdout().flush();

    let n = subjects.len();
    for round in 0..opts.warmup + opts.iterations {
        for k in 0..n {
            let s = &mut subjects[(round + k) % n];
            if s.failed {
                continue;
            }
            let id = format!("{}-{round}", s.name);
            let args: Vec<OsString> = vec![
                "run".into(),
                "--rm".into(),
                "--runc-binary".into(),
                s.runtime.clone().into_os_string(),
                IMAGE.into(),
                id.into(),
                "true".into(),
            ];
            let refs: Vec<&OsString> = args.iter().collect();
            let start = Instant::now();
            let out = daemon
                .ctr_command(&refs)
                .output()
                .context("cannot run ctr")?;
            let elapsed = start.elapsed();
            if !out.status.success() {
                eprintln!(
                    "error: {} run {} failed ({}): {}",
                    s.name,
                    round + 1,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                s.failed = true;
            } else if round >= opts.warmup {
                s.samples_ms.push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }

    let runc_median = subjects
        .iter()
        .find(|s| s.name == "runc" && !s.failed)
        .map(|s| percentile(&sorted(&s.samples_ms), 0.5));
    println!(
        "\n{} runs each after {} warm-up, round-robin",
        opts.iterations, opts.warmup
    );
    println!(
        "{:<8} {:>9} {:>8} {:>8} {:>7}",
        "runtime", "median ms", "p10", "p90", "x runc"
    );
    for s in &subjects {
        if s.failed {
            println!("{:<8} failed (see the error above)", s.name);
            continue;
        }
        let v = sorted(&s.samples_ms);
        let median = percentile(&v, 0.5);
        println!(
            "{:<8} {:>9.2} {:>8.2} {:>8.2} {:>7}",
            s.name,
            median,
            percentile(&v, 0.1),
            percentile(&v, 0.9),
            runc_median.map_or("-".to_string(), |r| format!("{:.2}", median / r))
        );
    }
    Ok(!subjects.iter().any(|s| s.failed))
}

fn first_line(cmd: &mut Command) -> String {
    cmd.stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "version unknown".to_string())
}

fn main() -> ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ctrbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
