//! `enginebench [--iterations N] [--warmup N] [--engined PATH] [--runtime PATH]`:
//! the real docker CLI against engined (on the containerd-lite it starts itself,
//! running ocirun) and against a private dockerd 20.10 (with its own containerd,
//! running runc), same image; `--runtime PATH` gives both the same runtime.
//!
//! Measured: idle memory (USS of the daemons), `docker run --rm --network none
//! busybox true` (runs alternate between the daemons), 50 sequential `docker run
//! -d`, `docker ps` with 100 containers running, `docker logs` of 10k lines.
//! Every exit status is checked, and both daemons, their containers, mounts and
//! cgroups are removed at the end.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const USAGE: &str =
    "usage: enginebench [--iterations N] [--warmup N] [--engined PATH] [--runtime PATH]";

#[derive(Debug)]
struct Opts {
    iterations: usize,
    warmup: usize,
    engined: PathBuf,
    /// Both daemons' runtime, when given; else each its own default.
    runtime: Option<String>,
}

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        iterations: 30,
        warmup: 3,
        engined: std::env::current_exe()?
            .parent()
            .map(|p| p.join("engined"))
            .unwrap_or_else(|| PathBuf::from("engined")),
        runtime: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--iterations" | "-n" => opts.iterations = value()?.parse()?,
            "--warmup" => opts.warmup = value()?.parse()?,
            "--engined" => opts.engined = value()?.into(),
            "--runtime" => opts.runtime = Some(value()?),
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

/// A daemon process and the cgroup parent its containers use.
#[derive(Debug)]
struct Daemon {
    name: &'static str,
    host: String,
    children: Vec<Child>,
    cgroup_parent: String,
    /// Where the pid of its containerd is written, if it is not one of `children`.
    containerd_pidfile: Option<PathBuf>,
}

impl Daemon {
    /// The daemon and its containerd (not the shims).
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.children.iter().map(Child::id).collect();
        if let Some(p) = &self.containerd_pidfile
            && let Some(pid) = std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        {
            pids.push(pid);
        }
        // dockerd's own containerd is its child.
        for &parent in pids.clone().iter() {
            pids.extend(children_of(parent).into_iter().filter(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|n| n.trim() == "containerd")
            }));
        }
        pids
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Private memory (Private_Clean + Private_Dirty of smaps_rollup) in KiB.
fn uss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn spawn(mut cmd: Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    cmd.spawn().with_context(|| format!("start {cmd:?}"))
}

fn docker(host: &str, cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.arg("--host")
        .arg(host)
        .args(args)
        .env("DOCKER_CONFIG", cfg)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null());
    c
}

fn wait_ready(host: &str, cfg: &Path, child: &mut Child, log: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        let ok = docker(host, cfg, &["version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if let Some(s) = child.try_wait()? {
            bail!(
                "daemon exited with {s}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("daemon not ready after 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_engined(dir: &Path, opts: &Opts, cfg: &Path) -> Result<Daemon> {
    let parent = format!("/enginebench-{}", std::process::id());
    let host = format!("unix://{}", dir.join("engined.sock").display());
    let mut e = Command::new(&opts.engined);
    e.arg("-H")
        .arg(&host)
        .arg("--data-root")
        .arg(dir.join("edata"))
        .arg("--exec-root")
        .arg(dir.join("eexec"))
        .arg("--pidfile")
        .arg(dir.join("engined.pid"))
        .arg("--cgroup-parent")
        .arg(&parent)
        .args(["--log-level", "warn"]);
    if let Some(rt) = &opts.runtime {
        e.arg("--default-runtime").arg(rt);
    }
    let log = dir.join("engined.log");
    let mut engined = spawn(e, &log)?;
    wait_ready(&host, cfg, &mut engined, &log)?;
    Ok(Daemon {
        name: "engined + containerd-lite",
        host,
        children: vec![engined],
        cgroup_parent: parent,
        containerd_pidfile: Some(dir.join("eexec/containerd/containerd-lite.pid")),
    })
}

fn start_dockerd(dir: &Path, opts: &Opts, cfg: &Path) -> Result<Daemon> {
    let d = dir.join("dkd");
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join("daemon.json"), "{}\n")?;
    let parent = format!("/dockerbench-{}", std::process::id());
    let host = format!("unix://{}", d.join("docker.sock").display());
    let mut c = Command::new("dockerd");
    c.arg("--config-file")
        .arg(d.join("daemon.json"))
        .arg("--data-root")
        .arg(d.join("data"))
        .arg("--exec-root")
        .arg(d.join("exec"))
        .arg("--host")
        .arg(&host)
        .arg("--pidfile")
        .arg(d.join("docker.pid"))
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
            "--exec-opt=native.cgroupdriver=cgroupfs",
        ])
        .arg("--cgroup-parent")
        .arg(&parent);
    if let Some(rt) = &opts.runtime {
        c.arg("--add-runtime")
            .arg(format!("benchrt={rt}"))
            .arg("--default-runtime")
            .arg("benchrt");
    }
    let log = d.join("dockerd.log");
    let mut child = spawn(c, &log)?;
    wait_ready(&host, cfg, &mut child, &log)?;
    Ok(Daemon {
        name: "dockerd 20.10 + containerd",
        host,
        children: vec![child],
        cgroup_parent: parent,
        containerd_pidfile: None,
    })
}

fn stop(d: &mut Daemon, cfg: &Path, dir: &Path) {
    let ids = docker(&d.host, cfg, &["ps", "-aq"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        let _ = docker(&d.host, cfg, &args).output();
    }
    for c in &mut d.children {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while matches!(c.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    // Shims outlive their daemon: they name the daemon's directory.
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
    }
    for ctl in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = ctl.path().join(d.cgroup_parent.trim_start_matches('/'));
        if let Ok(entries) = std::fs::read_dir(&p) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&p);
    }
}

fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `docker ARGS` against `d`, failing on a non-zero exit; returns stdout.
fn must(d: &Daemon, cfg: &Path, args: &[&str]) -> Result<String> {
    let out = docker(&d.host, cfg, args).output()?;
    if !out.status.success() {
        bail!(
            "{}: docker {} failed: {}",
            d.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn timed(d: &Daemon, cfg: &Path, args: &[&str]) -> Result<f64> {
    let t = Instant::now();
    must(d, cfg, args)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// What one daemon measured, besides `run --rm`.
#[derive(Debug, Default)]
struct Figures {
    idle_uss_kib: u64,
    run_d_50_ms: f64,
    ps_100_ms: f64,
    logs_10k_ms: f64,
    busy_uss_kib: u64,
}

const DETACHED: usize = 50;
const RUNNING: usize = 100;

fn measure(d: &Daemon, cfg: &Path) -> Result<Figures> {
    let mut f = Figures {
        idle_uss_kib: d.pids().iter().map(|p| uss_kib(*p)).sum(),
        ..Default::default()
    };
    let run_d = ["run", "-d", "--network", "none", "busybox", "sleep", "1000"];
    let t = Instant::now();
    for _ in 0..DETACHED {
        must(d, cfg, &run_d)?;
    }
    f.run_d_50_ms = t.elapsed().as_secs_f64() * 1000.0;
    for _ in DETACHED..RUNNING {
        must(d, cfg, &run_d)?;
    }
    let running = must(d, cfg, &["ps", "-q"])?.lines().count();
    if running != RUNNING {
        bail!("{}: {running} containers running, not {RUNNING}", d.name);
    }
    let mut ps = Vec::new();
    for _ in 0..10 {
        ps.push(timed(d, cfg, &["ps"])?);
    }
    f.ps_100_ms = median(ps);
    f.busy_uss_kib = d.pids().iter().map(|p| uss_kib(*p)).sum();
    let name = "enginebench-logs";
    must(
        d,
        cfg,
        &[
            "run",
            "--name",
            name,
            "--network",
            "none",
            "busybox",
            "seq",
            "1",
            "10000",
        ],
    )?;
    let lines = must(d, cfg, &["logs", name])?.lines().count();
    if lines != 10_000 {
        bail!("{}: docker logs gave {lines} lines, not 10000", d.name);
    }
    let mut logs = Vec::new();
    for _ in 0..10 {
        logs.push(timed(d, cfg, &["logs", name])?);
    }
    f.logs_10k_ms = median(logs);
    Ok(f)
}

fn run(opts: &Opts) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("engb-")
        .tempdir_in("/tmp")?;
    let dir = tmp.path();
    let cfg = dir.join("cli");
    let tar = dir.join("busybox.tar");
    let image = testkit::image::busybox_image()?;
    testkit::image::write_docker_archive(&image, &tar)?;
    let mut daemons = Vec::new();
    let result = (|| -> Result<Vec<(String, Vec<f64>, Figures)>> {
        daemons.push(start_engined(dir, opts, &cfg)?);
        daemons.push(start_dockerd(dir, opts, &cfg)?);
        for d in &daemons {
            must(d, &cfg, &["load", "-i", &tar.to_string_lossy()])?;
        }
        // Idle: a moment after the load, nothing running.
        std::thread::sleep(Duration::from_secs(2));
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
        for i in 0..opts.warmup + opts.iterations {
            for (k, d) in daemons.iter().enumerate() {
                let ms = timed(
                    d,
                    &cfg,
                    &["run", "--rm", "--network", "none", "busybox", "true"],
                )?;
                if i >= opts.warmup {
                    times[k].push(ms);
                }
            }
        }
        let mut rows = Vec::new();
        for (d, t) in daemons.iter().zip(times) {
            let f = measure(d, &cfg)?;
            rows.push((d.name.to_string(), t, f));
        }
        Ok(rows)
    })();
    for d in &mut daemons {
        stop(d, &cfg, dir);
    }
    unmount_under(dir);
    let rows = result?;
    println!(
        "docker CLI 28 against engined and dockerd (runtime: {}), medians:",
        opts.runtime
            .as_deref()
            .unwrap_or("each its default, ocirun for engined and runc for dockerd")
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (name, t, f) in &rows {
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        println!("  {name}:");
        println!(
            "    run --rm busybox true   {:7.1} ms (min {:.1}, {} runs)",
            median(t.clone()),
            min,
            t.len()
        );
        println!(
            "    {DETACHED} x run -d (sequential) {:7.0} ms",
            f.run_d_50_ms
        );
        println!("    ps with {RUNNING} running      {:7.1} ms", f.ps_100_ms);
        println!("    logs of 10k lines       {:7.1} ms", f.logs_10k_ms);
        println!(
            "    USS idle {:.1} MiB, with {RUNNING} running {:.1} MiB (daemon + containerd)",
            mib(f.idle_uss_kib),
            mib(f.busy_uss_kib)
        );
    }
    if let [(_, et, e), (_, dt, d)] = rows.as_slice() {
        println!("  engined / dockerd:");
        println!(
            "    run --rm {:.2}   50 x run -d {:.2}   ps {:.2}   logs {:.2}   idle USS {:.2}",
            median(et.clone()) / median(dt.clone()),
            e.run_d_50_ms / d.run_d_50_ms,
            e.ps_100_ms / d.ps_100_ms,
            e.logs_10k_ms / d.logs_10k_ms,
            e.idle_uss_kib as f64 / d.idle_uss_kib.max(1) as f64
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("enginebench: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enginebench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
