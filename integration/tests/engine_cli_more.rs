//! The `engine` CLI against a real engined for the commands whose endpoints came
//! after the CLI: pull/push (and login/logout) against Debian's docker-registry on
//! 127.0.0.1, volumes (and `run -v name:/path`), `cp` both ways with escape
//! attempts, commit, events with since/until/filters, `system df`, the prunes,
//! info and version. Where the docker CLI shows the same thing, the two outputs
//! on the same daemon are compared.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use integration::containerd_lite::Registry;
use integration::daemon::unique_name;
use integration::engined::{BUSYBOX, Engined};
use integration::{COMMAND_TIMEOUT, Output, run_with_timeout};

fn engine(e: &Engined, args: &[&str]) -> Output {
    run_with_timeout(e.engine_command(args), COMMAND_TIMEOUT)
}

/// `engine ARGS` with `input` as its stdin.
fn engine_with_stdin(e: &Engined, args: &[&str], input: &[u8]) -> Output {
    let file = e.dir().join(format!("stdin-{}", unique_name()));
    std::fs::write(&file, input).unwrap();
    let mut c = e.engine_command(args);
    c.stdin(std::fs::File::open(&file).unwrap());
    run_with_timeout(c, COMMAND_TIMEOUT)
}

/// engined with busybox (loaded by the docker CLI, which other tests check).
fn daemon() -> Engined {
    let e = Engined::start();
    e.load_busybox();
    e
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// GET `path` from the registry (HTTP/1.0, no chunking): status and body.
fn registry_get(host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// The digest of a push's `<tag>: digest: sha256:... size: N` line.
fn pushed_digest(out: &Output, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line for {tag}:\n{out}"))
        .to_string()
}

fn cli_config(e: &Engined) -> serde_json::Value {
    let text =
        std::fs::read_to_string(e.engine_config_dir().join("config.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

fn base64_decode(s: &str) -> String {
    let mut c = Command::new("base64");
    c.arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn engine_cli_pull_push_against_a_registry() {
    let reg = Registry::start();
    let e = daemon();
    let image = format!("{}/bb:v1", reg.host());
    engine(&e, &["tag", BUSYBOX, &image]).ok();

    let push = engine(&e, &["push", &image]);
    push.ok();
    assert!(
        push.stdout.starts_with(&format!(
            "The push refers to repository [{}/bb]\n",
            reg.host()
        )),
        "{push}"
    );
    assert!(push.stdout.contains(": Pushed\n"), "{push}");
    let digest = pushed_digest(&push, "v1");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The registry has the tag, and the manifest under that digest.
    let (code, tags) = registry_get(&reg.host(), "/v2/bb/tags/list");
    assert_eq!(code, 200, "{tags}");
    assert!(tags.contains("\"v1\""), "{tags}");
    let (code, manifest) = registry_get(&reg.host(), &format!("/v2/bb/manifests/{digest}"));
    assert_eq!(code, 200, "{manifest}");
    // Again: every layer is there already, and the digest is the same.
    let again = engine(&e, &["push", "-q", &image]);
    assert_eq!(again.ok().stdout, format!("{image}\n"));
    let again = engine(&e, &["push", &image]);
    assert!(
        again.ok().stdout.contains(": Layer already exists\n"),
        "{again}"
    );
    assert_eq!(pushed_digest(&again, "v1"), digest);

    // Gone here, back from the registry, runnable.
    engine(&e, &["rmi", &image, BUSYBOX]).ok();
    let images = engine(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.ok().stdout, "", "{images}");
    let pull = engine(&e, &["pull", &image]);
    pull.ok();
    let lines: Vec<&str> = pull.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"v1: Pulling from bb"), "{pull}");
    assert!(
        lines.contains(&format!("Digest: {digest}").as_str()),
        "{pull}"
    );
    assert!(
        lines.contains(&format!("Status: Downloaded newer image for {image}").as_str()),
        "{pull}"
    );
    assert!(pull.stdout.contains(": Pull complete\n"), "{pull}");
    assert_eq!(lines.last(), Some(&image.as_str()), "{pull}");
    let run = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "echo",
            "pulled-and-ran",
        ],
    );
    assert_eq!(run.ok().stdout, "pulled-and-ran\n");
    // Up to date now; the default tag is said; -q prints the name alone.
    let pull = engine(&e, &["pull", &format!("{}/bb:v1", reg.host())]);
    assert!(
        pull.ok()
            .stdout
            .contains(&format!("Status: Image is up to date for {image}\n")),
        "{pull}"
    );
    engine(&e, &["tag", &image, &format!("{}/bb:latest", reg.host())]).ok();
    engine(&e, &["push", "-q", &format!("{}/bb", reg.host())]).ok();
    let pull = engine(&e, &["pull", &format!("{}/bb", reg.host())]);
    assert!(
        pull.ok().stdout.starts_with("Using default tag: latest\n"),
        "{pull}"
    );
    let q = engine(&e, &["pull", "-q", &format!("{}/bb@{digest}", reg.host())]);
    assert_eq!(q.ok().stdout, format!("{}/bb@{digest}\n", reg.host()));
    let run = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &format!("{}/bb@{digest}", reg.host()),
            "echo",
            "by-digest",
        ],
    );
    assert_eq!(run.ok().stdout, "by-digest\n");

    // What the registry does not have fails the command with the daemon's reason.
    let none = engine(&e, &["pull", &format!("{}/nosuch:latest", reg.host())]);
    none.assert_code(1);
    assert!(none.stderr.contains("manifest unknown"), "{none}");
    let none = engine(&e, &["push", &format!("{}/neverhere:v1", reg.host())]);
    none.assert_code(1);
    assert!(none.stderr.contains("neverhere"), "{none}");
}

#[test]
fn engine_cli_login_logout_and_authenticated_push_pull() {
    let (user, password) = ("alice", "s3cret-pw");
    let hash = bcrypt::hash(password, 5).unwrap();
    let reg = Registry::start_with_htpasswd(Some(&format!("{user}:{hash}\n")));
    let host = reg.host();
    let e = daemon();
    let image = format!("{host}/private:v1");
    engine(&e, &["tag", BUSYBOX, &image]).ok();

    let anonymous = engine(&e, &["push", &image]);
    anonymous.assert_code(1);
    assert!(
        anonymous.stderr.to_lowercase().contains("unauthorized")
            || anonymous.stderr.contains("authentication"),
        "{anonymous}"
    );

    let bad = engine(&e, &["login", &host, "-u", user, "-p", "wrong"]);
    bad.assert_code(1);
    assert_eq!(
        bad.stderr,
        format!(
            "Error response from daemon: login attempt to http://{host}/v2/ failed with status: 401 Unauthorized\n"
        )
    );
    assert!(
        cli_config(&e)["auths"][&host].is_null(),
        "a refused login stored credentials: {}",
        cli_config(&e)
    );
    let usage = engine(&e, &["login", &host, "-u", user]);
    usage.assert_code(125);

    // The password from stdin (newline trimmed), stored as docker stores it.
    let good = engine_with_stdin(
        &e,
        &["login", &host, "-u", user, "--password-stdin"],
        format!("{password}\n").as_bytes(),
    );
    assert_eq!(good.ok().stdout, "Login Succeeded\n");
    let cfg = cli_config(&e);
    let auth = cfg["auths"][&host]["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("{cfg}"));
    assert_eq!(base64_decode(auth), format!("{user}:{password}"));
    let mode = std::fs::metadata(e.engine_config_dir().join("config.json"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // pull and push now send the stored credentials.
    let push = engine(&e, &["push", &image]);
    let digest = pushed_digest(push.ok(), "v1");
    engine(&e, &["rmi", &image]).ok();
    let pull = engine(&e, &["pull", &image]);
    assert!(
        pull.ok().stdout.contains(&format!("Digest: {digest}\n")),
        "{pull}"
    );
    // The docker CLI on the same config file finds the same credentials.
    let mut docker = e.docker_command(&["pull", &image]);
    docker.env("DOCKER_CONFIG", e.engine_config_dir());
    run_with_timeout(docker, COMMAND_TIMEOUT).ok();

    // Forgotten: the registry refuses again.
    let out = engine(&e, &["logout", &host]);
    assert_eq!(
        out.ok().stdout,
        format!("Removing login credentials for {host}\n")
    );
    assert!(
        cli_config(&e)["auths"][&host].is_null(),
        "{}",
        cli_config(&e)
    );
    let out = engine(&e, &["logout", &host]);
    assert_eq!(out.ok().stdout, format!("Not logged in to {host}\n"));
    // --config instead of DOCKER_CONFIG: login writes there, push reads there (DOCKER_CONFIG has nothing now).
    let other = e.dir().join("other-config");
    let flag = ["--config", other.to_str().unwrap()];
    let login = engine(
        &e,
        &[&flag[..], &["login", &host, "-u", user, "-p", password]].concat(),
    );
    login.ok();
    assert!(other.join("config.json").is_file(), "{login}");
    engine(&e, &[&flag[..], &["push", &image]].concat()).ok();
    engine(&e, &[&flag[..], &["logout", &host]].concat()).ok();

    engine(&e, &["rmi", &image]).ok();
    let refused = engine(&e, &["pull", &image]);
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("denied") || refused.stderr.to_lowercase().contains("unauthorized"),
        "{refused}"
    );
}

#[test]
fn engine_cli_volumes_and_named_volume_mounts() {
    let e = daemon();
    let vol = format!("v{}", unique_name());
    assert_eq!(
        engine(&e, &["volume", "create", "--label", "tier=db", &vol])
            .ok()
            .stdout,
        format!("{vol}\n")
    );
    let ls = engine(&e, &["volume", "ls"]);
    assert_eq!(
        ls.ok().stdout,
        format!("DRIVER    VOLUME NAME\nlocal     {vol}\n")
    );
    assert_eq!(ls.stdout, e.docker(&["volume", "ls"]).ok().stdout);
    assert_eq!(
        engine(&e, &["volume", "ls", "-q"]).ok().stdout,
        format!("{vol}\n")
    );
    let mountpoint = engine(&e, &["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]);
    let mountpoint = PathBuf::from(mountpoint.ok().stdout.trim());
    assert!(mountpoint.is_dir(), "{}", mountpoint.display());
    let labels = engine(
        &e,
        &["volume", "inspect", "-f", "{{.Driver}} {{.Labels}}", &vol],
    );
    assert_eq!(labels.ok().stdout, "local map[tier:db]\n");
    let full: serde_json::Value =
        serde_json::from_str(&engine(&e, &["volume", "inspect", &vol]).ok().stdout).unwrap();
    assert_eq!(full[0]["Name"], vol.as_str());

    // run -v name:/path: written by one container, on the host, read by the next.
    let w = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{vol}:/data"),
            BUSYBOX,
            "sh",
            "-c",
            "echo persisted > /data/f",
        ],
    );
    w.ok();
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "persisted\n"
    );
    let r = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{vol}:/data:ro"),
            BUSYBOX,
            "sh",
            "-c",
            "cat /data/f; touch /data/g",
        ],
    );
    r.assert_failed();
    assert_eq!(r.stdout, "persisted\n");
    assert!(!mountpoint.join("g").exists());
    // A volume named on first use is created then.
    let fresh = format!("f{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{fresh}:/x"),
            BUSYBOX,
            "true",
        ],
    )
    .ok();
    let ls = engine(&e, &["volume", "ls", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = ls.ok().stdout.lines().collect();
    names.sort();
    let mut want = vec![vol.as_str(), fresh.as_str()];
    want.sort();
    assert_eq!(names, want);

    // In use: rm refuses; once the container is gone it removes the data too.
    let holder = format!("h{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &holder,
            "--network",
            "none",
            "-v",
            &format!("{vol}:/data"),
            BUSYBOX,
            "sleep",
            "300",
        ],
    )
    .ok();
    let busy = engine(&e, &["volume", "rm", &vol]);
    busy.assert_code(1);
    assert!(busy.stderr.contains("in use"), "{busy}");
    // prune -a keeps what a container uses, removes the rest.
    let prune = engine(&e, &["volume", "prune", "-a", "-f"]);
    let text = prune.ok().stdout.clone();
    assert!(
        text.starts_with(&format!("Deleted Volumes:\n{fresh}\n\n")),
        "{prune}"
    );
    assert!(text.contains("Total reclaimed space: "), "{prune}");
    assert_eq!(
        engine(&e, &["volume", "ls", "-q"]).ok().stdout,
        format!("{vol}\n")
    );
    engine(&e, &["rm", "-f", &holder]).ok();
    assert_eq!(
        engine(&e, &["volume", "rm", &vol]).ok().stdout,
        format!("{vol}\n")
    );
    assert!(!mountpoint.exists());
    let gone = engine(&e, &["volume", "inspect", &vol]);
    gone.assert_code(1);
    assert_eq!(engine(&e, &["volume", "ls", "-q"]).ok().stdout, "");
    // Nothing left: prune reports nothing.
    assert_eq!(
        engine(&e, &["volume", "prune", "-f"]).ok().stdout,
        "Total reclaimed space: 0B\n"
    );
}

/// A tar whose second entry tries to climb out of the extraction directory.
fn hostile_tar(evil: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, "ok.txt", &b"ok\n"[..]).unwrap();
    let name = format!("../../../../../../tmp/{evil}");
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    // append_data refuses `..`; write the name into the header by hand.
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &b"bad\n"[..]).unwrap();
    b.into_inner().unwrap()
}

/// Every path under `dir` whose file name is `name` (no symlinks followed).
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for ent in rd.flatten() {
            let p = ent.path();
            if ent.file_name().to_str() == Some(name) {
                found.push(p.clone());
            }
            if ent.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    found
}

#[test]
fn engine_cli_cp_both_ways_without_escapes() {
    let e = daemon();
    let c = format!("cp{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &c,
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "mkdir -p /tmp/dir/sub && echo inside > /tmp/dir/sub/in.txt && \
           echo marker-in-container > /etc/cp-marker && \
           ln -s ../../../../../../.. /tmp/up && ln -s / /tmp/root && sleep 300",
        ],
    )
    .ok();
    let cat = |path: &str| engine(&e, &["exec", &c, "cat", path]);
    integration::wait_for(COMMAND_TIMEOUT, "the container's files", || {
        cat("/etc/cp-marker").success().then_some(())
    });
    let host = tempfile::tempdir().unwrap();

    // Into the container: to a new name, into a directory, a directory.
    let src = host.path().join("copied.txt");
    std::fs::write(&src, "payload").unwrap();
    let out = engine(
        &e,
        &[
            "cp",
            src.to_str().unwrap(),
            &format!("{c}:/tmp/renamed.txt"),
        ],
    );
    assert!(out.ok().stderr.starts_with("Successfully copied "), "{out}");
    assert_eq!(cat("/tmp/renamed.txt").ok().stdout, "payload");
    engine(
        &e,
        &["cp", "-q", src.to_str().unwrap(), &format!("{c}:/tmp/dir/")],
    )
    .ok();
    assert_eq!(cat("/tmp/dir/copied.txt").ok().stdout, "payload");
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::write(tree.join("a/b.txt"), "deep").unwrap();
    engine(&e, &["cp", tree.to_str().unwrap(), &format!("{c}:/tmp/")]).ok();
    assert_eq!(cat("/tmp/tree/a/b.txt").ok().stdout, "deep");
    let missing = engine(
        &e,
        &[
            "cp",
            src.to_str().unwrap(),
            &format!("{c}:/nonexistent/dir/"),
        ],
    );
    missing.assert_code(1);

    // Out of it: a file to a new name, a directory, a directory's contents, to stdout.
    let out_file = host.path().join("in-copy.txt");
    engine(
        &e,
        &[
            "cp",
            &format!("{c}:/tmp/dir/sub/in.txt"),
            out_file.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "inside\n");
    let out_dir = host.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    engine(
        &e,
        &["cp", &format!("{c}:/tmp/dir"), out_dir.to_str().unwrap()],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(out_dir.join("dir/sub/in.txt")).unwrap(),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("dir/copied.txt")).unwrap(),
        "payload"
    );
    let contents = host.path().join("contents");
    std::fs::create_dir(&contents).unwrap();
    engine(
        &e,
        &["cp", &format!("{c}:/tmp/dir/."), contents.to_str().unwrap()],
    )
    .ok();
    assert!(contents.join("sub/in.txt").is_file());
    assert!(!contents.join("dir").exists());
    let new_dir = host.path().join("new-dir");
    engine(
        &e,
        &["cp", &format!("{c}:/tmp/dir/."), new_dir.to_str().unwrap()],
    )
    .ok();
    assert!(new_dir.join("sub/in.txt").is_file());
    let tar_out = engine(&e, &["cp", &format!("{c}:/tmp/dir/sub/in.txt"), "-"]);
    let mut names = Vec::new();
    for ent in tar::Archive::new(tar_out.ok().stdout.as_bytes())
        .entries()
        .unwrap()
    {
        names.push(ent.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(names, ["in.txt"]);

    // `..` and symlinks that point up resolve inside the container's root.
    let up = host.path().join("up.txt");
    engine(
        &e,
        &[
            "cp",
            &format!("{c}:/../../../../etc/cp-marker"),
            up.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(&up).unwrap(),
        "marker-in-container\n"
    );
    // engined refuses a symlink that climbs above the root (docker clamps it);
    // either way the host's files are out of reach.
    let via_link = host.path().join("via-link.txt");
    let out = engine(
        &e,
        &[
            "cp",
            &format!("{c}:/tmp/up/etc/cp-marker"),
            via_link.to_str().unwrap(),
        ],
    );
    if out.success() {
        assert_eq!(
            std::fs::read_to_string(&via_link).unwrap(),
            "marker-in-container\n"
        );
    } else {
        out.assert_code(1);
        assert!(out.stderr.contains("escapes the root"), "{out}");
        assert!(!via_link.exists());
    }
    let via_root = host.path().join("via-root.txt");
    engine(
        &e,
        &[
            "cp",
            &format!("{c}:/tmp/root/etc/cp-marker"),
            via_root.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(&via_root).unwrap(),
        "marker-in-container\n"
    );
    let evil = format!("evil-{}", unique_name());
    for target in [
        format!("{c}:/../../../../../tmp/{evil}"),
        format!("{c}:/tmp/root/tmp/{evil}"),
        format!("{c}:/tmp/up/tmp/{evil}"),
    ] {
        let out = engine(&e, &["cp", src.to_str().unwrap(), &target]);
        assert!(
            !Path::new("/tmp").join(&evil).exists(),
            "{target} wrote on the host"
        );
        if target.contains("/tmp/up/") && !out.success() {
            assert!(out.stderr.contains("escapes the root"), "{out}");
            continue;
        }
        out.ok();
        assert_eq!(
            cat(&format!("/tmp/{evil}")).ok().stdout,
            "payload",
            "{target}"
        );
        engine(&e, &["exec", &c, "rm", &format!("/tmp/{evil}")]).ok();
    }

    // A tar on stdin whose entry climbs out: nothing lands outside the container.
    let put = engine_with_stdin(
        &e,
        &["cp", "-", &format!("{c}:/tmp/dir")],
        &hostile_tar(&evil),
    );
    assert!(!Path::new("/tmp").join(&evil).exists(), "{put}");
    let outside: Vec<PathBuf> = find_named(e.dir(), &evil)
        .into_iter()
        .filter(|p| {
            !p.to_string_lossy().contains("/rootfs/") && !p.to_string_lossy().contains("/merged/")
        })
        .collect();
    let inside = engine(&e, &["exec", &c, "find", "/", "-xdev", "-name", &evil]);
    // engined refuses the whole archive, and writes nothing anywhere.
    put.assert_code(1);
    assert!(
        put.stderr.starts_with("Error response from daemon: "),
        "{put}"
    );
    assert_eq!(outside, Vec::<PathBuf>::new(), "{put}");
    assert_eq!(inside.stdout, "", "{inside}");
}

#[test]
fn engine_cli_commit_events_df_and_prunes() {
    let e = daemon();
    let since = now_secs();
    let src = format!("src{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "--name",
            &src,
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "mkdir /seed && echo seeded > /seed/x",
        ],
    )
    .ok();
    let src_id = e.container_id(&src);

    // commit: an image of the container's changes, with the -c changes applied.
    let commit = engine(
        &e,
        &[
            "commit",
            "-m",
            "seeded it",
            "-c",
            "ENV SEEDED=yes",
            "-c",
            "CMD [\"cat\", \"/seed/x\"]",
            &src,
            "committed:v1",
        ],
    );
    let id = commit.ok().stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{commit}");
    let img = engine(
        &e,
        &[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Comment}} {{json .Config.Cmd}}",
            "committed:v1",
        ],
    );
    assert_eq!(
        img.ok().stdout,
        format!("{id} seeded it [\"cat\",\"/seed/x\"]\n")
    );
    let run = engine(&e, &["run", "--rm", "--network", "none", "committed:v1"]);
    assert_eq!(run.ok().stdout, "seeded\n");
    let env = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "committed:v1",
            "sh",
            "-c",
            "echo $SEEDED",
        ],
    );
    assert_eq!(env.ok().stdout, "yes\n");
    // A named volume over an image path starts with the image's files.
    let vol = format!("seed{}", unique_name());
    let up = engine(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{vol}:/seed"),
            "committed:v1",
        ],
    );
    assert_eq!(up.ok().stdout, "seeded\n");

    // events: the container's life as the daemon saw it, since/until and filters.
    engine(&e, &["rm", &src]).ok();
    let until = (now_secs() + 1).to_string();
    let since = since.to_string();
    let args = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={src_id}"),
    ];
    let ev = engine(&e, &args);
    let actions: Vec<String> = ev
        .ok()
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[1], "container", "{l}");
            assert_eq!(f[3], src_id, "{l}");
            assert!(l.contains(&format!("name={src}")), "{l}");
            f[2].trim_end_matches(':').to_string()
        })
        .collect();
    let want: Vec<&str> = ["create", "start", "die", "commit", "destroy"]
        .into_iter()
        .filter(|a| actions.iter().any(|x| x == a))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| want.contains(&a.as_str()))
            .collect::<Vec<_>>(),
        want,
        "{ev}"
    );
    for a in ["create", "start", "die", "destroy"] {
        assert!(actions.iter().any(|x| x == a), "no {a} in {ev}");
    }
    // The same lines as the docker CLI's.
    assert_eq!(ev.stdout, e.docker(&args).ok().stdout);
    let die = engine(
        &e,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            &format!("container={src}"),
            "--filter",
            "event=die",
            "--format",
            "{{.Action}} {{.Actor.Attributes.exitCode}}",
        ],
    );
    assert_eq!(die.ok().stdout, "die 0\n");
    let json = engine(
        &e,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=image",
            "--format",
            "json",
        ],
    );
    let images: Vec<serde_json::Value> = json
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        images.iter().any(|v| v["Type"] == "image"),
        "no image event (commit, tag) in {json}"
    );
    // Before since: nothing.
    let early = engine(&e, &["events", "--since", "1", "--until", "2"]);
    assert_eq!(early.ok().stdout, "");

    // system df: what docker's CLI shows of the same daemon.
    let stopped = format!("st{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "--name",
            &stopped,
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "echo x > /written",
        ],
    )
    .ok();
    let running = format!("run{}", unique_name());
    engine(
        &e,
        &[
            "run",
            "-d",
            "--name",
            &running,
            "--network",
            "none",
            BUSYBOX,
            "sleep",
            "300",
        ],
    )
    .ok();
    let df = engine(&e, &["system", "df"]);
    assert_eq!(df.ok().stdout, e.docker(&["system", "df"]).ok().stdout);
    let rows: Vec<Vec<String>> = df
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0][..3], ["Images", "2", "1"], "{df}");
    assert_eq!(rows[1][..3], ["Containers", "2", "1"], "{df}");
    assert_eq!(rows[2][..3], ["Local Volumes", "1", "0"], "{df}");
    let v = engine(&e, &["system", "df", "-v"]);
    assert!(v.ok().stdout.contains(&stopped), "{v}");

    // info and version: the daemon's own figures.
    let info = engine(&e, &["info"]);
    assert!(
        info.ok()
            .stdout
            .contains(" Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n"),
        "{info}"
    );
    assert!(info.stdout.contains(" Images: 2\n"), "{info}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        info.stdout
            .contains(&format!(" Kernel Version: {}\n", kernel.trim())),
        "{info}"
    );
    let ncpu = std::thread::available_parallelism().unwrap().get();
    assert!(info.stdout.contains(&format!(" CPUs: {ncpu}\n")), "{info}");
    let fmt = [
        "info",
        "--format",
        "{{.ServerVersion}} {{.Driver}} {{.NCPU}} {{.Images}}",
    ];
    assert_eq!(engine(&e, &fmt).ok().stdout, e.docker(&fmt).ok().stdout);
    let ver = [
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.KernelVersion}}",
    ];
    let ours = engine(&e, &ver);
    assert_eq!(ours.ok().stdout, e.docker(&ver).ok().stdout);
    assert!(ours.stdout.contains(" 1.41 "), "{ours}");
    let client = engine(&e, &["version", "--format", "{{.Client.Version}}"]);
    assert_eq!(client.ok().stdout.trim(), env!("CARGO_PKG_VERSION"));

    // container prune: the stopped one goes, the running one stays.
    let stopped_id = e.container_id(&stopped);
    let prune = engine(&e, &["container", "prune", "-f"]);
    let text = prune.ok().stdout.clone();
    assert!(
        text.starts_with(&format!(
            "Deleted Containers:\n{stopped_id}\n\nTotal reclaimed space: "
        )),
        "{prune}"
    );
    let ps = engine(&e, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(ps.ok().stdout, format!("{running}\n"));

    // image prune: a dangling image (a commit without a name) goes.
    let old = engine(&e, &["commit", &running])
        .ok()
        .stdout
        .trim()
        .to_string();
    let dangling = engine(&e, &["images", "-f", "dangling=true", "-q", "--no-trunc"]);
    assert_eq!(dangling.ok().stdout, format!("{old}\n"));
    let tagged = engine(&e, &["images", "-f", "dangling=false", "-q", "--no-trunc"]);
    assert!(!tagged.ok().stdout.contains(&old), "{tagged}");
    let prune = engine(&e, &["image", "prune", "-f"]);
    assert!(
        prune.ok().stdout.contains(&format!("deleted: {old}\n")),
        "{prune}"
    );
    assert!(prune.stdout.starts_with("Deleted Images:\n"), "{prune}");
    assert_eq!(
        engine(&e, &["images", "-f", "dangling=true", "-q"])
            .ok()
            .stdout,
        ""
    );
    let busybox = engine(&e, &["images", "-q", BUSYBOX]);
    assert!(
        !busybox.ok().stdout.is_empty(),
        "busybox is used, it must stay"
    );

    // system prune: stopped containers and dangling images; running ones stay.
    let last = format!("last{}", unique_name());
    engine(
        &e,
        &["run", "--name", &last, "--network", "none", BUSYBOX, "true"],
    )
    .ok();
    let last_id = e.container_id(&last);
    let sp = engine(&e, &["system", "prune", "-f"]);
    assert!(
        sp.ok()
            .stdout
            .starts_with(&format!("Deleted Containers:\n{last_id}\n\n")),
        "{sp}"
    );
    assert!(
        sp.stdout.ends_with("Total reclaimed space: ")
            || sp.stdout.contains("Total reclaimed space: "),
        "{sp}"
    );
    let ps = engine(&e, &["ps", "-a", "-q", "--no-trunc"]);
    assert_eq!(ps.ok().stdout, format!("{}\n", e.container_id(&running)));
    // Nothing more to prune.
    assert_eq!(
        engine(&e, &["container", "prune", "-f"]).ok().stdout,
        "Total reclaimed space: 0B\n"
    );
}

#[test]
fn engine_cli_login_and_push_pull_with_token_auth() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = integration::token_auth::TokenServer::start(dir.path(), "bob", "t0ken-pw");
    let reg = Registry::start_with_token(&tokens);
    let host = reg.host();
    let e = daemon();
    let image = format!("{host}/tokened:v1");
    engine(&e, &["tag", BUSYBOX, &image]).ok();

    let bad = engine(&e, &["login", &host, "-u", "bob", "-p", "nope"]);
    bad.assert_code(1);
    assert!(
        bad.stderr.starts_with("Error response from daemon: "),
        "{bad}"
    );
    assert!(
        cli_config(&e)["auths"][&host].is_null(),
        "{}",
        cli_config(&e)
    );
    let refused_before = tokens.refused();
    assert!(refused_before >= 1, "the token server saw no refused login");

    let good = engine(&e, &["login", &host, "-u", "bob", "-p", "t0ken-pw"]);
    assert_eq!(good.ok().stdout, "Login Succeeded\n");
    let issued = tokens.issued();
    let push = engine(&e, &["push", &image]);
    let digest = pushed_digest(push.ok(), "v1");
    engine(&e, &["rmi", &image]).ok();
    let pull = engine(&e, &["pull", &image]);
    assert!(
        pull.ok().stdout.contains(&format!("Digest: {digest}\n")),
        "{pull}"
    );
    // Push and pull each went through the token server with the stored password.
    assert!(tokens.issued() >= issued + 2, "{} tokens", tokens.issued());

    engine(&e, &["logout", &host]).ok();
    engine(&e, &["rmi", &image]).ok();
    engine(&e, &["pull", &image]).assert_code(1);
}
