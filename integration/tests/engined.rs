//! engined (on its own containerd-lite; one test on real containerd 1.6), driven by
//! the real docker CLI 28: the API
//! handshake, images, the container lifecycle, streams, exec, terminals, limits,
//! security defaults and Docker's error messages.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use integration::daemon::unique_name;
use integration::engined::{BUSYBOX, Engined};

fn daemon() -> Engined {
    let e = Engined::start();
    e.load_busybox();
    e
}

/// One raw HTTP/1.1 request on the API socket; returns the whole response.
fn raw(e: &Engined, request: &str) -> String {
    let mut s = UnixStream::connect(e.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may refuse (and close) before reading an oversized body.
    let _ = s.write_all(request.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn inspect(e: &Engined, name: &str, format: &str) -> String {
    e.docker(&["inspect", "--format", format, name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn engined_handshake_version_info_and_bad_requests() {
    let e = Engined::start();
    let out = e.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(out.ok().stdout.trim(), "1.41");
    let info = e.docker(&[
        "info",
        "--format",
        "{{.Containers}} {{.OSType}} {{.LoggingDriver}}",
    ]);
    assert_eq!(info.ok().stdout.trim(), "0 linux json-file");

    let ping = raw(
        &e,
        "HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
    for h in [
        "api-version: 1.41",
        "docker-experimental: false",
        "ostype: linux",
        "cache-control: no-cache, no-store, must-revalidate",
        "pragma: no-cache",
        "content-type: text/plain; charset=utf-8",
    ] {
        assert!(
            ping.to_ascii_lowercase().contains(h),
            "missing {h}:\n{ping}"
        );
    }
    let get = raw(
        &e,
        "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(get.ends_with("OK"), "{get}");

    // Any /v1.NN/ up to ours is served; newer is a 400 with dockerd's message.
    let old = raw(
        &e,
        "GET /v1.24/containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(old.starts_with("HTTP/1.1 200"), "{old}");
    let new = raw(
        &e,
        "GET /v1.99/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(new.starts_with("HTTP/1.1 400"), "{new}");
    assert!(new.contains("client version 1.99 is too new"), "{new}");

    // Malformed JSON and oversized bodies: JSON errors, and the daemon lives on.
    let bad = "{not json";
    let resp = raw(
        &e,
        &format!(
            "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
            bad.len()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{resp}"
    );
    assert!(resp.contains("\"message\""), "{resp}");
    let huge = "x".repeat(5 << 20);
    let resp = raw(
        &e,
        &format!(
            "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{huge}",
            huge.len()
        ),
    );
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    let unknown = raw(
        &e,
        "GET /v1.41/nosuch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    e.docker(&["version"]).ok();
}

#[test]
fn engined_load_images_tag_rmi() {
    let e = Engined::start();
    let image = testkit::image::busybox_image().unwrap();
    let docker_tar = e.dir().join("bb.tar");
    testkit::image::write_docker_archive(&image, &docker_tar).unwrap();
    let out = e.docker(&["load", "-i", docker_tar.to_str().unwrap()]);
    assert!(
        out.ok().stdout.contains("Loaded image: busybox:latest"),
        "{out}"
    );

    let mut oci = image.clone();
    oci.name = "ocilayout:v1".into();
    let oci_tar = e.dir().join("oci.tar");
    testkit::image::write_oci_layout(&oci, &oci_tar).unwrap();
    let out = e.docker(&["load", "-i", oci_tar.to_str().unwrap()]);
    assert!(
        out.ok().stdout.contains("Loaded image: ocilayout:v1"),
        "{out}"
    );

    let list = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let list = list.ok().stdout.clone();
    assert!(list.contains("busybox:latest"), "{list}");
    assert!(list.contains("ocilayout:v1"), "{list}");
    let id = inspect(&e, BUSYBOX, "{{.Id}}");
    assert_eq!(id, image.config.digest);

    e.docker(&["tag", "busybox", "example.com/team/bb:2"]).ok();
    let list = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(list.ok().stdout.contains("example.com/team/bb:2"), "{list}");
    e.run(&["--rm", "example.com/team/bb:2", "true"]).ok();

    let rmi = e.docker(&["rmi", "example.com/team/bb:2"]);
    assert!(
        rmi.ok().stdout.contains("Untagged: example.com/team/bb:2"),
        "{rmi}"
    );
    let nosuch = e.docker(&["rmi", "nosuchimage"]);
    nosuch.assert_code(1);
    assert!(
        nosuch.stderr.contains("No such image: nosuchimage"),
        "{nosuch}"
    );
    // The image a container uses keeps its last name unless forced.
    let name = unique_name();
    e.run(&["--name", &name, "ocilayout:v1", "true"]).ok();
    e.docker(&["rmi", "busybox"]).ok();
    let used = e.docker(&["rmi", "ocilayout:v1"]);
    used.assert_code(1);
    assert!(used.stderr.contains("conflict"), "{used}");
    e.docker(&["rm", &name]).ok();
    let gone = e.docker(&["rmi", "ocilayout:v1"]);
    assert!(gone.ok().stdout.contains("Deleted: sha256:"), "{gone}");
    // A missing image on create is a 404, which makes the CLI try a pull.
    let missing = e.run(&["--rm", "nosuchimage", "true"]);
    missing.assert_code(125);
    assert!(missing.stderr.contains("Unable to find image"), "{missing}");
}

#[test]
fn engined_run_rm_output_and_exit_codes() {
    let e = daemon();
    let out = e.run(&["--rm", BUSYBOX, "echo", "hi"]);
    assert_eq!(out.ok().stdout, "hi\n");
    let out = e.run(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    out.assert_code(3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // --rm: the daemon removes the container before `wait?condition=removed` ends.
    let ps = e.docker(&["ps", "-aq"]);
    assert_eq!(ps.ok().stdout.trim(), "", "{ps}");
    // Without --rm the container stays, with its exit code.
    let name = unique_name();
    e.run(&["--name", &name, BUSYBOX, "sh", "-c", "exit 5"])
        .assert_code(5);
    assert_eq!(
        inspect(&e, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 5"
    );
    // Environment, working directory, user, entrypoint, labels.
    let out = e.run(&[
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "--entrypoint",
        "sh",
        BUSYBOX,
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g) $HOSTNAME",
    ]);
    let words: Vec<String> = out
        .ok()
        .stdout
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(&words[..3], ["bar", "/tmp", "65534:65534"], "{out}");
    assert_eq!(words[3].len(), 12, "{out}");
    // stdin through attach, closed when the CLI's stdin ends.
    let mut cmd = e.docker_command(&["run", "--rm", "-i", "--network", "none", BUSYBOX, "cat"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
}

#[test]
fn engined_detached_ps_logs_stop_rm() {
    let e = daemon();
    let name = unique_name();
    let id = e
        .run(&[
            "-d",
            "--name",
            &name,
            "--label",
            "team=a",
            BUSYBOX,
            "sh",
            "-c",
            "echo one; echo two >&2; echo three; sleep 1000",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = e.docker(&["ps", "--format", "{{.Names}} {{.Status}} {{.Command}}"]);
    assert!(ps.ok().stdout.contains(&format!("{name} Up")), "{ps}");
    let filtered = e.docker(&["ps", "-q", "--filter", "label=team=a"]);
    assert_eq!(filtered.ok().stdout.trim(), &id[..12]);
    let logs = integration::wait_for(Duration::from_secs(10), "three log lines", || {
        let l = e.docker(&["logs", &name]);
        (l.stdout.lines().count() == 2).then_some(l)
    });
    assert_eq!(logs.stdout, "one\nthree\n");
    assert_eq!(logs.stderr, "two\n");
    // The tail counts lines of both streams, in the order they were logged.
    let tail = e.docker(&["logs", "--tail", "1", &name]);
    tail.ok();
    assert_eq!(
        tail.stdout.lines().count() + tail.stderr.lines().count(),
        1,
        "{tail}"
    );
    let ts = e.docker(&["logs", "-t", &name]);
    let first = ts.ok().stdout.lines().next().unwrap().to_string();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert!(integration::is_rfc3339(stamp), "{first}");
    assert_eq!(text, "one");
    // The log is Docker's json-file format (stdout and stderr are copied apart, so
    // only the order within a stream is fixed).
    let path = inspect(&e, &name, "{{.LogPath}}");
    let text = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_out = entries.iter().find(|v| v["stream"] == "stdout").unwrap();
    assert_eq!(first_out["log"], "one\n");
    let err = entries.iter().find(|v| v["stream"] == "stderr").unwrap();
    assert_eq!(err["log"], "two\n");
    assert!(
        integration::is_rfc3339(err["time"].as_str().unwrap()),
        "{err}"
    );

    // `sleep` as pid 1 ignores SIGTERM: stop waits for -t, then SIGKILLs.
    let start = Instant::now();
    e.docker(&["stop", "-t", "1", &name]).ok();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(
        inspect(&e, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    let ps = e.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.ok().stdout.contains(&format!("{name} Exited (137)")),
        "{ps}"
    );
    // A second stop is a 304: still success.
    e.docker(&["stop", &name]).ok();
    e.docker(&["start", &name]).ok();
    assert_eq!(inspect(&e, &name, "{{.State.Running}}"), "true");
    e.docker(&["kill", &name]).ok();
    let code = e.docker(&["wait", &name]);
    assert_eq!(code.ok().stdout.trim(), "137");
    e.docker(&["rm", &name]).ok();
    assert_eq!(e.docker(&["ps", "-aq"]).ok().stdout.trim(), "");
}

#[test]
fn engined_exec() {
    let e = daemon();
    let name = unique_name();
    e.run(&["-d", "--name", &name, BUSYBOX, "sleep", "1000"])
        .ok();
    let out = e.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo from-exec; echo e >&2; exit 4",
    ]);
    out.assert_code(4);
    assert_eq!(out.stdout, "from-exec\n");
    assert_eq!(out.stderr, "e\n");
    let out = e.docker(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "65534",
        &name,
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out.ok().stdout, "1 /tmp 65534\n");
    // exec -i: the CLI half-closes after its stdin ends; output keeps flowing.
    let mut cmd = e.docker_command(&["exec", "-i", &name, "sh", "-c", "cat; echo after-eof"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\nafter-eof\n");
    // exec -d, then the process is visible from another exec.
    e.docker(&["exec", "-d", &name, "sleep", "777"]).ok();
    let ps = integration::wait_for(Duration::from_secs(5), "the detached exec", || {
        let ps = e.docker(&["exec", &name, "ps"]);
        ps.stdout.contains("sleep 777").then_some(ps)
    });
    assert!(ps.stdout.contains("sleep 1000"));
    // exec -it through a pty.
    let (status, screen) = integration::daemon::run_in_pty(
        e.docker_command(&["exec", "-it", &name, "sh", "-c", "tty; exit 6"]),
        integration::COMMAND_TIMEOUT,
    );
    assert_eq!(status.code(), Some(6), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen:?}");
    // The container is still there after all of it.
    assert_eq!(inspect(&e, &name, "{{.State.Running}}"), "true");
}

#[test]
fn engined_run_it_through_a_pty() {
    let e = daemon();
    let (status, screen) = e.run_in_pty(&[
        "-it",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "tty; echo TERM=$TERM; exit 2",
    ]);
    assert_eq!(status.code(), Some(2), "{screen}");
    assert!(screen.contains("/dev/pts/0"), "{screen:?}");
    assert!(screen.contains("TERM=xterm"), "{screen:?}");
}

#[test]
fn engined_limits_in_cgroupfs() {
    let e = daemon();
    let name = unique_name();
    e.run(&[
        "-d",
        "--name",
        &name,
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        BUSYBOX,
        "sleep",
        "1000",
    ])
    .ok();
    let read = |ctl: &str, file: &str| {
        std::fs::read_to_string(e.cgroup_dir(ctl, &name).join(file))
            .unwrap_or_else(|err| panic!("{ctl}/{file}: {err}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "50");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    // The container sees the same limit.
    let out = e.docker(&[
        "exec",
        &name,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(out.ok().stdout.trim(), "67108864");
}

#[test]
fn engined_security_defaults_readonly_capdrop_seccomp() {
    let e = daemon();
    let out = e.run(&["--rm", BUSYBOX, "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(
        out.ok().stdout.split_whitespace().nth(1),
        Some("2"),
        "{out}"
    );
    let out = e.run(&[
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        BUSYBOX,
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(
        out.ok().stdout.split_whitespace().nth(1),
        Some("0"),
        "{out}"
    );
    let out = e.run(&["--rm", BUSYBOX, "grep", "^CapEff:", "/proc/self/status"]);
    assert_eq!(
        out.ok().stdout.split_whitespace().nth(1),
        Some("00000000a80425fb")
    );
    let out = e.run(&[
        "--rm",
        "--cap-drop",
        "chown",
        BUSYBOX,
        "grep",
        "^CapEff:",
        "/proc/self/status",
    ]);
    assert_eq!(
        out.ok().stdout.split_whitespace().nth(1),
        Some("00000000a80425fa")
    );
    let out = e.run(&["--rm", "--cap-drop", "chown", BUSYBOX, "chown", "1", "/tmp"]);
    out.assert_failed();
    let out = e.run(&["--rm", "--read-only", BUSYBOX, "touch", "/x"]);
    out.assert_failed();
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    let out = e.run(&[
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        BUSYBOX,
        "sh",
        "-c",
        "touch /scratch/ok && echo ok",
    ]);
    assert_eq!(out.ok().stdout, "ok\n");
    // Binds, read-only binds.
    let src = e.dir().join("bindsrc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "from host").unwrap();
    let bind = format!("{}:/data:ro", src.display());
    let out = e.run(&[
        "--rm",
        "-v",
        &bind,
        BUSYBOX,
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ]);
    out.assert_failed();
    assert!(out.stdout.contains("from host"), "{out}");
    // Masked paths as Docker's.
    let out = e.run(&["--rm", BUSYBOX, "sh", "-c", "wc -c < /proc/keys"]);
    assert_eq!(out.ok().stdout.trim(), "0");
}

#[test]
fn engined_errors_as_docker_prints_them() {
    let e = daemon();
    let out = e.docker(&["rm", "nosuch"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("Error response from daemon: No such container: nosuch"),
        "{out}"
    );
    let out = e.docker(&["logs", "nosuch"]);
    out.assert_code(1);
    let out = e.docker(&["inspect", "nosuch"]);
    out.assert_code(1);
    assert!(out.stderr.contains("No such object: nosuch"), "{out}");

    let name = unique_name();
    e.run(&["-d", "--name", &name, BUSYBOX, "sleep", "1000"])
        .ok();
    let dup = e.run(&["--name", &name, BUSYBOX, "true"]);
    dup.assert_code(125);
    assert!(dup.stderr.contains("is already in use"), "{dup}");
    let running = e.docker(&["rm", &name]);
    running.assert_code(1);
    assert!(
        running
            .stderr
            .contains("You cannot remove a running container"),
        "{running}"
    );
    e.docker(&["rm", "-f", &name]).ok();
    let ports = e.docker(&["run", "--rm", "-p", "8080:80", BUSYBOX, "true"]);
    ports.assert_code(125);
    assert!(ports.stderr.contains("port publishing"), "{ports}");
    let badcap = e.run(&["--rm", "--cap-add", "NOPE", BUSYBOX, "true"]);
    badcap.assert_code(125);
    // The daemon survived all of it.
    e.run(&["--rm", BUSYBOX, "true"]).ok();
}

/// `--containerd` with real containerd 1.6: it finds our shim as
/// `containerd-shim-ocirun-v2` on its PATH, and the shim writes the logs.
#[test]
fn engined_on_real_containerd_1_6() {
    let e = Engined::on_containerd_1_6();
    e.load_busybox();
    let out = e.run(&[
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    out.assert_code(3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    let name = unique_name();
    e.run(&[
        "-d",
        "--name",
        &name,
        BUSYBOX,
        "sh",
        "-c",
        "echo ready; sleep 1000",
    ])
    .ok();
    integration::wait_for(Duration::from_secs(10), "the log line", || {
        let l = e.docker(&["logs", &name]);
        (l.stdout == "ready\n").then_some(())
    });
    let ex = e.docker(&["exec", &name, "echo", "from exec"]);
    assert_eq!(ex.ok().stdout, "from exec\n");
    // The task is containerd's: ctr sees it under engined's namespace.
    let c = e.containerd().unwrap();
    let id = e.container_id(&name);
    assert_eq!(c.task_status(&id).as_deref(), Some("RUNNING"));
    e.docker(&["stop", "-t", "1", &name]).ok();
    assert_eq!(inspect(&e, &name, "{{.State.Status}}"), "exited");
}

/// An interactive shell through a terminal: the prompt shows before any newline,
/// typed input echoes back, ^P^Q detaches and leaves the container running.
#[test]
fn engined_interactive_shell_and_detach_keys() {
    use integration::console::{HostPty, read_until, type_in};
    let e = daemon();
    let name = unique_name();
    let pty = HostPty::new(24, 80);
    let mut cmd = e.docker_command(&[
        "run",
        "-it",
        "--network",
        "none",
        "--name",
        &name,
        BUSYBOX,
        "sh",
    ]);
    cmd.stdin(pty.open_slave())
        .stdout(pty.open_slave())
        .stderr(pty.open_slave());
    let mut child = cmd.spawn().unwrap();
    let t = Duration::from_secs(20);
    read_until(&pty.master, t, |s| s.contains("# "));
    type_in(&pty.master, "echo $((6*7))\r");
    read_until(&pty.master, t, |s| s.contains("42"));
    type_in(&pty.master, "stty size\r");
    read_until(&pty.master, t, |s| s.contains("24 80"));
    type_in(&pty.master, "\x10\x11");
    let deadline = Instant::now() + t;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the CLI did not detach");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(inspect(&e, &name, "{{.State.Status}}"), "running");
    // The session went to the log, as docker's json-file has it for a tty.
    let logs = e.docker(&["logs", &name]);
    assert!(logs.ok().stdout.contains("42"), "{logs}");
}

#[test]
fn engined_logs_follow_since_until_and_rename() {
    let e = daemon();
    let name = unique_name();
    e.run(&[
        "-d",
        "--name",
        &name,
        BUSYBOX,
        "sh",
        "-c",
        "echo early; sleep 2; echo late; sleep 1; echo last",
    ])
    .ok();
    // -f streams what comes and ends when the container does.
    let started = Instant::now();
    let follow = e.docker(&["logs", "-f", &name]);
    assert_eq!(follow.ok().stdout, "early\nlate\nlast\n");
    assert!(started.elapsed() >= Duration::from_secs(2), "{follow}");
    let ts = e.docker(&["logs", "-t", &name]);
    let stamps: Vec<String> = ts
        .ok()
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let late = jsonlog::parse_rfc3339_nanos(&stamps[1]).unwrap();
    // --since the second line's time (in seconds, with nanoseconds) and --until it.
    let at = format!("{}.{:09}", late / 1_000_000_000, late % 1_000_000_000);
    let since = e.docker(&["logs", "--since", &at, &name]);
    assert_eq!(since.ok().stdout, "late\nlast\n");
    let until = e.docker(&["logs", "--until", &at, &name]);
    assert_eq!(until.ok().stdout, "early\nlate\n");

    let new = unique_name();
    e.docker(&["rename", &name, &new]).ok();
    assert_eq!(inspect(&e, &new, "{{.Name}}"), format!("/{new}"));
    e.docker(&["inspect", &name]).assert_failed();
    let other = unique_name();
    e.run(&["--name", &other, BUSYBOX, "true"]).ok();
    let clash = e.docker(&["rename", &other, &new]);
    clash.assert_failed();
    assert!(clash.stderr.contains("already in use"), "{clash}");
}

/// `stats` streams one object a second with the previous sample as precpu.
#[test]
fn engined_stats_stream_over_the_api() {
    let e = daemon();
    let name = unique_name();
    e.run(&["-d", "--name", &name, BUSYBOX, "sleep", "1000"])
        .ok();
    let mut s = UnixStream::connect(e.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1.41/containers/{name}/stats HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let objects = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    while objects(&got).len() < 2 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let o = objects(&got);
    assert_eq!(o[0]["name"], format!("/{name}"));
    assert!(
        o[1]["pids_stats"]["current"].as_u64().unwrap() >= 1,
        "{}",
        o[1]
    );
    assert_eq!(
        o[1]["precpu_stats"]["cpu_usage"]["total_usage"],
        o[0]["cpu_stats"]["cpu_usage"]["total_usage"]
    );
    assert!(
        o[1]["memory_stats"]["usage"].as_u64().unwrap() > 0,
        "{}",
        o[1]
    );
}

/// `docker info` and `docker version` report what is true of this host and daemon:
/// counts, the kernel, CPUs and memory, the runtimes, and an ID kept across restarts.
#[test]
fn engined_info_and_version_report_true_figures() {
    let mut e = Engined::start();
    let image = e.load_busybox();
    e.run(&["-d", "--name", "up", image, "sleep", "1000"]).ok();
    e.run(&["--name", "done", image, "true"]).ok();
    let info: serde_json::Value =
        serde_json::from_str(&e.docker(&["info", "--format", "{{json .}}"]).ok().stdout).unwrap();
    assert_eq!(info["Containers"], 2, "{info}");
    assert_eq!(info["ContainersRunning"], 1, "{info}");
    assert_eq!(info["ContainersStopped"], 1, "{info}");
    assert_eq!(info["Images"], 1, "{info}");
    let uname_r = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    assert_eq!(
        info["KernelVersion"],
        String::from_utf8_lossy(&uname_r.stdout).trim(),
        "{info}"
    );
    let nproc = std::thread::available_parallelism().unwrap().get();
    assert_eq!(info["NCPU"], nproc, "{info}");
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(info["MemTotal"], mem_kib * 1024, "{info}");
    assert_eq!(info["Architecture"], std::env::consts::ARCH, "{info}");
    // The harness names ocirun by its path; ocirun is always there by name too.
    let default = info["DefaultRuntime"].as_str().unwrap();
    assert!(default.ends_with("ocirun"), "{info}");
    assert!(info["Runtimes"][default].is_object(), "{info}");
    assert!(info["Runtimes"]["ocirun"].is_object(), "{info}");
    let v1 = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(info["CgroupVersion"], if v1 { "1" } else { "2" }, "{info}");
    assert_eq!(info["LiveRestoreEnabled"], true, "{info}");
    assert!(
        info["RegistryConfig"]["InsecureRegistryCIDRs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == "127.0.0.0/8")),
        "{info}"
    );
    assert!(
        info["NGoroutines"].as_u64().is_some_and(|n| n > 1),
        "{info}"
    );
    let id = info["ID"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{info}");

    let version: serde_json::Value = serde_json::from_str(
        &e.docker(&["version", "--format", "{{json .Server}}"])
            .ok()
            .stdout,
    )
    .unwrap();
    let go_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(version["Arch"], go_arch, "{version}");
    assert_eq!(
        version["KernelVersion"],
        String::from_utf8_lossy(&uname_r.stdout).trim(),
        "{version}"
    );
    let components = version["Components"].as_array().unwrap();
    assert!(
        components
            .iter()
            .any(|c| c["Name"] == "containerd" && !c["Version"].as_str().unwrap_or("").is_empty()),
        "{version}"
    );

    // The same daemon after a restart: same ID, the running container still counted.
    e.stop();
    e.spawn();
    let again = e.docker(&["info", "--format", "{{.ID}} {{.ContainersRunning}}"]);
    assert_eq!(again.ok().stdout.trim(), format!("{id} 1"));
    e.docker(&["rm", "-f", "up", "done"]).ok();
}

/// `--network host`: the host's network namespace and hostname, in a UTS
/// namespace of the container's own, so a hostname set inside cannot reach the host.
#[test]
fn engined_network_host_shares_the_hosts_interfaces() {
    let e = Engined::start();
    let image = e.load_busybox();
    let out = e.docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        image,
        "sh",
        "-c",
        "hostname; ls /sys/class/net | sort | tr '\\n' ' '; echo; readlink /proc/self/ns/uts; readlink /proc/self/ns/net",
    ]);
    out.ok();
    let host_name = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut host_ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host_ifaces.sort();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(host_name.as_str()), "{out}");
    assert_eq!(
        lines.get(1).map(|l| l.trim()),
        Some(host_ifaces.join(" ").as_str()),
        "{out}"
    );
    let host_ns = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_ne!(
        lines.get(2).copied(),
        Some(host_ns("uts").as_str()),
        "{out}"
    );
    assert_eq!(
        lines.get(3).copied(),
        Some(host_ns("net").as_str()),
        "{out}"
    );
}
