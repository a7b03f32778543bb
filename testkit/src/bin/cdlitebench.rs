//! `cdlitebench [--iterations N] [--containerd-lite PATH]`: containerd-lite against
//! the real containerd 1.6, each private (own root, state and socket under one
//! temporary directory), measured the same way in the same run:
//!
//! - idle memory: USS (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup) a few
//!   seconds after start-up, and again after the imports;
//! - `ctr images import` of a ~100 MB image (busybox plus a 100 MiB incompressible
//!   layer), unpacked into overlayfs by ctr as usual, then `ctr images rm --sync` so
//!   every round starts from an empty store. Runs alternate between the daemons.
#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testkit::image::{Image, build_busybox_layer, layer_from_dir, write_docker_archive};

const USAGE: &str = "usage: cdlitebench [--iterations N] [--containerd-lite PATH]";
const IMAGE: &str = "docker.io/library/big:latest";
const NS: &str = "bench";
const BUSYBOX: &str = "docker.io/library/busybox:latest";

struct Daemon {
    name: &'static str,
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctr(socket: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .arg("-n")
        .arg(NS)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run ctr")?;
    if !out.status.success() {
        bail!(
            "ctr {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn start(name: &'static str, mut cmd: Command, socket: PathBuf, log: &Path) -> Result<Daemon> {
    let f = fs::File::create(log)?;
    cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
    let child = cmd.spawn().with_context(|| format!("start {name}"))?;
    let mut d = Daemon {
        name,
        child,
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if d.socket.exists() && ctr(&d.socket, &["version"]).is_ok() {
            return Ok(d);
        }
        if let Ok(Some(st)) = d.child.try_wait() {
            bail!("{name} exited with {st}; see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("{name} did not start; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unique set size in KiB: the memory only this process holds.
fn uss_kib(pid: u32) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let mut kib = 0;
    for line in text.lines() {
        if line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:") {
            kib += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(kib)
}

fn big_image(dir: &Path) -> Result<PathBuf> {
    let data = dir.join("layer");
    fs::create_dir_all(&data)?;
    let mut f = fs::File::create(data.join("blob.bin"))?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..100 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    drop(f);
    let image = Image::new(
        "big:latest",
        vec![build_busybox_layer()?, layer_from_dir(&data)?],
        &["sh"],
    );
    fs::remove_dir_all(&data)?;
    let tar = dir.join("big.tar");
    write_docker_archive(&image, &tar)?;
    Ok(tar)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run() -> Result<()> {
    let mut iterations = 5usize;
    let mut lite: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" | "-n" => {
                iterations = args.next().context(USAGE)?.parse().context(USAGE)?
            }
            "--containerd-lite" => lite = Some(args.next().context(USAGE)?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let lite = match lite {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("containerd-lite"),
    };
    let tmp = tempfile::Builder::new()
        .prefix("cdlb-")
        .tempdir_in("/tmp")?;
    let dir = tmp.path();

    let ctd_dir = dir.join("ctd");
    fs::create_dir_all(&ctd_dir)?;
    fs::write(
        ctd_dir.join("config.toml"),
        testkit::engine::containerd_config(&ctd_dir),
    )?;
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(ctd_dir.join("config.toml"));
    let containerd = start(
        "containerd 1.6",
        cmd,
        ctd_dir.join("containerd.sock"),
        &dir.join("containerd.log"),
    )?;

    let cdl_dir = dir.join("cdl");
    let mut cmd = Command::new(&lite);
    cmd.arg("--address")
        .arg(cdl_dir.join("s.sock"))
        .arg("--root")
        .arg(cdl_dir.join("root"))
        .arg("--state")
        .arg(cdl_dir.join("state"))
        .arg("--log-level")
        .arg("warn");
    let cdlite = start(
        "containerd-lite",
        cmd,
        cdl_dir.join("s.sock"),
        &dir.join("containerd-lite.log"),
    )?;
    let daemons = [&cdlite, &containerd];

    std::thread::sleep(Duration::from_secs(3));
    let idle: Vec<u64> = daemons
        .iter()
        .map(|d| uss_kib(d.child.id()))
        .collect::<Result<_>>()?;

    eprintln!("building a ~100 MB image...");
    let tar = big_image(dir)?;
    let size = fs::metadata(&tar)?.len();
    let tar_s = tar.to_str().context("path")?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
    for i in 0..iterations {
        for k in 0..daemons.len() {
            let j = (i + k) % daemons.len();
            let d = daemons[j];
            let t = Instant::now();
            ctr(&d.socket, &["images", "import", tar_s])?;
            times[j].push(t.elapsed().as_secs_f64() * 1000.0);
            ctr(&d.socket, &["images", "rm", "--sync", IMAGE])?;
        }
    }
    // Container start-up through each daemon's shim: ctr run --rm busybox true.
    let bb_tar = dir.join("busybox.tar");
    let bb = testkit::image::Image::new(
        "busybox:latest",
        vec![testkit::image::build_busybox_layer()?],
        &["sh"],
    );
    testkit::image::write_docker_archive(&bb, &bb_tar)?;
    let bb_s = bb_tar.to_str().context("path")?;
    for d in daemons {
        ctr(&d.socket, &["images", "import", bb_s])?;
    }
    let runs = iterations * 4;
    let mut run_times: Vec<Vec<f64>> = vec![Vec::new(); daemons.len()];
    for i in 0..runs {
        for k in 0..daemons.len() {
            let j = (i + k) % daemons.len();
            let d = daemons[j];
            let id = format!("bench-{i}");
            let t = Instant::now();
            ctr(&d.socket, &["run", "--rm", BUSYBOX, &id, "true"])?;
            run_times[j].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let after: Vec<u64> = daemons
        .iter()
        .map(|d| uss_kib(d.child.id()))
        .collect::<Result<_>>()?;

    println!(
        "ctr images import of a {:.0} MB image (unpacked into overlayfs), {iterations} runs each; USS from smaps_rollup",
        size as f64 / 1e6
    );
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>14} {:>16}",
        "daemon", "median ms", "min ms", "max ms", "idle USS KiB", "after USS KiB"
    );
    for (j, d) in daemons.iter().enumerate() {
        let mut t = times[j].clone();
        let min = t.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = t.iter().cloned().fold(0.0, f64::max);
        println!(
            "{:<16} {:>12.0} {:>12.0} {:>12.0} {:>14} {:>16}",
            d.name,
            median(&mut t),
            min,
            max,
            idle[j],
            after[j]
        );
    }
    println!(
        "\nctr run --rm {BUSYBOX} ID true, {runs} runs each (containerd 1.6 uses runc's shim and runc)"
    );
    println!(
        "{:<16} {:>12} {:>12} {:>12}",
        "daemon", "median ms", "min ms", "max ms"
    );
    for (j, d) in daemons.iter().enumerate() {
        let mut t = run_times[j].clone();
        let min = t.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = t.iter().cloned().fold(0.0, f64::max);
        println!(
            "{:<16} {:>12.0} {:>12.0} {:>12.0}",
            d.name,
            median(&mut t),
            min,
            max
        );
    }
    drop(cdlite);
    drop(containerd);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdlitebench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
