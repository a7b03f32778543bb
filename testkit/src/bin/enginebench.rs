//! `enginebench [--iterations N] [--warmup N] [--engined PATH] [--runtime PATH]`:
//! wall time of `docker run --rm --network none busybox true` (the real docker CLI)
//! against engined on a private containerd 1.6, and against a private dockerd 20.10
//! (with its own containerd), same image, same runtime (runc unless `--runtime`).
//!
//! Runs alternate between the two daemons, every exit status is checked, and both
//! daemons, their containers, mounts and cgroups are removed at the end.
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
    runtime: String,
}

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        iterations: 30,
        warmup: 3,
        engined: std::env::current_exe()?
            .parent()
            .map(|p| p.join("engined"))
            .unwrap_or_else(|| PathBuf::from("engined")),
        runtime: "runc".into(),
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
            "--runtime" => opts.runtime = value()?,
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
    let ctd = dir.join("ctd");
    std::fs::create_dir_all(&ctd)?;
    std::fs::write(
        ctd.join("config.toml"),
        testkit::engine::containerd_config(&ctd),
    )?;
    let mut c = Command::new("containerd");
    c.arg("--config").arg(ctd.join("config.toml"));
    let containerd = spawn(c, &ctd.join("containerd.log"))?;
    let sock = ctd.join("containerd.sock");
    let start = Instant::now();
    while !sock.exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns = format!("enginebench-{}", std::process::id());
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
        .arg("--containerd")
        .arg(&sock)
        .arg("--containerd-namespace")
        .arg(&ns)
        .arg("--default-runtime")
        .arg(&opts.runtime)
        .arg("--cgroup-parent")
        .arg(format!("/{ns}"))
        .args(["--log-level", "warn"]);
    let log = dir.join("engined.log");
    let mut engined = spawn(e, &log)?;
    wait_ready(&host, cfg, &mut engined, &log)?;
    Ok(Daemon {
        name: "engined + containerd 1.6",
        host,
        children: vec![engined, containerd],
        cgroup_parent: format!("/{ns}"),
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
        .arg(&parent)
        .arg("--add-runtime")
        .arg(format!("benchrt={}", opts.runtime))
        .arg("--default-runtime")
        .arg("benchrt");
    let log = d.join("dockerd.log");
    let mut child = spawn(c, &log)?;
    wait_ready(&host, cfg, &mut child, &log)?;
    Ok(Daemon {
        name: "dockerd 20.10 + containerd",
        host,
        children: vec![child],
        cgroup_parent: parent,
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
    let result = (|| -> Result<Vec<(String, Vec<f64>)>> {
        daemons.push(start_engined(dir, opts, &cfg)?);
        daemons.push(start_dockerd(dir, opts, &cfg)?);
        for d in &daemons {
            let out = docker(&d.host, &cfg, &["load", "-i", &tar.to_string_lossy()]).output()?;
            if !out.status.success() {
                bail!(
                    "{}: docker load failed: {}",
                    d.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
        for i in 0..opts.warmup + opts.iterations {
            for (k, d) in daemons.iter().enumerate() {
                let t = Instant::now();
                let out = docker(
                    &d.host,
                    &cfg,
                    &["run", "--rm", "--network", "none", "busybox", "true"],
                )
                .output()?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if !out.status.success() {
                    bail!(
                        "{}: docker run failed: {}",
                        d.name,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                if i >= opts.warmup {
                    times[k].push(ms);
                }
            }
        }
        Ok(daemons
            .iter()
            .zip(times)
            .map(|(d, t)| (d.name.to_string(), t))
            .collect())
    })();
    for d in &mut daemons {
        stop(d, &cfg, dir);
    }
    unmount_under(dir);
    let rows = result?;
    println!(
        "docker run --rm --network none busybox true (docker CLI 28, runtime {}), {} runs each:",
        opts.runtime, opts.iterations
    );
    for (name, t) in &rows {
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  {name:<28} median {:7.1} ms   min {:7.1} ms",
            median(t.clone()),
            min
        );
    }
    if let [(_, e), (_, d)] = rows.as_slice() {
        println!(
            "  engined / dockerd: {:.2}",
            median(e.clone()) / median(d.clone())
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
