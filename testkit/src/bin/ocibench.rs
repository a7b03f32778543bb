//! `ocibench [--iterations N] [--warmup N] [--ocirun PATH]`: wall time of
//! `<runtime> --root <tmp> run --bundle <bundle> <id>` running `/bin/true` for ocirun,
//! runc and crun on one busybox bundle, next to the floor
//! `unshare --fork --pid --mount --uts --ipc --net /bin/true`.
//!
//! Section 1 runs everything inside a private mount namespace where
//! /sys/fs/cgroup/unified is unmounted, because crun 1.8 refuses the hybrid cgroup
//! layout: the process re-executes itself as `unshare -m --propagation private --
//! ocibench --inner ...`. Section 2 measures ocirun on the host's normal layout, with
//! runc and the floor measured in the same rounds as references.
//!
//! Each section then measures `<runtime> --root <tmp> exec <id> /bin/true` into a
//! running container of that runtime (a busybox `sleep`), next to the floor
//! `nsenter --target <init> --all /bin/true` (join the container's namespaces and exec).
//!
//! Runs are interleaved round-robin (the order rotates every round) so machine noise
//! hits every runtime equally. Every run's exit status is checked; a failed run is
//! printed with its stderr and the runtime drops out of the table.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: ocibench [--iterations N] [--warmup N] [--ocirun PATH]";
const UNIFIED: &str = "/sys/fs/cgroup/unified";
const FLOOR_ARGS: [&str; 7] = [
    "--fork",
    "--pid",
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "/bin/true",
];
const GNU_TIME: &str = "/usr/bin/time";
/// Runs per runtime under `/usr/bin/time -f %M` for the peak-RSS column (not timed).
const RSS_RUNS: usize = 3;

#[derive(Debug)]
struct Opts {
    iterations: usize,
    warmup: usize,
    ocirun: Option<PathBuf>,
    /// Set in the re-executed child that measures section 1.
    inner: bool,
    /// Holds `bundle/` and the runtimes' state roots; given to the inner process.
    workdir: Option<PathBuf>,
}

fn parse_args() -> Result<Opts> {
    let mut opts = Opts {
        iterations: 50,
        warmup: 3,
        ocirun: None,
        inner: false,
        workdir: None,
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
            "--workdir" => opts.workdir = Some(value()?.into()),
            "--inner" => opts.inner = true,
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

/// One thing being measured: a runtime, or the `unshare` floor.
#[derive(Debug)]
struct Subject {
    name: &'static str,
    /// None when the binary was not found.
    program: Option<PathBuf>,
    hint: String,
    is_runtime: bool,
    /// State dir passed as `--root` (unused by the floor).
    root: PathBuf,
    samples_ms: Vec<f64>,
    failed: bool,
    leftovers: usize,
    peak_rss_kib: Option<u64>,
    /// For the exec benchmark: the container (id, init pid) to exec into.
    exec_into: Option<(String, i32)>,
}

impl Subject {
    fn new(name: &'static str, program: Option<PathBuf>, hint: &str, root: PathBuf) -> Self {
        Self {
            name,
            program,
            hint: hint.to_string(),
            is_runtime: name != "floor",
            root,
            samples_ms: Vec::new(),
            failed: false,
            leftovers: 0,
            peak_rss_kib: None,
            exec_into: None,
        }
    }

    fn active(&self) -> bool {
        self.program.is_some() && !self.failed
    }

    /// The full argv (program first) of one run.
    fn argv(&self, program: &Path, bundle: &Path, id: &str) -> Vec<OsString> {
        let mut argv = vec![program.as_os_str().to_owned()];
        if let Some((target, pid)) = &self.exec_into {
            if self.is_runtime {
                argv.push("--root".into());
                argv.push(self.root.as_os_str().to_owned());
                argv.extend(["exec", target.as_str(), "/bin/true"].map(OsString::from));
            } else {
                argv.extend(
                    ["--target", &pid.to_string(), "--all", "/bin/true"].map(OsString::from),
                );
            }
            return argv;
        }
        if self.is_runtime {
            argv.push("--root".into());
            argv.push(self.root.as_os_str().to_owned());
            argv.push("run".into());
            argv.push("--bundle".into());
            argv.push(bundle.as_os_str().to_owned());
            argv.push(id.into());
        } else {
            argv.extend(FLOOR_ARGS.iter().map(OsString::from));
        }
        argv
    }
}

fn run_quiet(argv: &[OsString]) -> Result<Output> {
    let (program, args) = argv.split_first().context("empty command")?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot execute {}", Path::new(program).display()))
}

/// Last lines of a failed run's stderr (or stdout if stderr is empty).
fn tail(out: &Output) -> String {
    let text = if out.stderr.is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        String::from_utf8_lossy(&out.stderr)
    };
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n    ")
}

/// Finds `name` in PATH and the usual sbin/bin dirs (runc lives in /usr/sbin).
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_root() -> bool {
    // The second field of "Uid:" is the effective uid.
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// True when a cgroup2 filesystem is mounted at `path` (field 5 of mountinfo is the
/// mount point; the fs type follows the " - " separator).
fn cgroup2_mounted_at(path: &str) -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines().any(|l| {
            let mount_point = l.split_whitespace().nth(4);
            let fstype = l
                .split_once(" - ")
                .and_then(|(_, r)| r.split_whitespace().next());
            mount_point == Some(path) && fstype == Some("cgroup2")
        })
    })
}

fn cgroup_layout() -> &'static str {
    if cgroup2_mounted_at("/sys/fs/cgroup") {
        "unified (v2)"
    } else if cgroup2_mounted_at(UNIFIED) {
        "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)"
    } else {
        "legacy (v1)"
    }
}

/// `/sys/fs/cgroup` and its direct subdirectories: where a runtime's default
/// cgroup `/<id>` appears (one per v1 hierarchy, or the v2 root).
fn cgroup_bases() -> Vec<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut bases = vec![root.clone()];
    if let Ok(entries) = fs::read_dir(&root) {
        bases.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink()),
        );
    }
    bases
}

fn first_line_of(program: &Path, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
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

fn subjects(opts: &Opts, workdir: &Path, section: &str, with_crun: bool) -> Vec<Subject> {
    let root = |name: &str| workdir.join(format!("root-{section}-{name}"));
    let ocirun = opts.ocirun.clone().filter(|p| is_executable(p));
    let mut v = vec![
        Subject::new(
            "ocirun",
            ocirun,
            "run make build, or pass --ocirun PATH",
            root("ocirun"),
        ),
        Subject::new(
            "runc",
            find_in_path("runc"),
            "apt-get install -y runc",
            root("runc"),
        ),
    ];
    if with_crun {
        v.push(Subject::new(
            "crun",
            find_in_path("crun"),
            "apt-get install -y crun",
            root("crun"),
        ));
    }
    v.push(Subject::new(
        "floor",
        find_in_path("unshare"),
        "apt-get install -y util-linux",
        root("floor"),
    ));
    v
}

/// Measures every present subject `warmup + iterations` times, round-robin.
fn measure(subjects: &mut [Subject], bundle: &Path, opts: &Opts, section: &str) -> Result<()> {
    for s in subjects.iter() {
        if s.is_runtime {
            fs::create_dir_all(&s.root).with_context(|| format!("mkdir {}", s.root.display()))?;
        }
    }
    let bases = cgroup_bases();
    let pid = std::process::id();
    let n = subjects.len();
    for round in 0..opts.warmup + opts.iterations {
        for k in 0..n {
            let s = &mut subjects[(round + k) % n];
            let Some(program) = s.program.clone().filter(|_| !s.failed) else {
                continue;
            };
            let id = format!("ocibench-{pid}-{section}-{}-{round}", s.name);
            let argv = s.argv(&program, bundle, &id);
            let start = Instant::now();
            let out = run_quiet(&argv)?;
            let elapsed = start.elapsed();
            if !out.status.success() {
                eprintln!(
                    "error: {} run {} failed ({}):\n    {}",
                    s.name,
                    round + 1,
                    out.status,
                    tail(&out)
                );
                s.failed = true;
            } else if round >= opts.warmup {
                s.samples_ms.push(elapsed.as_secs_f64() * 1e3);
            }
            if s.is_runtime {
                s.leftovers += clean_up(&program, &s.root, &id, &bases);
            }
        }
    }
    measure_rss(subjects, bundle, &bases);
    Ok(())
}

/// The exec benchmark: one running container per runtime, then `exec /bin/true` into
/// it, round-robin like `measure`; the floor joins ocirun's (or the first) container.
fn measure_exec(subjects: &mut [Subject], bundle: &Path, opts: &Opts, section: &str) -> Result<()> {
    let bases = cgroup_bases();
    let pid = std::process::id();
    let mut floor_pid = None;
    for s in subjects.iter_mut().filter(|s| s.is_runtime) {
        s.samples_ms.clear();
        s.failed = false;
        let Some(program) = s.program.clone() else {
            continue;
        };
        fs::create_dir_all(&s.root).with_context(|| format!("mkdir {}", s.root.display()))?;
        let id = format!("ocibench-{pid}-{section}-{}-exec", s.name);
        // Detached, the container keeps its stdio: never a pipe we would wait on.
        let status = Command::new(&program)
            .arg("--root")
            .arg(&s.root)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("cannot execute {}", program.display()))?;
        let state = run_quiet(&[
            program.as_os_str().to_owned(),
            "--root".into(),
            s.root.as_os_str().to_owned(),
            "state".into(),
            id.clone().into(),
        ])?;
        let init = serde_json::from_slice::<serde_json::Value>(&state.stdout)
            .ok()
            .and_then(|v| v["pid"].as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0);
        match (status.success(), init) {
            (true, Some(init)) => {
                floor_pid = floor_pid.or(Some(init));
                s.exec_into = Some((id, init));
            }
            _ => {
                eprintln!(
                    "error: {} could not start the container to exec into ({status})",
                    s.name
                );
                s.failed = true;
                s.leftovers += clean_up(&program, &s.root, &id, &bases);
            }
        }
    }
    for s in subjects.iter_mut().filter(|s| !s.is_runtime) {
        s.samples_ms.clear();
        s.failed = false;
        s.program = find_in_path("nsenter");
        s.hint = "apt-get install -y util-linux".into();
        match floor_pid {
            Some(p) => s.exec_into = Some((String::new(), p)),
            None => s.failed = true,
        }
    }
    let n = subjects.len();
    for round in 0..opts.warmup + opts.iterations {
        for k in 0..n {
            let s = &mut subjects[(round + k) % n];
            let Some(program) = s.program.clone().filter(|_| !s.failed) else {
                continue;
            };
            let argv = s.argv(&program, bundle, "");
            let start = Instant::now();
            let out = run_quiet(&argv)?;
            let elapsed = start.elapsed();
            if !out.status.success() {
                eprintln!(
                    "error: {} exec {} failed ({}):\n    {}",
                    s.name,
                    round + 1,
                    out.status,
                    tail(&out)
                );
                s.failed = true;
            } else if round >= opts.warmup {
                s.samples_ms.push(elapsed.as_secs_f64() * 1e3);
            }
        }
    }
    for s in subjects.iter_mut() {
        s.peak_rss_kib = None;
        let (Some(program), Some((id, _))) = (s.program.clone(), s.exec_into.take()) else {
            continue;
        };
        if s.is_runtime {
            let _ = Command::new(&program)
                .arg("--root")
                .arg(&s.root)
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            s.leftovers += clean_up(&program, &s.root, &id, &bases);
        }
    }
    Ok(())
}

/// Checks that a container left no state and no cgroup behind; removes what it finds
/// and returns how many leftovers there were.
fn clean_up(program: &Path, root: &Path, id: &str, bases: &[PathBuf]) -> usize {
    let mut leftovers = 0;
    if root.join(id).exists() {
        leftovers += 1;
        let _ = Command::new(program)
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output();
    }
    for base in bases {
        let cg = base.join(id);
        if cg.is_dir() {
            // Section 1 only: with the cgroup2 fs unmounted, unified/ is a plain dir
            // of the host's /sys/fs/cgroup tmpfs and crun mkdirs `<id>` there. That
            // is an artifact of this setup, not a leak of the runtime: remove it
            // quietly so nothing piles up under the host's mount.
            let setup_artifact = base == Path::new(UNIFIED) && !cgroup2_mounted_at(UNIFIED);
            if !setup_artifact {
                leftovers += 1;
            }
            let _ = fs::remove_dir(&cg);
        }
    }
    leftovers
}

/// Peak RSS (GNU time's %M: the largest process of the tree, from wait4's rusage)
/// over a few untimed runs. Skipped when /usr/bin/time is not installed.
fn measure_rss(subjects: &mut [Subject], bundle: &Path, bases: &[PathBuf]) {
    if !is_executable(Path::new(GNU_TIME)) {
        return;
    }
    let pid = std::process::id();
    for s in subjects.iter_mut().filter(|s| s.active()) {
        let Some(program) = s.program.clone() else {
            continue;
        };
        let report = s.root.with_extension("rss");
        let mut peak = None;
        for i in 0..RSS_RUNS {
            let id = format!("ocibench-{pid}-rss-{}-{i}", s.name);
            let mut argv: Vec<OsString> = [GNU_TIME, "-f", "%M", "-o"]
                .iter()
                .map(OsString::from)
                .collect();
            argv.push(report.as_os_str().to_owned());
            argv.extend(s.argv(&program, bundle, &id));
            let ok = run_quiet(&argv).is_ok_and(|o| o.status.success());
            if s.is_runtime {
                s.leftovers += clean_up(&program, &s.root, &id, bases);
            }
            let kib = fs::read_to_string(&report)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            if ok {
                peak = peak.max(kib);
            }
        }
        s.peak_rss_kib = peak;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
}

fn median_of(subjects: &[Subject], name: &str) -> Option<f64> {
    subjects
        .iter()
        .find(|s| s.name == name && s.active() && !s.samples_ms.is_empty())
        .map(|s| {
            let mut v = s.samples_ms.clone();
            v.sort_by(f64::total_cmp);
            percentile(&v, 0.5)
        })
}

fn print_table(title: &str, subjects: &[Subject], opts: &Opts) {
    let refs = ["runc", "crun", "floor"].map(|r| median_of(subjects, r));
    let mut out = String::new();
    out.push_str(&format!(
        "\n{title}\n{} runs each after {} warm-up, round-robin\n",
        opts.iterations, opts.warmup
    ));
    out.push_str(&format!(
        "{:<8} {:>9} {:>8} {:>8} {:>7} {:>7} {:>8} {:>9}\n",
        "runtime", "median ms", "p10", "p90", "x runc", "x crun", "x floor", "peak RSS"
    ));
    for s in subjects {
        if s.program.is_none() {
            out.push_str(&format!("{:<8} missing ({})\n", s.name, s.hint));
            continue;
        }
        if s.failed {
            out.push_str(&format!("{:<8} failed (see the error above)\n", s.name));
            continue;
        }
        let mut v = s.samples_ms.clone();
        v.sort_by(f64::total_cmp);
        let median = percentile(&v, 0.5);
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.2}", median / r));
        let rss = s
            .peak_rss_kib
            .map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        out.push_str(&format!(
            "{:<8} {:>9.2} {:>8.2} {:>8.2} {:>7} {:>7} {:>8} {:>9}\n",
            s.name,
            median,
            percentile(&v, 0.1),
            percentile(&v, 0.9),
            ratio(refs[0]),
            ratio(refs[1]),
            ratio(refs[2]),
            rss
        ));
        if s.leftovers > 0 {
            out.push_str(&format!(
                "         warning: {} state dir(s) or cgroup(s) left behind (removed)\n",
                s.leftovers
            ));
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn any_failed(subjects: &[Subject]) -> bool {
    subjects.iter().any(|s| s.failed || s.leftovers > 0)
}

/// Section 1, in the private mount namespace made by `unshare -m`.
fn run_inner(opts: &Opts) -> Result<bool> {
    let workdir = opts.workdir.as_deref().context("--inner needs --workdir")?;
    if cgroup2_mounted_at(UNIFIED) {
        let status = Command::new("umount")
            .arg(UNIFIED)
            .status()
            .context("cannot run umount")?;
        if !status.success() {
            bail!("umount {UNIFIED} failed ({status})");
        }
    }
    let mut subjects = subjects(opts, workdir, "ns", true);
    measure(&mut subjects, &workdir.join("bundle"), opts, "ns")?;
    print_table(
        &format!(
            "== 1. all runtimes, private mount namespace without {UNIFIED} (cgroup v1 only) =="
        ),
        &subjects,
        opts,
    );
    let mut ok = !any_failed(&subjects);
    measure_exec(&mut subjects, &workdir.join("bundle-sleep"), opts, "ns")?;
    print_table(
        "== 1b. `exec /bin/true` into a running container, same namespace (floor: nsenter --all) ==",
        &subjects,
        opts,
    );
    ok &= !any_failed(&subjects);
    Ok(ok)
}

fn run_outer(opts: &mut Opts) -> Result<bool> {
    if !is_root() {
        bail!("must run as root (runtimes and unshare need it)");
    }
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    if opts.ocirun.is_none() {
        opts.ocirun = exe.parent().map(|d| d.join("ocirun"));
    }
    let tmp = tempfile::Builder::new()
        .prefix("ocibench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let workdir = tmp.path();
    testkit::Bundle::create(&workdir.join("bundle"), &["/bin/true"])
        .context("cannot create the benchmark bundle")?;
    testkit::Bundle::create(&workdir.join("bundle-sleep"), &["sleep", "1000000"])
        .context("cannot create the exec benchmark bundle")?;

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("ocibench: `<rt> --root DIR run --bundle B ID` of /bin/true, wall time per run");
    println!(
        "kernel {}, {cpus} cpu(s), cgroups: {}",
        kernel.trim(),
        cgroup_layout()
    );
    for s in subjects(opts, workdir, "v", true) {
        match &s.program {
            Some(p) if s.is_runtime => {
                println!(
                    "{:<8} {} ({})",
                    s.name,
                    p.display(),
                    first_line_of(p, "--version")
                );
            }
            Some(p) => println!("{:<8} {} {}", s.name, p.display(), FLOOR_ARGS.join(" ")),
            None => println!("{:<8} missing ({})", s.name, s.hint),
        }
    }
    let _ = std::io::stdout().flush();

    let mut inner = Command::new("unshare");
    inner
        .args(["-m", "--propagation", "private", "--"])
        .arg(&exe)
        .arg("--inner")
        .arg("--workdir")
        .arg(workdir)
        .args(["--iterations", &opts.iterations.to_string()])
        .args(["--warmup", &opts.warmup.to_string()]);
    if let Some(p) = &opts.ocirun {
        inner.arg("--ocirun").arg(p);
    }
    let status = inner
        .stdin(Stdio::null())
        .status()
        .context("cannot run unshare (apt-get install -y util-linux)")?;
    let mut ok = status.success();
    if !ok {
        eprintln!("error: section 1 (unshare -m ... --inner) exited with {status}");
    }

    if cgroup2_mounted_at(UNIFIED) {
        let mut subjects = subjects(opts, workdir, "host", false);
        if subjects[0].program.is_some() {
            measure(&mut subjects, &workdir.join("bundle"), opts, "host")?;
        } else {
            subjects.truncate(1);
        }
        print_table(
            "== 2. ocirun on the host's hybrid layout (runc and floor as references; crun refuses it) ==",
            &subjects,
            opts,
        );
        ok &= !any_failed(&subjects);
        if subjects[0].program.is_some() {
            measure_exec(&mut subjects, &workdir.join("bundle-sleep"), opts, "host")?;
            print_table(
                "== 2b. `exec /bin/true` on the host's hybrid layout (floor: nsenter --all) ==",
                &subjects,
                opts,
            );
            ok &= !any_failed(&subjects);
        }
    } else {
        println!("\n(host is not hybrid: section 1 already used its cgroup layout)");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|mut opts| {
        if opts.inner {
            run_inner(&opts)
        } else {
            run_outer(&mut opts)
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ocibench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert!((percentile(&v, 0.1) - 1.4).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn floor_and_runtime_command_lines() {
        let rt = Subject::new("runc", None, "", PathBuf::from("/r"));
        let argv = rt.argv(Path::new("/usr/sbin/runc"), Path::new("/b"), "id1");
        assert_eq!(
            argv,
            [
                "/usr/sbin/runc",
                "--root",
                "/r",
                "run",
                "--bundle",
                "/b",
                "id1"
            ]
            .map(OsString::from)
        );
        let floor = Subject::new("floor", None, "", PathBuf::from("/r"));
        let argv = floor.argv(Path::new("/usr/bin/unshare"), Path::new("/b"), "id1");
        assert_eq!(argv.len(), 1 + FLOOR_ARGS.len());
        assert_eq!(argv.last(), Some(&OsString::from("/bin/true")));
    }

    #[test]
    fn exec_command_lines() {
        let mut rt = Subject::new("runc", None, "", PathBuf::from("/r"));
        rt.exec_into = Some(("c1".into(), 42));
        let argv = rt.argv(Path::new("/usr/sbin/runc"), Path::new("/b"), "");
        assert_eq!(
            argv,
            ["/usr/sbin/runc", "--root", "/r", "exec", "c1", "/bin/true"].map(OsString::from)
        );
        let mut floor = Subject::new("floor", None, "", PathBuf::from("/r"));
        floor.exec_into = Some((String::new(), 42));
        let argv = floor.argv(Path::new("/usr/bin/nsenter"), Path::new("/b"), "");
        assert_eq!(
            argv,
            ["/usr/bin/nsenter", "--target", "42", "--all", "/bin/true"].map(OsString::from)
        );
    }
}
