//! The `engine` CLI (target/debug/engine) against the harness's engined: every
//! command engined serves today, its tables and `--format` next to the real
//! docker CLI's on the same daemon, exit statuses, `-H`/`ENGINE_HOST`/contexts,
//! `run -it` through a pseudo-terminal, and docker-py (PyPI `docker`) as a third
//! client.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::daemon::{short_tempdir, unique_name};
use integration::engined::{BUSYBOX, Engined, workspace_bin};
use integration::{COMMAND_TIMEOUT, Output, run_with_timeout, wait_for};

fn engine(e: &Engined, args: &[&str]) -> Output {
    run_with_timeout(e.engine_command(args), COMMAND_TIMEOUT)
}

/// engined with busybox loaded through `engine load` (which the test checks).
fn daemon() -> Engined {
    let e = Engined::start();
    let tar = e.dir().join("busybox.tar");
    let image = testkit::image::busybox_image().unwrap();
    testkit::image::write_docker_archive(&image, &tar).unwrap();
    let out = engine(&e, &["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(out.ok().stdout, "Loaded image: busybox:latest\n", "{out}");
    e
}

fn docker_state(e: &Engined, name: &str) -> String {
    let out = e.docker(&["inspect", "--format", "{{.State.Status}}", name]);
    out.ok().stdout.trim().to_string()
}

#[test]
fn engine_cli_run_output_and_exit_statuses() {
    let e = daemon();
    let out = engine(
        &e,
        &["run", "--rm", BUSYBOX, "echo", "hello from a container"],
    );
    assert_eq!(out.ok().stdout, "hello from a container\n");
    // --rm removed it: nothing is left.
    assert_eq!(e.docker(&["ps", "-aq"]).ok().stdout, "");

    let name = unique_name();
    let out = engine(
        &e,
        &[
            "run",
            "--name",
            &name,
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    out.assert_code(3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(docker_state(&e, &name), "exited");

    // docker's statuses: 127 for a command that is not there, 125 for a daemon
    // error (a missing image that cannot be pulled) and for a bad command line;
    // and the real docker CLI gives the same for each.
    for (args, code) in [
        (vec!["run", "--rm", BUSYBOX, "nosuchcommand"], 127),
        (vec!["run", "--rm", BUSYBOX, "/etc/passwd"], 127),
        (vec!["run", "--rm", "nosuchimage", "true"], 125),
        (
            vec!["run", "--rm", "--memory", "lots", BUSYBOX, "true"],
            125,
        ),
        (
            vec!["run", "--rm", "--restart", "always", BUSYBOX, "true"],
            125,
        ),
        (vec!["run", "--rm", "--bogus-flag", BUSYBOX, "true"], 125),
        (vec!["rm", "nosuchcontainer"], 1),
    ] {
        let ours = engine(&e, &args);
        ours.assert_code(code);
        let theirs = e.docker(&args);
        assert_eq!(
            theirs.code(),
            Some(code),
            "docker differs:\n{theirs}\nengine:\n{ours}"
        );
    }
    let missing = engine(&e, &["run", "--rm", "nosuchimage", "true"]);
    assert!(
        missing
            .stderr
            .contains("Unable to find image 'nosuchimage:latest' locally"),
        "{missing}"
    );
    let nf = engine(&e, &["run", "--rm", BUSYBOX, "nosuchcommand"]);
    assert!(nf.stderr.contains("executable file not found"), "{nf}");
    let rm = engine(&e, &["rm", "nosuchcontainer"]);
    assert_eq!(
        rm.stderr,
        "Error response from daemon: No such container: nosuchcontainer\n"
    );

    // Flags after the image belong to the command; -e, -w, -u, --entrypoint,
    // --read-only, --memory and --cpus reach the container.
    let out = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "65534:65534",
            "--read-only",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--entrypoint",
            "sh",
            BUSYBOX,
            "-c",
            "echo $FOO $(pwd) $(id -u); touch /x 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(out.ok().stdout, "bar /tmp 65534\nread-only\n");
    let id = engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "limits",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--restart",
            "on-failure:2",
            BUSYBOX,
            "sleep",
            "60",
        ],
    );
    let id = id.ok().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let fields = e.docker(&[
        "inspect", "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "limits",
    ]);
    assert_eq!(fields.ok().stdout.trim(), "67108864 500000000 on-failure:2");
    let cg = std::fs::read_to_string(
        e.cgroup_dir("memory", "limits")
            .join("memory.limit_in_bytes"),
    )
    .unwrap();
    assert_eq!(cg.trim(), "67108864");
    // `create` makes a container that has not started.
    let created = engine(&e, &["create", "--name", "made", BUSYBOX, "true"]);
    assert_eq!(created.ok().stdout.trim().len(), 64);
    assert_eq!(docker_state(&e, "made"), "created");
}

#[test]
fn engine_cli_tables_and_formats_match_docker() {
    let e = daemon();
    let a = unique_name();
    let b = unique_name();
    engine(
        &e,
        &[
            "run", "-d", "--name", &a, "-l", "tier=web", BUSYBOX, "sleep", "60",
        ],
    )
    .ok();
    engine(
        &e,
        &["run", "--name", &b, "--network", "none", BUSYBOX, "true"],
    )
    .ok();
    // Columns without clocks in them are the same byte for byte.
    for args in [
        vec![
            "ps",
            "-a",
            "--format",
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.State}}\t{{.Names}}",
        ],
        vec![
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Label \"tier\"}} {{.Labels}}",
        ],
        vec!["ps", "--format", "{{json .Names}} {{upper .State}} {{.ID}}"],
        vec!["ps", "-aq"],
        vec!["ps", "-a", "-q", "--no-trunc"],
        vec![
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ],
        vec!["images"],
        vec!["images", "-q"],
        vec![
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ],
        vec![
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.Config.Image}} {{json .Config.Cmd}}",
            &a,
        ],
        vec!["inspect", "-f", "{{range .Config.Env}}[{{.}}]{{end}}", &b],
        vec![
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
        vec![
            "info",
            "--format",
            "{{.Containers}} {{.ContainersRunning}} {{.OSType}} {{.LoggingDriver}}",
        ],
    ] {
        let ours = engine(&e, &args);
        let theirs = e.docker(&args);
        assert_eq!(ours.ok().stdout, theirs.ok().stdout, "for {args:?}");
    }
    // The default ps table: the same header, and the same rows apart from clocks.
    let ours = engine(&e, &["ps", "-a"]).ok().stdout.clone();
    let theirs = e.docker(&["ps", "-a"]).ok().stdout.clone();
    // Column widths follow the rows' "N seconds ago", so compare the titles.
    let header = |s: &str| -> Vec<String> {
        s.lines()
            .next()
            .unwrap_or("")
            .split("  ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(header(&ours), header(&theirs));
    assert_eq!(
        header(&ours),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert_eq!(ours.lines().count(), 3, "{ours}");
    let names = |s: &str| -> Vec<String> {
        s.lines()
            .skip(1)
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&ours), names(&theirs));
    // json: one object per line with docker's keys.
    let json = engine(&e, &["ps", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.ok().stdout.trim()).unwrap();
    assert_eq!(row["Names"], a.as_str());
    assert_eq!(row["State"], "running");
    assert_eq!(row["Labels"], "tier=web");
    let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    let theirs: serde_json::Value =
        serde_json::from_str(e.docker(&["ps", "--format", "json"]).ok().stdout.trim()).unwrap();
    assert_eq!(keys, theirs.as_object().unwrap().keys().collect::<Vec<_>>());
    // inspect without a format is a JSON array of the full objects.
    let full = engine(&e, &["inspect", &a]);
    let v: serde_json::Value = serde_json::from_str(&full.ok().stdout).unwrap();
    assert_eq!(v[0]["Id"].as_str().unwrap(), e.container_id(&a));
    assert_eq!(v[0]["State"]["Running"], true);
    assert!(
        full.stdout.starts_with("[\n    {\n        \""),
        "{}",
        full.stdout
    );
    let img: serde_json::Value =
        serde_json::from_str(&engine(&e, &["inspect", BUSYBOX]).ok().stdout).unwrap();
    assert!(
        img[0]["RepoTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == BUSYBOX),
        "{img}"
    );
    let none = engine(&e, &["inspect", "nosuchobject"]);
    none.assert_code(1);
    assert_eq!(none.stdout, "[]\n");
    assert_eq!(none.stderr, "Error: No such object: nosuchobject\n");
    let bad = engine(&e, &["ps", "--format", "{{.Names"]);
    bad.assert_code(125);
    // The full version and info reports.
    let v = engine(&e, &["version"]);
    assert!(
        v.ok()
            .stdout
            .contains("API version:       1.41 (downgraded from"),
        "{v}"
    );
    assert!(v.stdout.contains("Server: "), "{v}");
    let i = engine(&e, &["info"]);
    assert!(
        i.ok().stdout.contains(" Containers: 2\n  Running: 1\n"),
        "{i}"
    );
}

#[test]
fn engine_cli_lifecycle_commands() {
    let e = daemon();
    let n = unique_name();
    engine(&e, &["run", "-d", "--name", &n, BUSYBOX, "sleep", "300"]).ok();
    assert_eq!(docker_state(&e, &n), "running");
    assert_eq!(engine(&e, &["pause", &n]).ok().stdout, format!("{n}\n"));
    assert_eq!(docker_state(&e, &n), "paused");
    assert!(
        engine(&e, &["ps", "--format", "{{.Status}}"])
            .ok()
            .stdout
            .contains("(Paused)")
    );
    assert_eq!(engine(&e, &["unpause", &n]).ok().stdout, format!("{n}\n"));
    assert_eq!(docker_state(&e, &n), "running");
    assert_eq!(
        engine(&e, &["stop", "-t", "1", &n]).ok().stdout,
        format!("{n}\n")
    );
    assert_eq!(docker_state(&e, &n), "exited");
    assert_eq!(engine(&e, &["wait", &n]).ok().stdout, "137\n");
    assert_eq!(engine(&e, &["start", &n]).ok().stdout, format!("{n}\n"));
    assert_eq!(docker_state(&e, &n), "running");
    let started = e
        .docker(&["inspect", "--format", "{{.State.StartedAt}}", &n])
        .ok()
        .stdout
        .clone();
    assert_eq!(
        engine(&e, &["restart", "-t", "1", &n]).ok().stdout,
        format!("{n}\n")
    );
    let restarted = e
        .docker(&["inspect", "--format", "{{.State.StartedAt}}", &n])
        .ok()
        .stdout
        .clone();
    assert_ne!(started, restarted);
    assert_eq!(docker_state(&e, &n), "running");
    // rm of a running container is refused without -f.
    let refused = engine(&e, &["rm", &n]);
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("cannot remove a running container"),
        "{refused}"
    );
    assert_eq!(
        engine(&e, &["kill", "-s", "KILL", &n]).ok().stdout,
        format!("{n}\n")
    );
    wait_for(Duration::from_secs(10), "the kill", || {
        (docker_state(&e, &n) == "exited").then_some(())
    });
    let renamed = unique_name();
    engine(&e, &["rename", &n, &renamed]).ok();
    assert_eq!(
        e.docker(&["inspect", "--format", "{{.Name}}", &renamed])
            .ok()
            .stdout
            .trim(),
        format!("/{renamed}")
    );
    assert_eq!(
        engine(&e, &["rm", &renamed]).ok().stdout,
        format!("{renamed}\n")
    );
    assert_eq!(e.docker(&["ps", "-aq"]).ok().stdout, "");
    // start of a missing container fails as docker's does.
    let missing = engine(&e, &["start", "nosuch"]);
    missing.assert_code(1);
    assert!(
        missing
            .stderr
            .contains("failed to start containers: nosuch"),
        "{missing}"
    );
    // wait prints each container's status; rm -f of a running one works.
    let w = unique_name();
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &w,
            BUSYBOX,
            "sh",
            "-c",
            "sleep 1; exit 9",
        ],
    )
    .ok();
    assert_eq!(engine(&e, &["wait", &w]).ok().stdout, "9\n");
    let f = unique_name();
    engine(&e, &["run", "-d", "--name", &f, BUSYBOX, "sleep", "300"]).ok();
    assert_eq!(
        engine(&e, &["rm", "-f", &f, &w]).ok().stdout,
        format!("{f}\n{w}\n")
    );
    // start -a attaches and exits with the container's status.
    let a = unique_name();
    engine(
        &e,
        &[
            "create",
            "--name",
            &a,
            BUSYBOX,
            "sh",
            "-c",
            "echo attached; exit 4",
        ],
    )
    .ok();
    let out = engine(&e, &["start", "-a", &a]);
    out.assert_code(4);
    assert_eq!(out.stdout, "attached\n");
}

#[test]
fn engine_cli_logs_exec_top_stats() {
    let e = daemon();
    let n = unique_name();
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &n,
            BUSYBOX,
            "sh",
            "-c",
            "echo one; echo two >&2; echo three; sleep 2; echo four; sleep 300",
        ],
    )
    .ok();
    wait_for(Duration::from_secs(10), "the first lines", || {
        engine(&e, &["logs", &n])
            .stdout
            .contains("three")
            .then_some(())
    });
    let logs = engine(&e, &["logs", &n]);
    assert_eq!(logs.ok().stdout, "one\nthree\n");
    assert_eq!(logs.stderr, "two\n");
    // logs -f follows new output (and a container that exits ends it).
    let f = unique_name();
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &f,
            BUSYBOX,
            "sh",
            "-c",
            "echo a; sleep 2; echo b",
        ],
    )
    .ok();
    let started = Instant::now();
    let follow = engine(&e, &["logs", "-f", &f]);
    assert_eq!(follow.ok().stdout, "a\nb\n");
    assert!(started.elapsed() >= Duration::from_secs(1), "{follow}");
    let tail = engine(&e, &["logs", "--tail", "1", &f]);
    assert_eq!(tail.ok().stdout, "b\n");
    let ts = engine(&e, &["logs", "-t", "--tail", "1", &f]);
    let (stamp, rest) = ts.ok().stdout.split_once(' ').unwrap();
    assert!(integration::is_rfc3339(stamp), "{stamp}");
    assert_eq!(rest, "b\n");

    // exec: output, status, -e, -w, -u, and stdin through -i.
    let out = engine(
        &e,
        &[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "65534",
            &n,
            "sh",
            "-c",
            "echo $X $(pwd) $(id -u); exit 5",
        ],
    );
    out.assert_code(5);
    assert_eq!(out.stdout, "1 /tmp 65534\n");
    let mut piped = e.engine_command(&["exec", "-i", &n, "sh", "-c", "tr a-z A-Z; echo done"]);
    let input = e.dir().join("stdin.txt");
    std::fs::write(&input, "from stdin\n").unwrap();
    piped.stdin(std::fs::File::open(&input).unwrap());
    let out = run_with_timeout(piped, COMMAND_TIMEOUT);
    assert_eq!(out.ok().stdout, "FROM STDIN\ndone\n");
    engine(
        &e,
        &["exec", "-d", &n, "sh", "-c", "echo detached > /tmp/d"],
    )
    .ok();
    wait_for(Duration::from_secs(10), "the detached exec", || {
        (engine(&e, &["exec", &n, "cat", "/tmp/d"]).stdout == "detached\n").then_some(())
    });
    let gone = engine(&e, &["exec", "nosuch", "true"]);
    gone.assert_code(1);
    assert_eq!(
        gone.stderr,
        "Error response from daemon: No such container: nosuch\n"
    );

    // top: the table docker prints, with the container's processes.
    let top = engine(&e, &["top", &n]);
    let theirs = e.docker(&["top", &n]);
    assert_eq!(
        top.ok().stdout.lines().next(),
        theirs.ok().stdout.lines().next()
    );
    assert!(top.stdout.contains("sleep 300"), "{top}");

    // stats --no-stream: one row with docker's columns and figures that add up.
    let stats = engine(&e, &["stats", "--no-stream", &n]);
    let lines: Vec<&str> = stats.ok().stdout.lines().collect();
    let theirs = e.docker(&["stats", "--no-stream", &n]);
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        words(theirs.ok().stdout.lines().next().unwrap())
    );
    assert!(lines[0].starts_with("CONTAINER ID   NAME"), "{stats}");
    assert_eq!(lines.len(), 2, "{stats}");
    assert!(lines[1].contains(&n), "{stats}");
    let f = engine(
        &e,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}} {{.NetIO}}",
            &n,
        ],
    );
    let theirs = e.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.NetIO}}",
        &n,
    ]);
    assert_eq!(f.ok().stdout, theirs.ok().stdout);
    assert!(
        f.stdout.starts_with(&format!("{n} ")) && f.stdout.ends_with(" 0B / 0B\n"),
        "{f}"
    );
    let mem = engine(
        &e,
        &["stats", "--no-stream", "--format", "{{.MemUsage}}", &n],
    );
    assert!(mem.ok().stdout.contains("iB / "), "{mem}");
}

#[test]
fn engine_cli_images_save_load_import_tag_rmi() {
    let e = daemon();
    let dir = e.dir().to_path_buf();
    // tag, then the new name is listed, runs, and rmi untags it.
    engine(&e, &["tag", BUSYBOX, "127.0.0.1:5055/bb:v1"]).ok();
    let listed = engine(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        listed.ok().stdout.contains("127.0.0.1:5055/bb:v1\n"),
        "{listed}"
    );
    let rmi = engine(&e, &["rmi", "127.0.0.1:5055/bb:v1"]);
    assert_eq!(rmi.ok().stdout, "Untagged: 127.0.0.1:5055/bb:v1\n");
    // save -> rmi -> load brings the same image back.
    let id = engine(&e, &["images", "-q", "--no-trunc"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let tar = dir.join("saved.tar");
    engine(&e, &["save", "-o", tar.to_str().unwrap(), BUSYBOX]).ok();
    let mut names = Vec::new();
    for entry in tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .entries()
        .unwrap()
    {
        names.push(
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    let deleted = engine(&e, &["rmi", BUSYBOX]);
    assert!(
        deleted.ok().stdout.contains("Deleted: sha256:"),
        "{deleted}"
    );
    assert_eq!(engine(&e, &["images", "-q"]).ok().stdout, "");
    let mut load = e.engine_command(&["load"]);
    load.stdin(std::fs::File::open(&tar).unwrap());
    let loaded = run_with_timeout(load, COMMAND_TIMEOUT);
    assert_eq!(loaded.ok().stdout, "Loaded image: busybox:latest\n");
    assert_eq!(
        engine(&e, &["images", "-q", "--no-trunc"])
            .ok()
            .stdout
            .trim(),
        id
    );
    // save to stdout is the same archive.
    let out = engine(&e, &["save", BUSYBOX]);
    assert!(
        out.ok().stdout.len() > 100_000,
        "{} bytes",
        out.stdout.len()
    );

    // import of a rootfs tar, with a change and a message.
    let rootfs = dir.join("rootfs");
    testkit::make_busybox_rootfs(&rootfs).unwrap();
    let rootfs_tar = dir.join("rootfs.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&rootfs_tar).unwrap());
        b.follow_symlinks(false);
        b.append_dir_all(".", &rootfs).unwrap();
        b.finish().unwrap();
    }
    let imported = engine(
        &e,
        &[
            "import",
            "-c",
            "ENV IMPORTED=yes",
            "-m",
            "from a test",
            rootfs_tar.to_str().unwrap(),
            "imported:v1",
        ],
    );
    assert!(
        imported.ok().stdout.trim().starts_with("sha256:"),
        "{imported}"
    );
    let out = engine(
        &e,
        &["run", "--rm", "imported:v1", "sh", "-c", "echo $IMPORTED"],
    );
    assert_eq!(out.ok().stdout, "yes\n");

    // image import-rootfs: a directory becomes an image whose default command is sh.
    let made = engine(
        &e,
        &[
            "image",
            "import-rootfs",
            rootfs.to_str().unwrap(),
            "fromdir:latest",
        ],
    );
    assert!(made.ok().stdout.trim().starts_with("sha256:"), "{made}");
    let out = engine(
        &e,
        &["run", "--rm", "fromdir", "echo", "hello from a container"],
    );
    assert_eq!(out.ok().stdout, "hello from a container\n");
    let cmd = engine(
        &e,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Cmd}}",
            "fromdir",
        ],
    );
    assert_eq!(cmd.ok().stdout.trim(), "[\"/bin/sh\"]");
    let tags = engine(&e, &["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    for t in ["busybox:latest", "imported:v1", "fromdir:latest"] {
        assert!(tags.ok().stdout.contains(t), "{tags}");
    }
    // rmi of an image in use is refused, as docker refuses it.
    engine(&e, &["create", "--name", "user", "fromdir", "true"]).ok();
    let used = engine(&e, &["rmi", "fromdir"]);
    used.assert_code(1);
    assert!(used.stderr.contains("conflict"), "{used}");
}

#[test]
fn engine_cli_hosts_env_and_contexts() {
    let e = daemon();
    let n = unique_name();
    engine(&e, &["run", "-d", "--name", &n, BUSYBOX, "sleep", "60"]).ok();
    let bin = workspace_bin("engine");
    let config = short_tempdir("eng-cfg-");
    let base = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .env("DOCKER_CONFIG", config.path())
            .env_remove("ENGINE_HOST")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    };
    let names = ["ps", "--format", "{{.Names}}"];
    let want = format!("{n}\n");
    let mut c = base(&names);
    c.env("ENGINE_HOST", e.host());
    assert_eq!(run_with_timeout(c, COMMAND_TIMEOUT).ok().stdout, want);
    let mut c = base(&names);
    c.env("DOCKER_HOST", e.host());
    assert_eq!(run_with_timeout(c, COMMAND_TIMEOUT).ok().stdout, want);
    // ENGINE_HOST wins over DOCKER_HOST; -H over both.
    let mut c = base(&names);
    c.env("ENGINE_HOST", e.host())
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    assert_eq!(run_with_timeout(c, COMMAND_TIMEOUT).ok().stdout, want);
    let mut c = base(&["-H", e.host(), "ps", "--format", "{{.Names}}"]);
    c.env("ENGINE_HOST", "unix:///nonexistent.sock");
    assert_eq!(run_with_timeout(c, COMMAND_TIMEOUT).ok().stdout, want);
    // A context made by the real docker CLI in the same config directory.
    let mut created = Command::new("docker");
    created
        .args([
            "context",
            "create",
            "eng",
            "--docker",
            &format!("host={}", e.host()),
        ])
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null());
    let out = run_with_timeout(created, COMMAND_TIMEOUT);
    out.ok();
    assert_eq!(
        run_with_timeout(
            base(&["--context", "eng", "ps", "--format", "{{.Names}}"]),
            COMMAND_TIMEOUT
        )
        .ok()
        .stdout,
        want
    );
    let mut c = base(&names);
    c.env("DOCKER_CONTEXT", "eng");
    assert_eq!(run_with_timeout(c, COMMAND_TIMEOUT).ok().stdout, want);
    // `docker context use` sets currentContext, which engine follows too.
    let mut used = Command::new("docker");
    used.args(["context", "use", "eng"])
        .env("DOCKER_CONFIG", config.path())
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null());
    run_with_timeout(used, COMMAND_TIMEOUT).ok();
    assert_eq!(
        run_with_timeout(base(&names), COMMAND_TIMEOUT).ok().stdout,
        want
    );
    // Errors: both -H and --context; an unknown context; nothing at the socket.
    let both = run_with_timeout(
        base(&["-H", e.host(), "--context", "eng", "ps"]),
        COMMAND_TIMEOUT,
    );
    both.assert_code(125);
    assert!(both.stderr.contains("conflicting options"), "{both}");
    let unknown = run_with_timeout(base(&["--context", "nosuch", "ps"]), COMMAND_TIMEOUT);
    unknown.assert_code(1);
    assert!(
        unknown.stderr.contains("context \"nosuch\" does not exist"),
        "{unknown}"
    );
    let dead = run_with_timeout(
        base(&["-H", "unix:///nonexistent/engined.sock", "ps"]),
        COMMAND_TIMEOUT,
    );
    dead.assert_code(1);
    assert_eq!(
        dead.stderr,
        "Cannot connect to engined at unix:///nonexistent/engined.sock. Is engined running?\n"
    );
    let dead_run = run_with_timeout(
        base(&["-H", "unix:///nonexistent/engined.sock", "run", BUSYBOX]),
        COMMAND_TIMEOUT,
    );
    dead_run.assert_code(125);
    let scheme = run_with_timeout(base(&["-H", "ssh://me@host", "ps"]), COMMAND_TIMEOUT);
    scheme.assert_code(125);
    // version still prints the client's part without a daemon.
    let v = run_with_timeout(
        base(&["-H", "unix:///nonexistent/engined.sock", "version"]),
        COMMAND_TIMEOUT,
    );
    v.assert_code(1);
    assert!(v.stdout.starts_with("Client:\n Version:"), "{v}");
}

/// Reads the terminal until `want` shows (or panics with what it saw).
fn expect(pty: &integration::console::HostPty, want: &str) -> String {
    integration::console::read_until(&pty.master, Duration::from_secs(20), |s| s.contains(want))
        .text
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "engine did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn engine_cli_run_it_through_a_pty() {
    use integration::console::{HostPty, type_in};
    use rustix::termios::{LocalModes, Winsize, tcgetattr, tcsetwinsize};
    let e = daemon();
    let name = unique_name();
    let pty = HostPty::new(24, 80);
    let before = tcgetattr(pty.open_slave()).unwrap();
    assert!(
        before
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON)
    );
    let mut cmd = e.engine_command(&[
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
    expect(&pty, "# ");
    // Raw mode: our terminal no longer echoes or edits lines itself.
    let raw = tcgetattr(pty.open_slave()).unwrap();
    assert!(!raw.local_modes.contains(LocalModes::ECHO), "{raw:?}");
    type_in(&pty.master, "echo $((6*7))\r");
    expect(&pty, "42");
    type_in(&pty.master, "stty size\r");
    expect(&pty, "24 80");
    // A resize of our terminal reaches the container's on SIGWINCH.
    tcsetwinsize(
        &pty.master,
        Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    type_in(&pty.master, "stty size\r");
    expect(&pty, "33 101");
    // ^P^Q detaches: engine exits 0, the container runs on, the terminal is back.
    type_in(&pty.master, "\x10\x11");
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert_eq!(docker_state(&e, &name), "running");
    let after = tcgetattr(pty.open_slave()).unwrap();
    assert!(
        after
            .local_modes
            .contains(LocalModes::ECHO | LocalModes::ICANON),
        "{after:?}"
    );

    // attach to another terminal container; its exit status is the container's.
    // (A second attach after a detach is left out: engined loses the stdin of a
    // re-attached terminal, with the docker CLI too.)
    let other = unique_name();
    engine(&e, &["run", "-d", "-it", "--name", &other, BUSYBOX, "sh"]).ok();
    let pty2 = HostPty::new(24, 80);
    let mut cmd = e.engine_command(&["attach", &other]);
    cmd.stdin(pty2.open_slave())
        .stdout(pty2.open_slave())
        .stderr(pty2.open_slave());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    type_in(&pty2.master, "echo again-$((1+1))\r");
    expect(&pty2, "again-2");
    type_in(&pty2.master, "exit 7\r");
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(7));

    // run -it without a terminal is refused as docker refuses it.
    let refused = engine(&e, &["run", "-it", "--rm", BUSYBOX, "true"]);
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("the input device is not a TTY"),
        "{refused}"
    );
}

#[test]
fn engine_cli_exec_it_through_a_pty() {
    use integration::console::{HostPty, type_in};
    let e = daemon();
    // exec -it on a running container, with its own status; a detach key
    // sequence typed in part is passed on.
    let n2 = unique_name();
    engine(&e, &["run", "-d", "--name", &n2, BUSYBOX, "sleep", "300"]).ok();
    let pty3 = HostPty::new(20, 70);
    let mut cmd = e.engine_command(&["exec", "-it", "--detach-keys", "x,y", &n2, "sh"]);
    cmd.stdin(pty3.open_slave())
        .stdout(pty3.open_slave())
        .stderr(pty3.open_slave());
    let mut child = cmd.spawn().unwrap();
    expect(&pty3, "# ");
    type_in(&pty3.master, "echo x");
    type_in(&pty3.master, "$((1+1))a\r");
    expect(&pty3, "x2a");
    type_in(&pty3.master, "tty; exit 3\r");
    let seen = expect(&pty3, "/dev/pts/");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert_eq!(wait_exit(&mut child).code(), Some(3));
}

/// docker-py (PyPI `docker`) in a venv the test makes: `docker.from_env()` lists,
/// runs and removes containers against engined.
#[test]
fn engine_cli_docker_py_smoke() {
    let e = daemon();
    let venv = short_tempdir("eng-venv-");
    let python = which("python3").expect("python3 on PATH (apt-get install python3-venv)");
    let made = run_with_timeout(
        {
            let mut c = Command::new(&python);
            c.args(["-m", "venv"]).arg(venv.path()).stdin(Stdio::null());
            c
        },
        Duration::from_secs(120),
    );
    made.ok();
    let vpy = venv.path().join("bin/python");
    let pip = run_with_timeout(
        {
            let mut c = Command::new(&vpy);
            c.args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "docker",
            ])
            .stdin(Stdio::null());
            c
        },
        Duration::from_secs(300),
    );
    pip.ok();
    let script = r#"
import docker
c = docker.from_env()
before = len(c.containers.list(all=True))
out = c.containers.run("busybox", "echo hi", remove=True)
assert out == b"hi\n", out
ct = c.containers.run("busybox", "sleep 60", detach=True, name="pyctr")
assert [x.name for x in c.containers.list()] == ["pyctr"], c.containers.list()
r = ct.exec_run("echo from-exec")
assert r.output == b"from-exec\n", r
ct.remove(force=True)
assert len(c.containers.list(all=True)) == before
assert any("busybox:latest" in i.tags for i in c.images.list())
print("docker-py ok", c.version()["ApiVersion"])
"#;
    let out = run_with_timeout(
        {
            let mut c = Command::new(&vpy);
            c.arg("-c")
                .arg(script)
                .env("DOCKER_HOST", e.host())
                .env_remove("DOCKER_CONTEXT")
                .env("DOCKER_CONFIG", e.dir().join("py-cli"))
                .stdin(Stdio::null());
            c
        },
        Duration::from_secs(120),
    );
    assert_eq!(out.ok().stdout, "docker-py ok 1.41\n");
    assert_eq!(e.docker(&["ps", "-aq"]).ok().stdout, "");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `engine build` against engined: the context less its `.dockerignore`d files,
/// `--build-arg`, `-f`, RUN output in the stream, `-q` printing only the id, and a
/// failing RUN's message and exit status.
#[test]
fn engine_cli_build_against_engined() {
    let e = daemon();
    let ctx = e.dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Build.file"),
        "FROM busybox\nARG A\nCOPY . /ctx/\nRUN echo arg=$A && ls /ctx\nCMD [\"cat\", \"/ctx/hello.txt\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello.txt"), "hi from the context\n").unwrap();
    std::fs::write(ctx.join("skip.log"), "x").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    let c = ctx.to_str().unwrap();
    // As docker's, a relative -f is relative to the working directory.
    let f = ctx.join("Build.file");
    let f = f.to_str().unwrap();
    let out = engine(
        &e,
        &["build", "-t", "built:1", "--build-arg", "A=1", "-f", f, c],
    );
    out.ok();
    assert!(
        out.stdout
            .contains("Step 4/5 : RUN echo arg=$A && ls /ctx\n"),
        "{out}"
    );
    assert!(out.stdout.contains("arg=1\n"), "{out}");
    assert!(out.stdout.contains("hello.txt\n"), "{out}");
    assert!(!out.stdout.contains("skip.log"), "{out}");
    assert!(
        out.stdout.contains("Successfully tagged built:1\n"),
        "{out}"
    );
    let run = engine(&e, &["run", "--rm", "built:1"]);
    assert_eq!(run.ok().stdout, "hi from the context\n");

    let q = engine(&e, &["build", "-q", "--build-arg", "A=1", "-f", f, c]);
    let id = q.ok().stdout.trim().to_string();
    let tagged = engine(&e, &["image", "inspect", "-f", "{{.Id}}", "built:1"]);
    assert_eq!(
        id,
        tagged.ok().stdout.trim(),
        "-q gives the id of the same (cached) image"
    );

    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let bad = engine(&e, &["build", c]);
    bad.assert_code(1);
    assert!(
        bad.stderr
            .contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{bad}"
    );
}
