//! The shim (`shim`, installed as `containerd-shim-ocirun-v2`): driven directly
//! over its ttrpc API with a client in the test, and by real containerd 1.6
//! (a private instance per test) through `ctr`.

// Test helpers (outside #[test] fns) fail the test by panicking, like the harness.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::{Output, Runtime, TestContainer, run_with_timeout, wait_for, workspace_root};
use proto::protobuf::well_known_types::any::Any;
use proto::protobuf::{Message, MessageField};
use proto::shim::*;
use proto::shim_ttrpc::TaskClient;
use proto::task::Status;
use serde_json::json;
use sha2::{Digest, Sha256};

const IMAGE: &str = "docker.io/library/busybox:latest";
const RUNC: &str = "/usr/sbin/runc";

fn target_bin(name: &str) -> PathBuf {
    let root = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => root.join(t),
        _ => root.join("target"),
    };
    let p = target.join("debug").join(name);
    assert!(
        p.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

fn shim_bin() -> PathBuf {
    target_bin("shim")
}

/// The runtime under test (ocirun by default, OCIRUN_TEST_RUNTIME=runc to compare).
/// `sub` names the subcommand the test relies on, for the reader.
fn runtime_with(_sub: &str) -> PathBuf {
    Runtime::from_env().path().to_path_buf()
}

fn ctx() -> proto::ttrpc::context::Context {
    proto::ttrpc::context::with_timeout(60 * 1_000_000_000)
}

fn connect(address: &str) -> TaskClient {
    TaskClient::new(proto::ttrpc::Client::connect(address).expect("connect to the shim"))
}

fn pid_alive(pid: i32) -> bool {
    // A zombie has exited; only its parent has not collected it yet.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

fn sigkill(pid: i32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// A shim started with the binary protocol in a test container's bundle;
/// dropping it kills the shim if it is still there (the container itself is
/// force-deleted by the `TestContainer`, which must outlive this).
struct DirectShim {
    address: String,
    pid: i32,
}

impl DirectShim {
    fn start(tc: &TestContainer) -> DirectShim {
        let mut cmd = Command::new(shim_bin());
        cmd.args([
            "-namespace",
            "it",
            "-id",
            &tc.id,
            "-address",
            "",
            "-publish-binary",
            "",
        ])
        .arg("start")
        .current_dir(tc.bundle_dir())
        .stdin(Stdio::null());
        let out = run_with_timeout(cmd, Duration::from_secs(20));
        out.ok();
        let address = out.stdout.trim().to_string();
        assert!(address.starts_with("unix:///"), "start printed {address:?}");
        let written = fs::read_to_string(tc.bundle_dir().join("address")).expect("address file");
        assert_eq!(written.trim(), address);
        let pid = fs::read_to_string(tc.bundle_dir().join("shim.pid"))
            .expect("shim.pid")
            .trim()
            .parse()
            .expect("shim pid");
        DirectShim { address, pid }
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(self.address.trim_start_matches("unix://"))
    }
}

impl Drop for DirectShim {
    fn drop(&mut self) {
        if pid_alive(self.pid) {
            sigkill(self.pid);
        }
        let _ = fs::remove_file(self.socket());
    }
}

fn runtime_options(binary: &Path, root: &Path) -> MessageField<Any> {
    let opts = proto::runc_options::Options {
        binary_name: binary.display().to_string(),
        root: root.display().to_string(),
        ..Default::default()
    };
    MessageField::some(Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: opts.write_to_bytes().expect("encode options"),
        ..Default::default()
    })
}

fn create_request(
    tc: &TestContainer,
    runtime: &Path,
    stdout: &str,
    stderr: &str,
) -> CreateTaskRequest {
    CreateTaskRequest {
        id: tc.id.clone(),
        bundle: tc.bundle_dir().display().to_string(),
        stdout: stdout.into(),
        stderr: stderr.into(),
        options: runtime_options(runtime, tc.root()),
        ..Default::default()
    }
}

fn wait(client: &TaskClient, id: &str) -> WaitResponse {
    let req = WaitRequest {
        id: id.into(),
        ..Default::default()
    };
    client.wait(ctx(), &req).expect("Wait")
}

#[test]
fn ttrpc_lifecycle_reports_exit_code_and_output() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "echo hello; echo oops >&2; exit 5"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    let out = tc.bundle_dir().join("out.log");
    let err = tc.bundle_dir().join("err.log");
    let created = client
        .create(
            ctx(),
            &create_request(
                &tc,
                rt.path(),
                &format!("file://{}", out.display()),
                &format!("file://{}", err.display()),
            ),
        )
        .expect("Create");
    assert!(created.pid > 0);
    let state = |client: &TaskClient| {
        client
            .state(
                ctx(),
                &StateRequest {
                    id: tc.id.clone(),
                    ..Default::default()
                },
            )
            .expect("State")
    };
    assert_eq!(state(&client).status.enum_value(), Ok(Status::CREATED));
    let started = client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(started.pid, created.pid);
    assert_eq!(wait(&client, &tc.id).exit_status, 5);
    let st = state(&client);
    assert_eq!(st.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(st.exit_status, 5);
    let exit: serde_json::Value =
        serde_json::from_slice(&fs::read(tc.bundle_dir().join("init.exit")).expect("exit file"))
            .expect("exit file is JSON");
    assert_eq!(exit["exit_status"], json!(5));
    assert_eq!(exit["pid"], json!(created.pid));
    let deleted = client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    assert_eq!(deleted.exit_status, 5);
    assert_eq!(fs::read_to_string(&out).expect("stdout file"), "hello\n");
    assert_eq!(fs::read_to_string(&err).expect("stderr file"), "oops\n");
    let checkpoint = client.checkpoint(
        ctx(),
        &CheckpointTaskRequest {
            id: tc.id.clone(),
            ..Default::default()
        },
    );
    assert!(
        matches!(&checkpoint, Err(proto::ttrpc::Error::RpcStatus(s)) if s.code() == proto::ttrpc::Code::UNIMPLEMENTED),
        "{checkpoint:?}"
    );
    let _ = client.shutdown(
        ctx(),
        &ShutdownRequest {
            id: tc.id.clone(),
            ..Default::default()
        },
    );
    wait_for(
        Duration::from_secs(5),
        "the shim to exit after Shutdown",
        || (!pid_alive(shim.pid)).then_some(()),
    );
    assert!(!shim.socket().exists(), "socket left behind");
}

#[test]
fn ttrpc_new_client_waits_after_first_client_is_gone() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "sleep 1; exit 3"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let pid = {
        let first = connect(&shim.address);
        let created = first
            .create(ctx(), &create_request(&tc, rt.path(), "", ""))
            .expect("Create");
        first
            .start(
                ctx(),
                &StartRequest {
                    id: tc.id.clone(),
                    ..Default::default()
                },
            )
            .expect("Start");
        created.pid
        // The first client's connection closes here, as when a daemon dies.
    };
    let second = connect(&shim.address);
    let connected = second
        .connect(
            ctx(),
            &ConnectRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Connect");
    assert_eq!(connected.task_pid, pid);
    assert_eq!(connected.shim_pid as i32, shim.pid);
    assert_eq!(wait(&second, &tc.id).exit_status, 3);
    drop(second);
    // Asked again, later, from yet another connection: same answer.
    let third = connect(&shim.address);
    assert_eq!(wait(&third, &tc.id).exit_status, 3);
    third
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = third.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_100mb_stdout_arrives_complete_and_in_order() {
    const LAST: u64 = 13_000_000; // `seq 1 13000000` prints ~106 MB.
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["seq", "1", &LAST.to_string()]);
    tc.save();
    let fifo = tc.bundle_dir().join("stdout.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let f = fs::File::open(&reader_path).expect("open FIFO for reading");
        let mut expect = 1u64;
        let mut bytes = 0u64;
        for line in BufReader::with_capacity(1 << 20, f).lines() {
            let line = line.expect("read FIFO");
            bytes += line.len() as u64 + 1;
            assert_eq!(line.parse::<u64>().ok(), Some(expect), "line out of order");
            expect += 1;
        }
        (expect - 1, bytes)
    });
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(
            ctx(),
            &create_request(&tc, rt.path(), &fifo.display().to_string(), ""),
        )
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 0);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let (last, bytes) = reader.join().expect("reader thread");
    assert_eq!(last, LAST);
    assert!(bytes > 100_000_000, "only {bytes} bytes");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn shim_delete_reports_the_recorded_exit_after_the_shim_is_gone() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "exit 9"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 9);
    drop(client);
    sigkill(shim.pid);
    wait_for(Duration::from_secs(5), "the shim to die", || {
        (!pid_alive(shim.pid)).then_some(())
    });
    let mut cmd = Command::new(shim_bin());
    cmd.args([
        "-namespace",
        "it",
        "-id",
        &tc.id,
        "-address",
        "",
        "-publish-binary",
        "",
    ])
    .arg("-bundle")
    .arg(tc.bundle_dir())
    .arg("delete")
    .stdin(Stdio::null());
    // DeleteResponse is binary: capture it raw.
    let out = cmd.output().expect("shim delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = DeleteResponse::parse_from_bytes(&out.stdout).expect("DeleteResponse");
    assert_eq!(resp.exit_status, 9);
    assert!(resp.pid > 0);
    assert!(resp.exited_at.seconds > 0);
}

// ---- real containerd 1.6 -------------------------------------------------

/// A private containerd (own root, state and sockets, CRI disabled) whose
/// PATH finds our shim as containerd-shim-ocirun-v2 and -runc-v2.
struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Put before `dir/bin` on containerd's PATH.
    path_head: Option<PathBuf>,
}

impl Containerd {
    /// A containerd that finds the shim under test through symlinks named as
    /// containerd expects (ocirun's and, standing in for it, runc's).
    fn new() -> Containerd {
        Containerd::with_path(None)
    }

    /// With `path_head` first on containerd's PATH (where an install put the
    /// shim) instead of the test's symlinks.
    fn with_path(path_head: Option<PathBuf>) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("shim-cd.")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let bin = d.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        if path_head.is_none() {
            for name in ["containerd-shim-ocirun-v2", "containerd-shim-runc-v2"] {
                symlink(shim_bin(), bin.join(name)).expect("symlink shim");
            }
        }
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n",
            d.display()
        );
        fs::write(d.join("config.toml"), config).expect("config.toml");
        let mut cd = Containerd {
            dir,
            child: None,
            path_head,
        };
        cd.start();
        let tar = busybox_image_tar(cd.dir.path());
        cd.ctr(&["images", "import", &tar.display().to_string()])
            .ok();
        cd
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn start(&mut self) {
        let d = self.dir.path();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .expect("containerd log");
        let mut path = format!(
            "{}:{}",
            d.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        if let Some(head) = &self.path_head {
            path = format!("{}:{path}", head.display());
        }
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        self.child = Some(child);
        wait_for(Duration::from_secs(20), "containerd to serve", || {
            let mut c = Command::new("ctr");
            c.arg("-a").arg(self.sock()).arg("version");
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c.status().is_ok_and(|s| s.success()).then_some(())
        });
    }

    /// kill -9 of this containerd only (by its pid).
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(self.sock()).args(args).stdin(Stdio::null());
        run_with_timeout(c, Duration::from_secs(60))
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task/default")
            .join(id)
    }

    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(2).map(|s| s.to_string()))?
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.ctr(&["task", "ls", "-q"]).stdout;
            for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
                self.ctr(&["task", "kill", "-s", "KILL", id]);
                let _ = wait_for_opt(Duration::from_secs(5), || {
                    (self.task_status(id).as_deref() != Some("RUNNING")).then_some(())
                });
                self.ctr(&["task", "rm", "-f", id]);
            }
            let cs = self.ctr(&["containers", "ls", "-q"]).stdout;
            for id in cs.lines().map(str::trim).filter(|l| !l.is_empty()) {
                self.ctr(&["containers", "rm", id]);
            }
        }
        // Shims exit once their task is deleted; give them a moment.
        let clean = wait_for_opt(Duration::from_secs(3), || {
            self.shim_pids().is_empty().then_some(())
        })
        .is_some();
        self.kill9();
        // Any shim of ours still up: kill it by pid.
        let left = self.shim_pids();
        for pid in &left {
            sigkill(*pid);
        }
        // Unmount whatever is left under our directory before it is removed.
        let root = self.dir.path().display().to_string();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        if !clean && !std::thread::panicking() {
            panic!("shims {left:?} still ran after their tasks were deleted");
        }
    }
}

impl Containerd {
    /// Shims started by this containerd: their command line names its socket.
    fn shim_pids(&self) -> Vec<i32> {
        let marker = self.sock().display().to_string();
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|p| {
                let pid = p.file_name().to_string_lossy().parse::<i32>().ok()?;
                let cmdline = fs::read(p.path().join("cmdline")).ok()?;
                (String::from_utf8_lossy(&cmdline).contains(&marker) && pid_alive(pid))
                    .then_some(pid)
            })
            .collect()
    }
}

fn wait_for_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A one-layer OCI image archive of the busybox rootfs, named busybox:latest.
/// Small and self-made; to be replaced by the testkit image builder.
fn busybox_image_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("image-rootfs");
    testkit::make_busybox_rootfs(&rootfs).expect("busybox rootfs");
    let mut layer = tar::Builder::new(Vec::new());
    layer.follow_symlinks(false);
    layer.append_dir_all(".", &rootfs).expect("tar layer");
    let layer = layer.into_inner().expect("tar layer");
    let layer_digest = sha256_hex(&layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] }
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256_hex(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len()
        }]
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256_hex(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": IMAGE,
                "org.opencontainers.image.ref.name": "latest"
            }
        }]
    })
    .to_string()
    .into_bytes();
    let path = dir.join("busybox-oci.tar");
    let file = fs::File::create(&path).expect("image tar");
    let mut ar = tar::Builder::new(file);
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, name, data)
            .expect("append to image tar");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    add(format!("blobs/sha256/{layer_digest}"), &layer);
    add(format!("blobs/sha256/{config_digest}"), &config);
    add(format!("blobs/sha256/{manifest_digest}"), &manifest);
    ar.finish().expect("finish image tar");
    path
}

/// `ctr run` flags selecting the runtime under test behind our shim: ocirun
/// through io.containerd.ocirun.v2, anything else (runc) through the runc
/// shim's name and options, which our shim stands in for.
fn runtime_flags(runtime: &Path) -> Vec<String> {
    let is_ocirun = runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("ocirun"));
    if is_ocirun {
        vec!["--runtime".into(), "io.containerd.ocirun.v2".into()]
    } else {
        vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            runtime.display().to_string(),
        ]
    }
}

fn ctr_run(cd: &Containerd, runtime: &Path, pre: &[&str], id: &str, cmd: &[&str]) -> Output {
    let flags = runtime_flags(runtime);
    let mut args: Vec<&str> = vec!["run"];
    args.extend(pre);
    args.extend(flags.iter().map(String::as_str));
    args.extend([IMAGE, id]);
    args.extend(cmd);
    cd.ctr(&args)
}

fn test_id() -> String {
    integration::unique_id()
}

#[test]
fn containerd_ctr_run_echo_hi() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    let out = ctr_run(&cd, rt.path(), &["--rm"], &id, &["echo", "hi"]);
    out.ok();
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(cd.task_status(&id), None, "task left after --rm");
}

#[test]
fn containerd_exit_code_and_stderr_propagate() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    let out = ctr_run(
        &cd,
        rt.path(),
        &["--rm"],
        &id,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 7"],
    );
    out.assert_code(7);
    assert_eq!(out.stdout, "to-out\n");
    assert!(out.stderr.contains("to-err"), "{out}");
}

#[test]
fn containerd_detached_task_kill_and_list() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    ctr_run(&cd, rt.path(), &["-d"], &id, &["sleep", "1000"]).ok();
    assert_eq!(cd.task_status(&id).as_deref(), Some("RUNNING"));
    cd.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    wait_for(Duration::from_secs(10), "the task to stop", || {
        (cd.task_status(&id).as_deref() == Some("STOPPED")).then_some(())
    });
    cd.ctr(&["task", "rm", &id]).ok();
    cd.ctr(&["containers", "rm", &id]).ok();
    assert_eq!(cd.task_status(&id), None);
}

#[test]
fn containerd_task_exec() {
    let runtime = runtime_with("exec");
    let cd = Containerd::new();
    let id = test_id();
    ctr_run(&cd, &runtime, &["-d"], &id, &["sleep", "1000"]).ok();
    let out = cd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in-exec; exit 3",
    ]);
    out.assert_code(3);
    assert_eq!(out.stdout, "in-exec\n");
    let ps = cd.ctr(&["task", "ps", &id]);
    ps.ok();
    assert!(ps.stdout.lines().count() >= 2, "{ps}");
}

#[test]
fn containerd_stdin_reaches_the_container_and_closes() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    let input = cd.dir.path().join("input.txt");
    fs::write(&input, "line one\nline two\n").expect("input");
    let flags = runtime_flags(rt.path());
    let mut c = Command::new("ctr");
    c.arg("-a")
        .arg(cd.sock())
        .args(["run", "--rm"])
        .args(&flags)
        .args([IMAGE, &id, "sh", "-c", "cat; echo done"])
        .stdin(fs::File::open(&input).expect("open input"));
    let out = run_with_timeout(c, Duration::from_secs(60));
    out.ok();
    assert_eq!(out.stdout, "line one\nline two\ndone\n");
}

#[test]
fn containerd_task_ps_lists_the_container_processes() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    ctr_run(
        &cd,
        rt.path(),
        &["-d"],
        &id,
        &["sh", "-c", "sleep 1000 & sleep 1000"],
    )
    .ok();
    let ps = wait_for(Duration::from_secs(10), "two processes in task ps", || {
        let ps = cd.ctr(&["task", "ps", &id]);
        (ps.success() && ps.stdout.lines().count() >= 3).then_some(ps)
    });
    assert!(ps.stdout.starts_with("PID"), "{ps}");
    cd.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    wait_for(Duration::from_secs(10), "the task to stop", || {
        (cd.task_status(&id).as_deref() == Some("STOPPED")).then_some(())
    });
    // A forced delete kills --all first; on a stopped task that must not fail.
    cd.ctr(&["task", "rm", "-f", &id]).ok();
    assert_eq!(cd.task_status(&id), None);
}

#[test]
fn containerd_run_tty() {
    let cd = Containerd::new();
    let id = test_id();
    let flags = runtime_flags(&runtime_with("create --console-socket")).join(" ");
    let line = format!(
        "ctr -a {} run -t --rm {flags} {IMAGE} {id} sh -c 'tty; exit 4'",
        cd.sock().display()
    );
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
    let out = run_with_timeout(c, Duration::from_secs(60));
    out.assert_code(4);
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
}

#[test]
fn containerd_restart_keeps_the_task_running() {
    let rt = Runtime::from_env();
    let mut cd = Containerd::new();
    let id = test_id();
    ctr_run(&cd, rt.path(), &["-d"], &id, &["sleep", "1000"]).ok();
    cd.kill9();
    cd.start();
    assert_eq!(cd.task_status(&id).as_deref(), Some("RUNNING"));
    // A new client of the shim (as a restarted daemon is) waits for the exit.
    let address = fs::read_to_string(cd.bundle(&id).join("address")).expect("address file");
    let client = connect(address.trim());
    let waiter_id = id.clone();
    let waiter = std::thread::spawn(move || wait(&client, &waiter_id));
    std::thread::sleep(Duration::from_millis(200));
    cd.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    assert_eq!(waiter.join().expect("waiter").exit_status, 137);
    assert_eq!(cd.task_status(&id).as_deref(), Some("STOPPED"));
    cd.ctr(&["task", "rm", &id]).ok();
    cd.ctr(&["containers", "rm", &id]).ok();
}

#[test]
fn containerd_runc_options_select_the_runtime_binary() {
    let cd = Containerd::new();
    let id = test_id();
    ctr_run(&cd, Path::new(RUNC), &["-d"], &id, &["sleep", "1000"]).ok();
    // Our shim (standing in for containerd-shim-runc-v2) took BinaryName.
    let saved: serde_json::Value = serde_json::from_slice(
        &fs::read(cd.bundle(&id).join("shim-runtime.json")).expect("shim-runtime.json"),
    )
    .expect("JSON");
    assert_eq!(saved["binary"], json!(RUNC));
    let out = cd.ctr(&["task", "exec", "--exec-id", "e1", &id, "echo", "via-runc"]);
    out.ok();
    assert_eq!(out.stdout, "via-runc\n");
}

#[test]
fn ttrpc_shim_exits_after_its_task_is_deleted_without_shutdown() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["true"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 0);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    drop(client);
    wait_for(Duration::from_secs(15), "the idle shim to exit", || {
        (!pid_alive(shim.pid)).then_some(())
    });
    assert!(!shim.socket().exists(), "socket left behind");
}

#[test]
fn ttrpc_output_reader_going_away_never_blocks_the_container() {
    let rt = Runtime::from_env();
    // ~15 MB, far more than a pipe buffer: blocks or dies of SIGPIPE if the
    // shim stops draining once the FIFO's reader is gone.
    let tc = TestContainer::new(&["seq", "1", "2000000"]);
    tc.save();
    let fifo = tc.bundle_dir().join("stdout.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let f = fs::File::open(&reader_path).expect("open FIFO");
        let mut first = String::new();
        BufReader::new(f).read_line(&mut first).expect("read FIFO");
        first
        // The reader closes the FIFO here, as a daemon that dies does.
    });
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(
            ctx(),
            &create_request(&tc, rt.path(), &fifo.display().to_string(), ""),
        )
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(reader.join().expect("reader"), "1\n");
    assert_eq!(wait(&client, &tc.id).exit_status, 0);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_output_written_while_nobody_reads_reaches_the_next_reader() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "echo first; sleep 1; seq 2 1000; sleep 1; echo last",
    ]);
    tc.save();
    let fifo = tc.bundle_dir().join("stdout.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut first = String::new();
        {
            let f = fs::File::open(&reader_path).expect("open FIFO");
            BufReader::new(f).read_line(&mut first).expect("read FIFO");
            // Gone, as a daemon that dies is, while the container writes on.
        }
        std::thread::sleep(Duration::from_millis(1500));
        let f = fs::File::open(&reader_path).expect("reopen FIFO");
        let rest: Vec<String> = BufReader::new(f)
            .lines()
            .map(|l| l.expect("read FIFO"))
            .collect();
        (first, rest)
    });
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(
            ctx(),
            &create_request(&tc, rt.path(), &fifo.display().to_string(), ""),
        )
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 0);
    let (first, rest) = reader.join().expect("reader");
    assert_eq!(first, "first\n");
    let mut want: Vec<String> = (2..=1000).map(|i| i.to_string()).collect();
    want.push("last".into());
    assert_eq!(rest, want);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_jsonfile_log_is_written_by_the_shim_with_rotation() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "seq 1 500; sleep 0.5; echo oops >&2"]);
    tc.save();
    let log = tc.bundle_dir().join("logs/c.log");
    let uri = format!("jsonfile://{}?max-size=2k&max-file=2", log.display());
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), &uri, &uri))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 0);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
    let rotated = tc.bundle_dir().join("logs/c.log.1");
    assert!(rotated.exists(), "no rotation happened");
    assert!(
        !tc.bundle_dir().join("logs/c.log.2").exists(),
        "max-file=2 exceeded"
    );
    let mut entries = Vec::new();
    for f in [&rotated, &log] {
        let text = fs::read_to_string(f).expect("log file");
        assert!(
            text.len() <= 2048,
            "{} is {} bytes",
            f.display(),
            text.len()
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON entry per line");
            assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
            entries.push(v);
        }
    }
    let stdout: Vec<&str> = entries
        .iter()
        .filter(|v| v["stream"] == "stdout")
        .filter_map(|v| v["log"].as_str())
        .collect();
    // The newest entries survive rotation, in order, ending with 500.
    assert_eq!(stdout.last(), Some(&"500\n"));
    let nums: Vec<u32> = stdout
        .iter()
        .map(|l| l.trim().parse().expect("number"))
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "out of order: {nums:?}"
    );
    assert!(
        entries
            .iter()
            .any(|v| v["stream"] == "stderr" && v["log"] == "oops\n"),
        "stderr entry missing"
    );
}

/// A stand-in for containerd's publish binary: fails its first call (the
/// daemon is "down"), then records each event's arguments and payload. The
/// `.args` file appears (renamed into place) only once both are complete.
/// With a `.slow` file in the events dir each call takes 0.4 s (a busy daemon).
fn fake_publisher(dir: &Path) -> PathBuf {
    let script = dir.join("publish.sh");
    let events = dir.join("events");
    fs::create_dir_all(&events).expect("events dir");
    let text = format!(
        "#!/bin/sh\nd={ev}\nif [ ! -e $d/.up ]; then touch $d/.up; cat >/dev/null; exit 1; fi\n\
         if [ -e $d/.slow ]; then sleep 0.4; fi\n\
         n=$(ls $d | wc -l)\nn=$(printf %03d $n)\necho \"$@\" > $d/.$n.tmp\ncat > $d/$n.bin\n\
         mv $d/.$n.tmp $d/$n.args\n",
        ev = events.display()
    );
    fs::write(&script, text).expect("write publish.sh");
    let mut perm = fs::metadata(&script).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).expect("chmod");
    events
}

#[test]
fn ttrpc_events_go_through_the_publish_binary_with_retries() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "exit 6"]);
    tc.save();
    let events = fake_publisher(tc.bundle_dir());
    let publish = tc.bundle_dir().join("publish.sh");
    let mut cmd = Command::new(shim_bin());
    cmd.args([
        "-namespace",
        "evns",
        "-id",
        &tc.id,
        "-address",
        "/fake/containerd.sock",
    ])
    .arg("-publish-binary")
    .arg(&publish)
    .arg("start")
    .current_dir(tc.bundle_dir())
    .stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    out.ok();
    let shim = DirectShim {
        address: out.stdout.trim().to_string(),
        pid: fs::read_to_string(tc.bundle_dir().join("shim.pid"))
            .expect("shim.pid")
            .trim()
            .parse()
            .expect("pid"),
    };
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 6);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let topics = wait_for(Duration::from_secs(15), "four events", || {
        let mut args: Vec<String> = fs::read_dir(&events)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "args"))
            .map(|p| p.display().to_string())
            .collect();
        args.sort();
        (args.len() >= 4).then_some(args)
    });
    let mut seen = Vec::new();
    for args_path in &topics {
        let args = fs::read_to_string(args_path).expect("args");
        let words: Vec<&str> = args.split_whitespace().collect();
        assert_eq!(
            &words[..3],
            ["--address", "/fake/containerd.sock", "publish"],
            "{args}"
        );
        assert!(args.contains("--namespace evns"), "{args}");
        let topic = words[words.iter().position(|w| *w == "--topic").expect("--topic") + 1];
        let any =
            Any::parse_from_bytes(&fs::read(args_path.replace(".args", ".bin")).expect("payload"))
                .expect("an Any on stdin");
        if topic == "/tasks/exit" {
            assert_eq!(any.type_url, "containerd.events.TaskExit");
            let exit = proto::events::TaskExit::parse_from_bytes(&any.value).expect("TaskExit");
            assert_eq!(exit.container_id, tc.id);
            assert_eq!(exit.exit_status, 6);
        }
        seen.push(topic.to_string());
    }
    assert_eq!(
        seen,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

/// Topics recorded by [`fake_publisher`], in order.
fn published_topics(events: &Path) -> Vec<String> {
    let mut args: Vec<PathBuf> = fs::read_dir(events)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    args.retain(|p| p.extension().is_some_and(|x| x == "args"));
    args.sort();
    args.iter()
        .filter_map(|p| {
            let text = fs::read_to_string(p).ok()?;
            let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            let i = words.iter().position(|w| w == "--topic")?;
            words.get(i + 1).cloned()
        })
        .collect()
}

#[test]
fn ttrpc_oom_kill_is_published_before_the_exit() {
    let rt = Runtime::from_env();
    let mut tc = TestContainer::new(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": 16 * 1024 * 1024 });
    tc.save();
    let events = fake_publisher(tc.bundle_dir());
    // The fake publisher fails its first call; make it succeed from the start.
    fs::write(events.join(".up"), "").expect("mark publisher up");
    let mut cmd = Command::new(shim_bin());
    cmd.args(["-namespace", "it", "-id", &tc.id, "-address", "/fake.sock"])
        .arg("-publish-binary")
        .arg(tc.bundle_dir().join("publish.sh"))
        .arg("start")
        .current_dir(tc.bundle_dir())
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    out.ok();
    let shim = DirectShim {
        address: out.stdout.trim().to_string(),
        pid: fs::read_to_string(tc.bundle_dir().join("shim.pid"))
            .expect("shim.pid")
            .trim()
            .parse()
            .expect("pid"),
    };
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(
        wait(&client, &tc.id).exit_status,
        137,
        "dd was not OOM-killed"
    );
    let topics = wait_for(Duration::from_secs(10), "the exit event", || {
        let t = published_topics(&events);
        t.iter().any(|t| t == "/tasks/exit").then_some(t)
    });
    assert_eq!(
        topics,
        ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit"]
    );
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_binary_logger_gets_the_process_output() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "echo to-out; echo to-err >&2; exit 2"]);
    tc.save();
    let dir = tc.bundle_dir().join("logger");
    fs::create_dir_all(&dir).expect("logger dir");
    let logger = dir.join("logger.sh");
    fs::write(
        &logger,
        format!(
            "#!/bin/sh\nd={}\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $*\" > $d/meta\n\
             exec 5>&-\ncat <&3 > $d/out &\ncat <&4 > $d/err &\nwait\n",
            dir.display()
        ),
    )
    .expect("logger script");
    let mut perm = fs::metadata(&logger).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&logger, perm).expect("chmod");
    // Percent-encoded like any URI: the logger gets the decoded values.
    let uri = format!(
        "binary://{}?mode=te%73t+run&dir=%2Fvar%2Flog&flag",
        logger.display()
    );
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), &uri, &uri))
        .expect("Create");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Start");
    assert_eq!(wait(&client, &tc.id).exit_status, 2);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
    wait_for(
        Duration::from_secs(10),
        "the logger to write both streams",
        || {
            let out = fs::read_to_string(dir.join("out")).ok()?;
            let err = fs::read_to_string(dir.join("err")).ok()?;
            (out == "to-out\n" && err == "to-err\n").then_some(())
        },
    );
    let meta = fs::read_to_string(dir.join("meta")).expect("meta");
    assert_eq!(
        meta.trim(),
        format!("it/{} mode test run dir /var/log flag", tc.id)
    );
}

/// The payload file of the first event published on `topic`.
fn event_payload(events: &Path, topic: &str) -> Option<PathBuf> {
    let mut args: Vec<PathBuf> = fs::read_dir(events)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "args"))
        .collect();
    args.sort();
    let found = args
        .into_iter()
        .find(|p| fs::read_to_string(p).is_ok_and(|a| a.split_whitespace().any(|w| w == topic)))?;
    Some(found.with_extension("bin"))
}

/// A shim started with the fake publisher (up from the start) in `tc`'s bundle.
fn shim_with_publisher(tc: &TestContainer) -> (DirectShim, PathBuf) {
    let events = fake_publisher(tc.bundle_dir());
    fs::write(events.join(".up"), "").expect("mark publisher up");
    let mut cmd = Command::new(shim_bin());
    cmd.args(["-namespace", "it", "-id", &tc.id, "-address", "/fake.sock"])
        .arg("-publish-binary")
        .arg(tc.bundle_dir().join("publish.sh"))
        .arg("start")
        .current_dir(tc.bundle_dir())
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    out.ok();
    let shim = DirectShim {
        address: out.stdout.trim().to_string(),
        pid: fs::read_to_string(tc.bundle_dir().join("shim.pid"))
            .expect("shim.pid")
            .trim()
            .parse()
            .expect("pid"),
    };
    (shim, events)
}

fn start_init(client: &TaskClient, id: &str) {
    client
        .start(
            ctx(),
            &StartRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("Start");
}

fn kill_wait_delete(client: &TaskClient, id: &str) {
    client
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("Kill");
    wait(client, id);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_oom_kill_of_a_child_is_published_while_the_init_survives() {
    let rt = Runtime::from_env();
    let mut tc = TestContainer::new(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd-exited > /dev/null; sleep 1000",
    ]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": 16 * 1024 * 1024 });
    tc.save();
    let (shim, events) = shim_with_publisher(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    start_init(&client, &tc.id);
    let oom = wait_for(Duration::from_secs(20), "a /tasks/oom event", || {
        event_payload(&events, "/tasks/oom")
    });
    let any = Any::parse_from_bytes(&fs::read(&oom).expect("payload")).expect("an Any");
    assert_eq!(any.type_url, "containerd.events.TaskOOM");
    let ev = proto::events::TaskOOM::parse_from_bytes(&any.value).expect("TaskOOM");
    assert_eq!(ev.container_id, tc.id);
    // The init lives on: the event came from the watch, not from an exit.
    let state = client
        .state(
            ctx(),
            &StateRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("State");
    assert_eq!(state.status.enum_value(), Ok(Status::RUNNING));
    assert!(pid_alive(state.pid as i32));
    assert_eq!(
        published_topics(&events),
        ["/tasks/create", "/tasks/start", "/tasks/oom"]
    );
    kill_wait_delete(&client, &tc.id);
    // One kill, one event: the exit found nothing new.
    let topics = wait_for(Duration::from_secs(10), "the delete event", || {
        let t = published_topics(&events);
        t.iter().any(|t| t == "/tasks/delete").then_some(t)
    });
    assert_eq!(topics.iter().filter(|t| *t == "/tasks/oom").count(), 1);
}

/// Pure cgroup v2 hosts get v2 metrics; v1 and hybrid hosts v1 metrics.
fn host_is_cgroup2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn ttrpc_stats_answers_the_cgroup_metrics() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    start_init(&client, &tc.id);
    let req = StatsRequest {
        id: tc.id.clone(),
        ..Default::default()
    };
    let any = wait_for(Duration::from_secs(10), "two pids in the stats", || {
        let any = client.stats(ctx(), &req).expect("Stats").stats.unwrap();
        let pids = if host_is_cgroup2() {
            proto::cgroups_v2::Metrics::parse_from_bytes(&any.value)
                .expect("v2 Metrics")
                .pids
                .current
        } else {
            proto::cgroups_v1::Metrics::parse_from_bytes(&any.value)
                .expect("v1 Metrics")
                .pids
                .current
        };
        (pids >= 2).then_some(any)
    });
    if host_is_cgroup2() {
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = proto::cgroups_v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert!(m.memory.usage > 0, "{m:?}");
        assert!(m.cpu.usage_usec > 0, "{m:?}");
    } else {
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = proto::cgroups_v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert!(m.memory.usage.usage > 0, "{m:?}");
        assert!(m.memory.usage.limit > 0, "{m:?}");
        assert!(m.cpu.usage.total > 0, "{m:?}");
        assert!(!m.cpu.usage.per_cpu.is_empty(), "{m:?}");
        // memory.stat was read.
        assert!(m.memory.total_rss + m.memory.total_cache > 0, "{m:?}");
    }
    // What a Stats call costs, seen from the client (for the README).
    let n = 50;
    let t0 = Instant::now();
    for _ in 0..n {
        client.stats(ctx(), &req).expect("Stats");
    }
    eprintln!("Stats: {:?} per call", t0.elapsed() / n);
    kill_wait_delete(&client, &tc.id);
}

#[test]
fn containerd_task_metrics_shows_memory_and_pids() {
    let rt = Runtime::from_env();
    let cd = Containerd::new();
    let id = test_id();
    ctr_run(&cd, rt.path(), &["-d"], &id, &["sleep", "1000"]).ok();
    let out = cd.ctr(&["task", "metrics", "--format", "json", &id]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("metrics JSON");
    let (memory, pids) = if host_is_cgroup2() {
        (
            v.pointer("/memory/usage").and_then(|v| v.as_u64()),
            v.pointer("/pids/current").and_then(|v| v.as_u64()),
        )
    } else {
        (
            v.pointer("/memory/usage/usage").and_then(|v| v.as_u64()),
            v.pointer("/pids/current").and_then(|v| v.as_u64()),
        )
    };
    assert!(memory.is_some_and(|m| m > 0), "{out}");
    assert_eq!(pids, Some(1), "{out}");
    // The table form names the same counters.
    let table = cd.ctr(&["task", "metrics", &id]);
    table.ok();
    assert!(table.stdout.contains("pids.current"), "{table}");
}

#[test]
fn install_puts_a_shim_containerd_finds_on_path() {
    let prefix = tempfile::Builder::new()
        .prefix("shim-install.")
        .tempdir()
        .expect("tempdir");
    let bin_dir = shim_bin().parent().expect("target dir").to_path_buf();
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(workspace_root())
        .arg("--no-print-directory")
        .arg("install-files")
        .arg(format!("PREFIX={}", prefix.path().display()))
        .arg(format!("BIN_DIR={}", bin_dir.display()));
    run_with_timeout(make, Duration::from_secs(60)).ok();
    let installed = prefix.path().join("bin");
    let link = installed.join("containerd-shim-ocirun-v2");
    assert_eq!(fs::read_link(&link).expect("a symlink"), Path::new("shim"));
    assert!(installed.join("ocirun").is_file());
    // containerd finds it through PATH alone: the test puts no shim of its own there.
    let cd = Containerd::with_path(Some(installed.clone()));
    let id = test_id();
    let run = |pre: &[&str], id: &str, cmd: &[&str]| {
        let mut args = vec!["run"];
        args.extend(pre);
        args.extend(["--runtime", "io.containerd.ocirun.v2", IMAGE, id]);
        args.extend(cmd);
        cd.ctr(&args)
    };
    let out = run(&["--rm"], &id, &["echo", "installed"]);
    out.ok();
    assert_eq!(out.stdout, "installed\n");
    // The installed shim ran the installed ocirun, the one next to it.
    let id = test_id();
    run(&["-d"], &id, &["sleep", "1000"]).ok();
    let saved: serde_json::Value = serde_json::from_slice(
        &fs::read(cd.bundle(&id).join("shim-runtime.json")).expect("shim-runtime.json"),
    )
    .expect("JSON");
    assert_eq!(saved["binary"], json!(installed.join("ocirun")));
    let shim_pid = fs::read_to_string(cd.bundle(&id).join("shim.pid")).expect("shim.pid");
    let exe = fs::read_link(format!("/proc/{}/exe", shim_pid.trim())).expect("shim exe");
    assert_eq!(exe, installed.join("shim"));
}

#[test]
fn ttrpc_terminal_with_a_binary_logger_is_refused_clearly() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["true"]);
    tc.save();
    let marker = tc.bundle_dir().join("logger-ran");
    let logger = tc.bundle_dir().join("logger.sh");
    fs::write(&logger, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("logger");
    let mut perm = fs::metadata(&logger).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&logger, perm).expect("chmod");
    let uri = format!("binary://{}", logger.display());
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    let mut req = create_request(&tc, rt.path(), &uri, &uri);
    req.terminal = true;
    let err = client.create(ctx(), &req).expect_err("Create must fail");
    let proto::ttrpc::Error::RpcStatus(status) = &err else {
        panic!("not an RPC status: {err:?}");
    };
    assert_eq!(status.code(), proto::ttrpc::Code::INVALID_ARGUMENT);
    assert!(
        status.message().contains("terminal") && status.message().contains("binary://"),
        "{}",
        status.message()
    );
    assert!(!marker.exists(), "the logger was started");
    // Nothing was created: the runtime does not know the container.
    tc.run(&["state", &tc.id]).assert_failed();
    let _ = client.shutdown(
        ctx(),
        &ShutdownRequest {
            now: true,
            ..Default::default()
        },
    );
}

// ---- exec, tty, pause/resume, update, pids, a client killed, leftovers -----

fn state_of(client: &TaskClient, id: &str, exec_id: &str) -> StateResponse {
    client
        .state(
            ctx(),
            &StateRequest {
                id: id.into(),
                exec_id: exec_id.into(),
                ..Default::default()
            },
        )
        .expect("State")
}

fn wait_exec(client: &TaskClient, id: &str, exec_id: &str) -> WaitResponse {
    client
        .wait(
            ctx(),
            &WaitRequest {
                id: id.into(),
                exec_id: exec_id.into(),
                ..Default::default()
            },
        )
        .expect("Wait")
}

/// The container's own process (user, env, cwd, capabilities) running `args`,
/// as the runtime-spec Process containerd sends with Exec.
fn exec_spec(tc: &TestContainer, args: &[&str], terminal: bool) -> MessageField<Any> {
    let mut p = tc.bundle.config["process"].clone();
    p["args"] = json!(args);
    p["terminal"] = json!(terminal);
    MessageField::some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&p).expect("process JSON"),
        ..Default::default()
    })
}

fn file_uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The decoded payload of the first event published on `topic`.
fn event_of<M: Message>(events: &Path, topic: &str, type_url: &str) -> M {
    let path = event_payload(events, topic).unwrap_or_else(|| panic!("no {topic} event"));
    let any = Any::parse_from_bytes(&fs::read(&path).expect("payload")).expect("an Any");
    assert_eq!(any.type_url, type_url);
    M::parse_from_bytes(&any.value).expect("event message")
}

#[test]
fn ttrpc_exec_reports_output_exit_code_and_events() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sleep", "1000"]);
    tc.save();
    let (shim, events) = shim_with_publisher(&tc);
    let client = connect(&shim.address);
    let init_pid = client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create")
        .pid;
    start_init(&client, &tc.id);
    let out = tc.bundle_dir().join("exec.out");
    let err = tc.bundle_dir().join("exec.err");
    client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: tc.id.clone(),
                exec_id: "e1".into(),
                stdout: file_uri(&out),
                stderr: file_uri(&err),
                spec: exec_spec(
                    &tc,
                    &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 4"],
                    false,
                ),
                ..Default::default()
            },
        )
        .expect("Exec");
    // Added, not started: no process yet.
    let added = state_of(&client, &tc.id, "e1");
    assert_eq!(added.status.enum_value(), Ok(Status::CREATED));
    assert_eq!(added.pid, 0);
    let started = client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .expect("Start exec");
    assert!(
        started.pid > 0 && started.pid != init_pid,
        "{started:?} (init {init_pid})"
    );
    assert_eq!(wait_exec(&client, &tc.id, "e1").exit_status, 4);
    let st = state_of(&client, &tc.id, "e1");
    assert_eq!(st.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!((st.pid, st.exit_status), (started.pid, 4));
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(tc.bundle_dir().join("exec-e1.exit")).expect("exit file"))
            .expect("JSON");
    assert_eq!(record["exit_status"], json!(4));
    assert_eq!(record["pid"], json!(started.pid));
    // The exec's end leaves the init running.
    let init = state_of(&client, &tc.id, "");
    assert_eq!(init.status.enum_value(), Ok(Status::RUNNING));
    let deleted = client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .expect("Delete exec");
    assert_eq!((deleted.pid, deleted.exit_status), (started.pid, 4));
    let gone = client.state(
        ctx(),
        &StateRequest {
            id: tc.id.clone(),
            exec_id: "e1".into(),
            ..Default::default()
        },
    );
    assert!(
        matches!(&gone, Err(proto::ttrpc::Error::RpcStatus(s)) if s.code() == proto::ttrpc::Code::NOT_FOUND),
        "{gone:?}"
    );
    assert_eq!(fs::read_to_string(&out).expect("exec stdout"), "exec-out\n");
    assert_eq!(fs::read_to_string(&err).expect("exec stderr"), "exec-err\n");

    let topics = wait_for(Duration::from_secs(10), "the exec's exit event", || {
        let t = published_topics(&events);
        (t.len() >= 5).then_some(t)
    });
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit"
        ]
    );
    let ev: proto::events::TaskExecAdded = event_of(
        &events,
        "/tasks/exec-added",
        "containerd.events.TaskExecAdded",
    );
    assert_eq!(
        (ev.container_id.as_str(), ev.exec_id.as_str()),
        (tc.id.as_str(), "e1")
    );
    let ev: proto::events::TaskExecStarted = event_of(
        &events,
        "/tasks/exec-started",
        "containerd.events.TaskExecStarted",
    );
    assert_eq!(
        (ev.container_id.as_str(), ev.exec_id.as_str(), ev.pid),
        (tc.id.as_str(), "e1", started.pid)
    );
    let ev: proto::events::TaskExit =
        event_of(&events, "/tasks/exit", "containerd.events.TaskExit");
    assert_eq!(
        (
            ev.container_id.as_str(),
            ev.id.as_str(),
            ev.pid,
            ev.exit_status
        ),
        (tc.id.as_str(), "e1", started.pid, 4)
    );
    kill_wait_delete(&client, &tc.id);
}

fn resize(client: &TaskClient, id: &str, exec_id: &str, width: u32, height: u32) {
    client
        .resize_pty(
            ctx(),
            &ResizePtyRequest {
                id: id.into(),
                exec_id: exec_id.into(),
                width,
                height,
                ..Default::default()
            },
        )
        .expect("ResizePty");
}

/// Waits until the text written to `path` contains `needle`.
fn wait_for_text(path: &Path, needle: &str) -> String {
    wait_for(
        Duration::from_secs(15),
        &format!("{needle:?} in {}", path.display()),
        || {
            let text = fs::read_to_string(path).ok()?;
            text.contains(needle).then_some(text)
        },
    )
}

#[test]
fn ttrpc_tty_process_gets_a_pty_and_resize_pty_changes_its_size() {
    let rt = Runtime::from_env();
    // `stty size` prints "ROWS COLS" of the terminal on stdin: the pty.
    let report = "tty; while true; do stty size; sleep 0.1; done";
    let mut tc = TestContainer::new(&["sh", "-c", report]);
    tc.config()["process"]["terminal"] = json!(true);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    let out = tc.bundle_dir().join("tty.out");
    let mut req = create_request(&tc, rt.path(), &file_uri(&out), "");
    req.terminal = true;
    client.create(ctx(), &req).expect("Create with a terminal");
    start_init(&client, &tc.id);
    assert!(state_of(&client, &tc.id, "").terminal);
    let text = wait_for_text(&out, "/dev/pts/");
    // A terminal's line discipline turns "\n" into "\r\n": this went through a pty.
    assert!(text.contains("\r\n"), "{text:?}");
    resize(&client, &tc.id, "", 123, 45);
    wait_for_text(&out, "45 123\r\n");
    resize(&client, &tc.id, "", 77, 21);
    wait_for_text(&out, "21 77\r\n");

    // An exec with a terminal of its own, resized on its own.
    let exec_out = tc.bundle_dir().join("exec-tty.out");
    client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: tc.id.clone(),
                exec_id: "t1".into(),
                terminal: true,
                stdout: file_uri(&exec_out),
                spec: exec_spec(&tc, &["sh", "-c", report], true),
                ..Default::default()
            },
        )
        .expect("Exec with a terminal");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                exec_id: "t1".into(),
                ..Default::default()
            },
        )
        .expect("Start exec");
    let text = wait_for_text(&exec_out, "/dev/pts/");
    let init_text = fs::read_to_string(&out).expect("init output");
    let tty_of = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("/dev/pts/"))
            .map(|l| l.trim().to_string())
    };
    assert_ne!(
        tty_of(&text),
        tty_of(&init_text),
        "the exec shares the init's pty"
    );
    resize(&client, &tc.id, "t1", 99, 33);
    wait_for_text(&exec_out, "33 99\r\n");
    // The init's pty kept its own size.
    let before = fs::read_to_string(&out).expect("init output").len();
    let text = wait_for(Duration::from_secs(10), "more init output", || {
        let t = fs::read_to_string(&out).ok()?;
        (t.len() > before + 20).then_some(t)
    });
    assert!(text[before..].contains("21 77"), "{:?}", &text[before..]);
    assert!(!text.contains("33 99"), "{text:?}");
    // A process without a terminal cannot be resized.
    client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: tc.id.clone(),
                exec_id: "plain".into(),
                spec: exec_spec(&tc, &["sleep", "1000"], false),
                ..Default::default()
            },
        )
        .expect("Exec");
    client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                exec_id: "plain".into(),
                ..Default::default()
            },
        )
        .expect("Start exec");
    let refused = client.resize_pty(
        ctx(),
        &ResizePtyRequest {
            id: tc.id.clone(),
            exec_id: "plain".into(),
            width: 10,
            height: 10,
            ..Default::default()
        },
    );
    assert!(refused.is_err(), "resized a process with no terminal");
    for exec_id in ["t1", "plain"] {
        client
            .kill(
                ctx(),
                &KillRequest {
                    id: tc.id.clone(),
                    exec_id: exec_id.into(),
                    signal: 9,
                    ..Default::default()
                },
            )
            .expect("Kill exec");
        assert_eq!(wait_exec(&client, &tc.id, exec_id).exit_status, 137);
    }
    kill_wait_delete(&client, &tc.id);
}

fn freezer_state(tc: &TestContainer) -> String {
    if host_is_cgroup2() {
        let frozen =
            fs::read_to_string(tc.cgroup_dir("").join("cgroup.freeze")).expect("cgroup.freeze");
        if frozen.trim() == "1" {
            "FROZEN"
        } else {
            "THAWED"
        }
        .to_string()
    } else {
        fs::read_to_string(tc.cgroup_dir("freezer").join("freezer.state"))
            .expect("freezer.state")
            .trim()
            .to_string()
    }
}

/// Lines in a file a container appends to.
fn line_count(p: &Path) -> usize {
    fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn ttrpc_pause_and_resume_freeze_and_thaw_the_cgroup() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "while true; do echo tick; sleep 0.05; done"]);
    tc.save();
    let (shim, events) = shim_with_publisher(&tc);
    let client = connect(&shim.address);
    let out = tc.bundle_dir().join("ticks");
    client
        .create(ctx(), &create_request(&tc, rt.path(), &file_uri(&out), ""))
        .expect("Create");
    start_init(&client, &tc.id);
    wait_for(Duration::from_secs(10), "ticks", || {
        (line_count(&out) >= 3).then_some(())
    });
    client
        .pause(
            ctx(),
            &PauseRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Pause");
    assert_eq!(freezer_state(&tc), "FROZEN");
    assert_eq!(
        state_of(&client, &tc.id, "").status.enum_value(),
        Ok(Status::PAUSED)
    );
    // Frozen means no progress.
    let frozen_at = line_count(&out);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        line_count(&out),
        frozen_at,
        "the container ran while paused"
    );
    // A paused process is not deleted from under it.
    let refused = client.delete(
        ctx(),
        &DeleteRequest {
            id: tc.id.clone(),
            ..Default::default()
        },
    );
    assert!(refused.is_err(), "deleted a paused task");
    client
        .resume(
            ctx(),
            &ResumeRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Resume");
    assert_eq!(freezer_state(&tc), "THAWED");
    assert_eq!(
        state_of(&client, &tc.id, "").status.enum_value(),
        Ok(Status::RUNNING)
    );
    wait_for(Duration::from_secs(10), "ticks after resume", || {
        (line_count(&out) > frozen_at + 2).then_some(())
    });
    let topics = wait_for(Duration::from_secs(10), "the resume event", || {
        let t = published_topics(&events);
        (t.len() >= 4).then_some(t)
    });
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/paused",
            "/tasks/resumed"
        ]
    );
    kill_wait_delete(&client, &tc.id);
}

fn cgroup_value(tc: &TestContainer, controller: &str, v1: &str, v2: &str) -> String {
    let file = if host_is_cgroup2() { v2 } else { v1 };
    let p = tc.cgroup_dir(controller).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn ttrpc_update_sets_new_limits_in_cgroupfs() {
    let rt = Runtime::from_env();
    let mut tc = TestContainer::new(&["sleep", "1000"]);
    tc.config()["linux"]["resources"]["memory"] = json!({ "limit": 64 * 1024 * 1024 });
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    start_init(&client, &tc.id);
    let limit = || cgroup_value(&tc, "memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(limit(), (64u64 * 1024 * 1024).to_string());
    // containerd sends runtime-spec LinuxResources as JSON in an Any.
    let resources = json!({
        "memory": { "limit": 48 * 1024 * 1024 },
        "pids": { "limit": 42 }
    });
    client
        .update(
            ctx(),
            &UpdateTaskRequest {
                id: tc.id.clone(),
                resources: MessageField::some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                        .into(),
                    value: serde_json::to_vec(&resources).expect("JSON"),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("Update");
    assert_eq!(limit(), (48u64 * 1024 * 1024).to_string());
    assert_eq!(cgroup_value(&tc, "pids", "pids.max", "pids.max"), "42");
    // The running task lives on under its new limits.
    assert_eq!(
        state_of(&client, &tc.id, "").status.enum_value(),
        Ok(Status::RUNNING)
    );
    kill_wait_delete(&client, &tc.id);
}

#[test]
fn ttrpc_pids_lists_the_container_processes_with_exec_ids() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    tc.save();
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    let init_pid = client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create")
        .pid;
    start_init(&client, &tc.id);
    client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: tc.id.clone(),
                exec_id: "x1".into(),
                spec: exec_spec(&tc, &["sleep", "1000"], false),
                ..Default::default()
            },
        )
        .expect("Exec");
    let exec_pid = client
        .start(
            ctx(),
            &StartRequest {
                id: tc.id.clone(),
                exec_id: "x1".into(),
                ..Default::default()
            },
        )
        .expect("Start exec")
        .pid;
    let req = PidsRequest {
        id: tc.id.clone(),
        ..Default::default()
    };
    // The init, its two sleeps and the exec.
    let listed = wait_for(Duration::from_secs(10), "four processes", || {
        let r = client.pids(ctx(), &req).expect("Pids");
        (r.processes.len() == 4).then_some(r.processes)
    });
    let mut pids: Vec<u32> = listed.iter().map(|p| p.pid).collect();
    pids.sort_unstable();
    let procs_file = tc.cgroup_dir("pids").join("cgroup.procs");
    let mut in_cgroup: Vec<u32> = fs::read_to_string(&procs_file)
        .expect("cgroup.procs")
        .lines()
        .map(|l| l.parse().expect("pid"))
        .collect();
    in_cgroup.sort_unstable();
    assert_eq!(pids, in_cgroup);
    assert!(
        pids.contains(&init_pid) && pids.contains(&exec_pid),
        "{pids:?}"
    );
    for p in &listed {
        let exec_id = p.info.as_ref().map(|any| {
            assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
            proto::runc_options::ProcessDetails::parse_from_bytes(&any.value)
                .expect("ProcessDetails")
                .exec_id
        });
        if p.pid == exec_pid {
            assert_eq!(exec_id.as_deref(), Some("x1"));
        } else {
            assert_eq!(exec_id, None, "pid {} is no exec", p.pid);
        }
    }
    client
        .kill(
            ctx(),
            &KillRequest {
                id: tc.id.clone(),
                exec_id: "x1".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .expect("Kill exec");
    assert_eq!(wait_exec(&client, &tc.id, "x1").exit_status, 137);
    kill_wait_delete(&client, &tc.id);
}

#[test]
fn ttrpc_client_killed_mid_wait_leaves_shim_and_container_running_for_a_new_client() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    tc.save();
    let shim = DirectShim::start(&tc);
    // The first client is a process of its own (as a daemon is), blocked in Wait.
    let mut client_proc = Command::new(env!("CARGO_BIN_EXE_shim-client"))
        .arg(&shim.address)
        .arg(&tc.id)
        .arg(tc.bundle_dir())
        .arg(rt.path())
        .arg(tc.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn shim-client");
    let mut line = String::new();
    BufReader::new(client_proc.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read shim-client");
    let pid: u32 = line
        .strip_prefix("waiting ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("shim-client said {line:?}"));
    // Give its Wait time to reach the shim, then kill -9 it mid-call.
    std::thread::sleep(Duration::from_millis(300));
    sigkill(i32::try_from(client_proc.id()).expect("pid"));
    let status = client_proc.wait().expect("reap shim-client");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(pid_alive(shim.pid), "the shim died with its client");
    assert!(pid_alive(pid as i32), "the container died with the client");

    let client = connect(&shim.address);
    let connected = client
        .connect(
            ctx(),
            &ConnectRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Connect");
    assert_eq!(connected.task_pid, pid);
    assert_eq!(connected.shim_pid as i32, shim.pid);
    assert_eq!(
        state_of(&client, &tc.id, "").status.enum_value(),
        Ok(Status::RUNNING)
    );
    client
        .kill(
            ctx(),
            &KillRequest {
                id: tc.id.clone(),
                signal: 15,
                ..Default::default()
            },
        )
        .expect("Kill");
    assert_eq!(wait(&client, &tc.id).exit_status, 7);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
}

#[test]
fn ttrpc_delete_and_shutdown_leave_no_socket_mount_or_cgroup() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sleep", "1000"]);
    tc.save();
    // The rootfs comes as an overlay mount the shim makes, as containerd's snapshots do.
    let layers = tc.bundle_dir().join("layers");
    for d in ["upper", "work"] {
        fs::create_dir_all(layers.join(d)).expect("overlay dirs");
    }
    fs::rename(tc.rootfs(), layers.join("lower")).expect("move the rootfs aside");
    fs::create_dir(tc.rootfs()).expect("empty rootfs dir");
    let shim = DirectShim::start(&tc);
    let client = connect(&shim.address);
    let mut req = create_request(&tc, rt.path(), "", "");
    req.rootfs = vec![proto::mount::Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            format!("lowerdir={}", layers.join("lower").display()),
            format!("upperdir={}", layers.join("upper").display()),
            format!("workdir={}", layers.join("work").display()),
        ],
        ..Default::default()
    }];
    client.create(ctx(), &req).expect("Create");
    start_init(&client, &tc.id);
    // While it runs, all three exist: the checks below can fail.
    let rootfs = tc.rootfs().display().to_string();
    let mounted = || {
        integration::host_mountinfo()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(rootfs.as_str()))
    };
    assert!(mounted(), "the rootfs is not mounted");
    assert!(shim.socket().exists());
    assert!(!tc.cgroup_dirs().is_empty(), "no cgroup");
    assert!(tc.state_dir().exists());
    kill_wait_delete(&client, &tc.id);
    wait_for(Duration::from_secs(10), "the shim to exit", || {
        (!pid_alive(shim.pid)).then_some(())
    });
    assert!(
        !shim.socket().exists(),
        "socket {} left behind",
        shim.socket().display()
    );
    assert!(!mounted(), "rootfs {rootfs} still mounted");
    let cgroups = tc.cgroup_dirs();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    tc.assert_no_trace();
}

#[test]
fn ttrpc_events_still_queued_at_shutdown_are_published_before_the_shim_exits() {
    let rt = Runtime::from_env();
    let tc = TestContainer::new(&["sh", "-c", "exit 4"]);
    tc.save();
    let (shim, events) = shim_with_publisher(&tc);
    // Each publish takes 0.4 s: Delete and Shutdown come while events still queue.
    fs::write(events.join(".slow"), "").expect("slow publisher");
    let client = connect(&shim.address);
    client
        .create(ctx(), &create_request(&tc, rt.path(), "", ""))
        .expect("Create");
    start_init(&client, &tc.id);
    assert_eq!(wait(&client, &tc.id).exit_status, 4);
    client
        .delete(
            ctx(),
            &DeleteRequest {
                id: tc.id.clone(),
                ..Default::default()
            },
        )
        .expect("Delete");
    let _ = client.shutdown(ctx(), &ShutdownRequest::default());
    drop(client);
    wait_for(Duration::from_secs(10), "the shim to exit", || {
        (!pid_alive(shim.pid)).then_some(())
    });
    // Everything it had queued went out before it did.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        published_topics(&events),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert!(!shim.socket().exists(), "socket left behind");
}
