//! engined driven by the real docker CLI 28: volumes (named, anonymous, the image's
//! VOLUMEs, copy-up, rm -v, prune), `docker cp` both ways on running and stopped
//! containers with its path safety, export, diff, commit, the prunes and system df.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use integration::daemon::unique_name;
use integration::engined::{BUSYBOX, Engined};

fn daemon() -> Engined {
    let e = Engined::start();
    e.load_busybox();
    e
}

fn out(e: &Engined, args: &[&str]) -> String {
    e.docker(args).ok().stdout.trim().to_string()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `docker <args>` with `input` on its stdin; returns (success, stdout, stderr).
fn docker_stdin(e: &Engined, args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut cmd = e.docker_command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        o.status.success(),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `docker <args>` whose stdout is binary (a tar).
fn docker_bytes(e: &Engined, args: &[&str]) -> Vec<u8> {
    let o = e
        .docker_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The body of `GET <path>` on the API socket, as JSON.
fn api_get(e: &Engined, path: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(e.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body.trim()).unwrap_or_else(|err| panic!("{err}: {body}"))
}

/// Entry names (and the contents of regular files) of a tar.
fn tar_entries(data: &[u8]) -> Vec<(String, Option<String>)> {
    let mut ar = tar::Archive::new(data);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let content = if e.header().entry_type().is_file() {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                Some(String::from_utf8_lossy(&b).into_owned())
            } else {
                None
            };
            (name, content)
        })
        .collect()
}

fn data_root(e: &Engined) -> std::path::PathBuf {
    e.dir().join("data")
}

#[test]
fn engined_volume_create_ls_inspect_rm_prune() {
    let e = daemon();
    assert_eq!(out(&e, &["volume", "create", "vol1"]), "vol1");
    assert_eq!(
        out(&e, &["volume", "create", "--label", "team=a", "vol2"]),
        "vol2"
    );
    // Creating an existing volume again is no error (dockerd's behaviour).
    assert_eq!(out(&e, &["volume", "create", "vol1"]), "vol1");
    assert_eq!(
        lines(&out(&e, &["volume", "ls", "-q"])),
        lines("vol1\nvol2")
    );
    assert_eq!(
        out(&e, &["volume", "ls", "-q", "--filter", "label=team=a"]),
        "vol2"
    );
    assert_eq!(
        out(&e, &["volume", "ls", "-q", "--filter", "name=vol1"]),
        "vol1"
    );
    let inspect = out(
        &e,
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Driver}} {{.Scope}} {{.Labels.team}} {{.Mountpoint}}",
            "vol2",
        ],
    );
    let mountpoint = data_root(&e).join("volumes/vol2/_data");
    assert_eq!(inspect, format!("local local a {}", mountpoint.display()));
    assert!(mountpoint.is_dir());
    let bad = e.docker(&["volume", "create", "a/b"]);
    assert!(!bad.success());
    assert!(bad.stderr.contains("includes invalid characters"), "{bad}");

    // In use: rm refuses, dangling leaves it out.
    e.run(&[
        "-d",
        "--name",
        "user1",
        "-v",
        "vol1:/data",
        BUSYBOX,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /data/f; sleep 1000",
    ])
    .ok();
    let rm = e.docker(&["volume", "rm", "vol1"]);
    assert!(!rm.success());
    assert!(rm.stderr.contains("volume is in use"), "{rm}");
    assert_eq!(
        out(&e, &["volume", "ls", "-q", "--filter", "dangling=true"]),
        "vol2"
    );
    assert_eq!(
        out(&e, &["volume", "ls", "-q", "--filter", "dangling=false"]),
        "vol1"
    );
    let nosuch = e.docker(&["volume", "rm", "nosuch"]);
    assert!(nosuch.stderr.contains("no such volume"), "{nosuch}");
    e.docker(&["volume", "rm", "-f", "nosuch"]).ok();
    let gone = e.docker(&["volume", "inspect", "nosuch"]);
    assert!(gone.stderr.contains("no such volume"), "{gone}");

    // Prune (API 1.41: every unused volume) frees what the container wrote.
    e.docker(&["rm", "-f", "user1"]).ok();
    assert!(mountpoint.is_dir());
    assert!(data_root(&e).join("volumes/vol1/_data/f").is_file());
    let pruned = out(&e, &["volume", "prune", "-f"]);
    assert!(
        pruned.contains("vol1") && pruned.contains("vol2"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space: 100kB"), "{pruned}");
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "");
    assert!(!mountpoint.exists());
    e.docker(&["volume", "create", "vol3"]).ok();
    e.docker(&["volume", "rm", "vol3"]).ok();
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "");
}

#[test]
fn engined_named_volume_keeps_data_and_gets_the_image_files() {
    let e = daemon();
    // The image's /home (with user/) is copied into the new, empty volume.
    let first = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "homevol:/home",
            BUSYBOX,
            "sh",
            "-c",
            "ls /home; echo kept > /home/note",
        ],
    );
    assert_eq!(first, "user");
    // A later container, mounting it elsewhere, sees both; no copy into a used volume.
    let second = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "homevol:/mnt",
            BUSYBOX,
            "sh",
            "-c",
            "ls /mnt; cat /mnt/note",
        ],
    );
    assert_eq!(second, "note\nuser\nkept");
    // nocopy: an empty volume stays empty.
    let empty = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "bare:/home:nocopy",
            BUSYBOX,
            "ls",
            "-A",
            "/home",
        ],
    );
    assert_eq!(empty, "");
    // A volume on /etc goes below the hosts/hostname binds, not over them.
    let etc = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--hostname",
            "volhost",
            "-v",
            "etcvol:/etc",
            BUSYBOX,
            "sh",
            "-c",
            "cat /etc/hostname; grep -c root /etc/passwd",
        ],
    );
    assert_eq!(etc, "volhost\n1");
    let hostdir = tempfile::tempdir().unwrap();
    let host_bind = format!("{}:/hosttmp", hostdir.path().display());
    let inspect = out(
        &e,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "m",
            "-v",
            "homevol:/data:ro",
            "-v",
            &host_bind,
            BUSYBOX,
            "sleep",
            "1000",
        ],
    );
    assert!(!inspect.is_empty());
    let mounts = out(
        &e,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}};{{end}}",
            "m",
        ],
    );
    assert_eq!(mounts, "volume homevol /data false;bind  /hosttmp true;");
    let ro = e.docker(&["exec", "m", "touch", "/data/x"]);
    assert!(!ro.success(), "{ro}");
}

#[test]
fn engined_anonymous_volumes_and_rm_v() {
    let e = daemon();
    e.run(&[
        "-d",
        "--name",
        "anon",
        "-v",
        "/anon",
        BUSYBOX,
        "sh",
        "-c",
        "echo hi > /anon/f; sleep 1000",
    ])
    .ok();
    let name = out(
        &e,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
            "anon",
        ],
    );
    let parts: Vec<&str> = name.split(' ').collect();
    assert_eq!(parts.len(), 3, "{name}");
    assert_eq!((parts[0], parts[2]), ("volume", "/anon"));
    let vol = parts[1].to_string();
    assert_eq!(vol.len(), 64);
    assert_eq!(out(&e, &["volume", "ls", "-q"]), vol);
    let label = out(
        &e,
        &["volume", "inspect", "--format", "{{json .Labels}}", &vol],
    );
    assert_eq!(label, r#"{"com.docker.volume.anonymous":""}"#);
    let file = data_root(&e).join("volumes").join(&vol).join("_data/f");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hi\n");
    // rm -v takes it along.
    e.docker(&["rm", "-f", "-v", "anon"]).ok();
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "");
    assert!(!file.exists());

    // Without -v it stays, dangling.
    e.run(&["--name", "anon2", "-v", "/keep", BUSYBOX, "true"])
        .ok();
    e.docker(&["rm", "anon2"]).ok();
    let kept = out(&e, &["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(kept.len(), 64, "{kept}");
    e.docker(&["volume", "rm", &kept]).ok();

    // --rm removes its anonymous volumes, not the named ones.
    e.run(&["--rm", "-v", "/gone", "-v", "named1:/n", BUSYBOX, "true"])
        .ok();
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "named1");
    // --mount type=volume without a source is anonymous too; tmpfs mounts work.
    let m = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            "type=volume,target=/mv",
            "--mount",
            "type=tmpfs,target=/scratch",
            BUSYBOX,
            "sh",
            "-c",
            "grep -c ' /scratch tmpfs' /proc/mounts; grep -c ' /mv ' /proc/mounts",
        ],
    );
    assert_eq!(m, "1\n1");
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "named1");
}

fn host_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("cpin.txt"), "copied in\n").unwrap();
    std::fs::create_dir_all(t.path().join("d/b")).unwrap();
    std::fs::write(t.path().join("d/a"), "A\n").unwrap();
    std::fs::write(t.path().join("d/b/c"), "C\n").unwrap();
    std::os::unix::fs::symlink("a", t.path().join("d/link")).unwrap();
    t
}

#[test]
fn engined_cp_both_ways_running_and_stopped() {
    let e = daemon();
    let host = host_tree();
    let h = host.path();
    let hs = |p: &str| h.join(p).to_string_lossy().into_owned();
    e.run(&["-d", "--name", "box", BUSYBOX, "sleep", "1000"])
        .ok();

    // Into a running container: a file renamed on the way, a directory into a dir.
    e.docker(&["cp", &hs("cpin.txt"), "box:/tmp/renamed.txt"])
        .ok();
    assert_eq!(
        out(&e, &["exec", "box", "cat", "/tmp/renamed.txt"]),
        "copied in"
    );
    e.docker(&["cp", &hs("d"), "box:/tmp/"]).ok();
    assert_eq!(
        out(
            &e,
            &[
                "exec",
                "box",
                "sh",
                "-c",
                "cat /tmp/d/a /tmp/d/b/c; readlink /tmp/d/link"
            ]
        ),
        "A\nC\na"
    );
    // From a tar on stdin: a file replaces a file; a directory is never replaced by
    // a non-directory, nor the other way round (the CLI asks noOverwriteDirNonDir).
    let (ok, _, err) = docker_stdin(
        &e,
        &["cp", "-", "box:/tmp"],
        &raw_tar_entry("renamed.txt", b"replaced\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(
        out(&e, &["exec", "box", "cat", "/tmp/renamed.txt"]),
        "replaced"
    );
    let (ok, _, err) = docker_stdin(&e, &["cp", "-", "box:/tmp"], &raw_tar_entry("d", b"x"));
    assert!(!ok);
    assert!(err.contains("cannot overwrite directory"), "{err}");
    let (ok, _, err) = docker_stdin(
        &e,
        &["cp", "-", "box:/tmp"],
        &raw_tar_typed("renamed.txt/", tar::EntryType::Directory, b""),
    );
    assert!(!ok);
    assert!(err.contains("cannot overwrite non-directory"), "{err}");
    assert_eq!(out(&e, &["exec", "box", "cat", "/tmp/d/a"]), "A");
    // Out of it: a file, a directory (renamed), and a tar on stdout.
    e.docker(&["cp", "box:/etc/passwd", &hs("passwd")]).ok();
    assert!(
        std::fs::read_to_string(h.join("passwd"))
            .unwrap()
            .starts_with("root:x:0:0")
    );
    e.docker(&["cp", "box:/tmp/d", &hs("d2")]).ok();
    assert_eq!(std::fs::read_to_string(h.join("d2/b/c")).unwrap(), "C\n");
    assert_eq!(
        std::fs::read_link(h.join("d2/link")).unwrap(),
        Path::new("a")
    );
    let tar = docker_bytes(&e, &["cp", "box:/tmp/renamed.txt", "-"]);
    assert_eq!(
        tar_entries(&tar),
        vec![("renamed.txt".to_string(), Some("replaced\n".to_string()))]
    );
    let tar = docker_bytes(&e, &["cp", "box:/tmp/d", "-"]);
    let names: Vec<String> = tar_entries(&tar).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["d/", "d/a", "d/b/", "d/b/c", "d/link"]);
    // The contents of a directory (`/.`) and a missing path.
    e.docker(&["cp", "box:/tmp/d/.", &hs("flat")]).ok();
    assert_eq!(std::fs::read_to_string(h.join("flat/a")).unwrap(), "A\n");
    let missing = e.docker(&["cp", "box:/nosuch", &hs("x")]);
    assert!(!missing.success());
    assert!(
        missing
            .stderr
            .contains("Could not find the file /nosuch in container box"),
        "{missing}"
    );
    // -a: owned by the container's user.
    e.run(&[
        "-d", "--name", "asuser", "--user", "1000", BUSYBOX, "sleep", "1000",
    ])
    .ok();
    e.docker(&["cp", "-a", &hs("cpin.txt"), "asuser:/tmp/mine"])
        .ok();
    assert_eq!(
        out(&e, &["exec", "asuser", "stat", "-c", "%u:%g", "/tmp/mine"]),
        "1000:1000"
    );

    // A stopped container (never started): in, then started, then out.
    e.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "stopped",
        "-v",
        "cpvol:/data",
        BUSYBOX,
        "sh",
        "-c",
        "cat /tmp/x /data/f; echo more > /tmp/after",
    ])
    .ok();
    e.docker(&["cp", &hs("cpin.txt"), "stopped:/tmp/x"]).ok();
    // Into its volume (mounted for the copy as it would be for a run).
    e.docker(&["cp", &hs("d/a"), "stopped:/data/f"]).ok();
    assert_eq!(
        std::fs::read_to_string(data_root(&e).join("volumes/cpvol/_data/f")).unwrap(),
        "A\n"
    );
    assert_eq!(out(&e, &["start", "-a", "stopped"]), "copied in\nA");
    e.docker(&["cp", "stopped:/tmp/after", &hs("after")]).ok();
    assert_eq!(std::fs::read_to_string(h.join("after")).unwrap(), "more\n");
    let vol_out = docker_bytes(&e, &["cp", "stopped:/data/f", "-"]);
    assert_eq!(tar_entries(&vol_out)[0].1.as_deref(), Some("A\n"));
    // The container could start again afterwards: nothing left mounted in its way.
    out(&e, &["start", "-a", "stopped"]);

    // A read-only volume and a read-only rootfs refuse clearly.
    e.run(&[
        "-d",
        "--name",
        "ro",
        "--read-only",
        "-v",
        "rovol:/ro:ro",
        BUSYBOX,
        "sleep",
        "1000",
    ])
    .ok();
    let ro = e.docker(&["cp", &hs("cpin.txt"), "ro:/ro/"]);
    assert!(
        ro.stderr.contains("mounted volume is marked read-only"),
        "{ro}"
    );
    let rootfs = e.docker(&["cp", &hs("cpin.txt"), "ro:/tmp/"]);
    assert!(
        rootfs
            .stderr
            .contains("container rootfs is marked read-only"),
        "{rootfs}"
    );
}

/// A tar whose only entry has `name` written into the header as is (the tar crate
/// refuses to set such names itself).
fn raw_tar_entry(name: &str, data: &[u8]) -> Vec<u8> {
    raw_tar_typed(name, tar::EntryType::Regular, data)
}

fn raw_tar_typed(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

fn symlink_then_file(link: &str, target: &str, file: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_link_name(target).unwrap();
    h.set_path(link).unwrap();
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_size(4);
    f.set_mode(0o644);
    f.set_path(file).unwrap();
    f.set_cksum();
    b.append(&f, &b"pwnd"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn engined_cp_refuses_escapes() {
    let e = daemon();
    // A host directory that must stay empty, whatever the archives say.
    let outside = tempfile::Builder::new()
        .prefix(&format!("cp-escape-{}", unique_name()))
        .tempdir_in("/tmp")
        .unwrap();
    let o = outside.path().to_str().unwrap().to_string();
    let o_name = outside
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    e.run(&["-d", "--name", "box", BUSYBOX, "sleep", "1000"])
        .ok();
    e.docker(&["create", "--name", "cold", BUSYBOX, "true"])
        .ok();
    let dotdot = format!("../../../../../../../../../../tmp/{o_name}/dotdot");
    for target in ["box:/tmp", "cold:/tmp"] {
        let (ok, _, err) = docker_stdin(&e, &["cp", "-", target], &raw_tar_entry(&dotdot, b"x"));
        assert!(!ok, "a ../ entry was accepted by {target}");
        assert!(err.contains("climbs out"), "{err}");
        // An absolute link out of the container, then a file through it: the link is
        // followed in the container's scope, so the file lands inside it.
        let (ok, _, err) = docker_stdin(
            &e,
            &["cp", "-", target],
            &symlink_then_file("abs", &o, "abs/pwned"),
        );
        assert!(ok, "{err}");
        // A relative link climbing out of the root is refused outright.
        let (ok, _, err) = docker_stdin(
            &e,
            &["cp", "-", target],
            &symlink_then_file(
                "rel",
                &format!("../../../../../../../../../..{o}"),
                "rel/pwned",
            ),
        );
        assert!(
            !ok,
            "a file through an escaping link was accepted by {target}"
        );
        assert!(err.contains("escapes the root"), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "something was written outside the container"
    );
    // The file through the absolute link is inside the container, at that path.
    assert_eq!(
        out(&e, &["exec", "box", "cat", &format!("{o}/pwned")]),
        "pwnd"
    );
    // A symlink the container itself made, pointing at the host directory: a copy
    // through it stays inside too.
    e.docker(&["exec", "box", "ln", "-s", &o, "/tmp/out"]).ok();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "through a link\n").unwrap();
    e.docker(&["cp", file.path().to_str().unwrap(), "box:/tmp/out/viafile"])
        .ok();
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        out(&e, &["exec", "box", "cat", &format!("{o}/viafile")]),
        "through a link"
    );
    // Reading through links never leaves the container either.
    e.docker(&[
        "exec",
        "box",
        "ln",
        "-s",
        "/etc/shadow-host-nope",
        "/tmp/dangling",
    ])
    .ok();
    let tar = docker_bytes(&e, &["cp", "box:/tmp/dangling", "-"]);
    let entries = tar_entries(&tar);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1, None, "the symlink came back as a file");
}

#[test]
fn engined_export_and_diff() {
    let e = daemon();
    e.run(&[
        "--name",
        "ch",
        BUSYBOX,
        "sh",
        "-c",
        "echo x > /tmp/new; echo extra >> /etc/passwd; rm /bin/ls; mkdir /made",
    ])
    .ok();
    let diff = out(&e, &["diff", "ch"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        [
            "C /bin",
            "D /bin/ls",
            "C /etc",
            "C /etc/passwd",
            "A /made",
            "C /tmp",
            "A /tmp/new"
        ],
        "{diff}"
    );
    let tar = docker_bytes(&e, &["export", "ch"]);
    let entries = tar_entries(&tar);
    let names: BTreeSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "tmp/new",
        "etc/passwd",
        "made/",
        "proc/",
        "bin/sh",
        "bin/busybox",
    ] {
        assert!(names.contains(want), "{want} missing from the export");
    }
    assert!(!names.contains("bin/ls"), "a deleted file was exported");
    let passwd = entries
        .iter()
        .find(|(n, _)| n == "etc/passwd")
        .and_then(|(_, c)| c.clone())
        .unwrap();
    assert!(passwd.ends_with("extra\n"), "{passwd}");

    // A running container: its root filesystem only, no volume, no /proc contents.
    e.run(&[
        "-d",
        "--name",
        "live",
        "-v",
        "/anonx",
        BUSYBOX,
        "sh",
        "-c",
        "echo z > /anonx/f; echo r > /root/r; sleep 1000",
    ])
    .ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out(&e, &["exec", "live", "cat", "/root/r"]) != "r" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let tar = docker_bytes(&e, &["export", "live"]);
    let names: BTreeSet<String> = tar_entries(&tar).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains("root/r"));
    assert!(
        names.contains("anonx/") && !names.contains("anonx/f"),
        "{names:?}"
    );
    assert!(names.contains("proc/"));
    assert!(!names.iter().any(|n| n.starts_with("proc/") && n != "proc/"));
    assert!(!names.iter().any(|n| n.starts_with("sys/") && n != "sys/"));
    let diff = lines(&out(&e, &["diff", "live"]));
    assert!(diff.contains("A /root/r"), "{diff:?}");
    assert!(
        !diff
            .iter()
            .any(|l| l.contains("/etc/hosts") || l.contains("/proc"))
    );
}

#[test]
fn engined_commit_then_run() {
    let e = daemon();
    e.run(&[
        "--name",
        "cm",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir /data && echo payload > /data/file && echo hi > /greeting && rm /etc/group",
    ])
    .ok();
    let id = out(
        &e,
        &[
            "commit",
            "-m",
            "made by a test",
            "-c",
            "ENV A=1",
            "-c",
            "VOLUME /data",
            "-c",
            r#"CMD ["cat", "/greeting"]"#,
            "cm",
            "committed:v1",
        ],
    );
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        out(&e, &["run", "--rm", "--network", "none", "committed:v1"]),
        "hi"
    );
    // The image's VOLUME: an anonymous volume filled from the image, gone with --rm.
    let run = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "committed:v1",
            "sh",
            "-c",
            "echo $A; cat /data/file; grep -c ' /data ' /proc/mounts; test -e /etc/group || echo no-group",
        ],
    );
    assert_eq!(run, "1\npayload\n1\nno-group");
    assert_eq!(out(&e, &["volume", "ls", "-q"]), "");
    let meta = out(
        &e,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Comment}}|{{len .RootFS.Layers}}|{{.Config.Env}}",
            "committed:v1",
        ],
    );
    assert!(meta.starts_with("made by a test|2|"), "{meta}");
    assert!(meta.contains("A=1"), "{meta}");
    let history = out(&e, &["history", "-q", "committed:v1"]);
    assert_eq!(history.lines().count(), 2, "{history}");

    // A running container is committed (paused meanwhile) and runs on afterwards.
    e.run(&[
        "-d",
        "--name",
        "cr",
        BUSYBOX,
        "sh",
        "-c",
        "echo r > /r; sleep 1000",
    ])
    .ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while out(&e, &["exec", "cr", "cat", "/r"]) != "r" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    e.docker(&["commit", "cr", "committed:v2"]).ok();
    assert_eq!(
        out(&e, &["inspect", "--format", "{{.State.Status}}", "cr"]),
        "running"
    );
    assert_eq!(
        out(
            &e,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "committed:v2",
                "cat",
                "/r"
            ]
        ),
        "r"
    );
    // An unchanged container commits to an image with the same layers.
    e.docker(&["create", "--name", "same", BUSYBOX, "true"])
        .ok();
    e.docker(&["commit", "same", "committed:v3"]).ok();
    assert_eq!(
        out(
            &e,
            &[
                "image",
                "inspect",
                "--format",
                "{{len .RootFS.Layers}}",
                "committed:v3"
            ]
        ),
        "1"
    );
}

#[test]
fn engined_prunes_and_system_df() {
    let e = daemon();
    e.run(&[
        "--name",
        "p1",
        BUSYBOX,
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ])
    .ok();
    e.run(&[
        "-d",
        "--name",
        "p2",
        "-v",
        "dfvol:/v",
        BUSYBOX,
        "sh",
        "-c",
        "head -c 12000 /dev/zero > /v/f; sleep 1000",
    ])
    .ok();
    let vol_file = data_root(&e).join("volumes/dfvol/_data/f");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&vol_file).map_or(0, |m| m.len()) != 12000 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let image_size: i64 = out(&e, &["image", "inspect", "--format", "{{.Size}}", BUSYBOX])
        .parse()
        .unwrap();
    let df = api_get(&e, "/v1.41/system/df");
    assert_eq!(df["LayersSize"], image_size);
    assert_eq!(df["Images"][0]["Containers"], 2);
    let containers = df["Containers"].as_array().unwrap();
    let p1 = containers.iter().find(|c| c["Names"][0] == "/p1").unwrap();
    let p1_rw = p1["SizeRw"].as_i64().unwrap();
    assert!((300_000..400_000).contains(&p1_rw), "{p1}");
    let vols = df["Volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["Name"], "dfvol");
    assert_eq!(vols[0]["UsageData"]["Size"], 12000);
    assert_eq!(vols[0]["UsageData"]["RefCount"], 1);

    let table = out(
        &e,
        &[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
        ],
    );
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert_eq!(rows[0][..3], ["Images", "1", "1"], "{table}");
    assert_eq!(rows[0][4], "0B (0%)", "{table}");
    assert_eq!(rows[1][..3], ["Containers", "2", "1"], "{table}");
    // p1's layer is what is reclaimable: its 300kB of the containers' total.
    assert!(
        rows[1][4].starts_with('3') && rows[1][4].contains("kB ("),
        "{table}"
    );
    assert_eq!(
        rows[2],
        ["Local Volumes", "1", "1", "12kB", "0B (0%)"],
        "{table}"
    );
    assert_eq!(rows[3][..3], ["Build Cache", "0", "0"], "{table}");
    let verbose = out(&e, &["system", "df", "-v"]);
    assert!(verbose.contains("dfvol"), "{verbose}");

    // Container prune: the exited one, with what its layer held.
    let p1_id = e.container_id("p1");
    let pruned = out(&e, &["container", "prune", "-f"]);
    assert!(pruned.contains(&p1_id), "{pruned}");
    assert!(pruned.contains("Total reclaimed space: 3"), "{pruned}");
    assert_eq!(out(&e, &["ps", "-aq", "--no-trunc"]), e.container_id("p2"));

    // Image prune: a dangling commit goes, an image in use stays.
    let dangling = out(&e, &["commit", "p2"]);
    assert!(out(&e, &["images", "-q", "--no-trunc"]).contains(&dangling));
    let pruned = out(&e, &["image", "prune", "-f"]);
    assert!(pruned.contains(&format!("deleted: {dangling}")), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert!(!out(&e, &["images", "-q", "--no-trunc"]).contains(&dangling));
    assert!(!e.docker(&["image", "inspect", &dangling]).success());
    assert_eq!(
        out(&e, &["image", "prune", "-f"]),
        "Total reclaimed space: 0B"
    );
    // -a: every image no container uses (busybox is, by p2).
    e.docker(&["tag", BUSYBOX, "extra:tag"]).ok();
    e.docker(&["commit", "p2", "unused:1"]).ok();
    let all = out(&e, &["image", "prune", "-a", "-f"]);
    assert!(all.contains("untagged: unused:1"), "{all}");
    assert_eq!(
        lines(&out(
            &e,
            &["images", "--format", "{{.Repository}}:{{.Tag}}"]
        )),
        lines("busybox:latest\nextra:tag")
    );
    e.docker(&["rm", "-f", "p2"]).ok();
    let all = out(&e, &["image", "prune", "-a", "-f"]);
    assert!(all.contains("untagged: busybox:latest"), "{all}");
    let reclaimed = all.lines().last().unwrap_or_default().to_string();
    assert_ne!(reclaimed, "Total reclaimed space: 0B");
    assert_eq!(out(&e, &["images", "-q"]), "");
}

#[test]
fn engined_volumes_cp_diff_commit_on_real_containerd_1_6() {
    let e = Engined::on_containerd_1_6();
    e.load_busybox();
    let first = out(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "homevol:/home",
            BUSYBOX,
            "sh",
            "-c",
            "ls /home; echo kept > /home/note",
        ],
    );
    assert_eq!(first, "user");
    // A stopped container on containerd's overlayfs snapshotter: cp in (also into
    // its volume), run, diff, cp out, commit.
    e.docker(&[
        "create",
        "--network",
        "none",
        "--name",
        "c",
        "-v",
        "homevol:/data",
        BUSYBOX,
        "sh",
        "-c",
        "cat /tmp/in /data/note /data/extra; echo x > /tmp/new",
    ])
    .ok();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "hello\n").unwrap();
    let f = file.path().to_str().unwrap();
    e.docker(&["cp", f, "c:/tmp/in"]).ok();
    e.docker(&["cp", f, "c:/data/extra"]).ok();
    assert_eq!(out(&e, &["start", "-a", "c"]), "hello\nkept\nhello");
    let diff = lines(&out(&e, &["diff", "c"]));
    for want in ["C /tmp", "A /tmp/in", "A /tmp/new"] {
        assert!(diff.contains(want), "{want} not in {diff:?}");
    }
    assert!(!diff.iter().any(|l| l.contains("/etc/hosts")), "{diff:?}");
    let tar = docker_bytes(&e, &["cp", "c:/tmp/new", "-"]);
    assert_eq!(
        tar_entries(&tar),
        vec![("new".to_string(), Some("x\n".to_string()))]
    );
    e.docker(&["commit", "c", "rc:1"]).ok();
    assert_eq!(
        out(
            &e,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "rc:1",
                "cat",
                "/tmp/new",
                "/tmp/in"
            ]
        ),
        "x\nhello"
    );
    // A running one: cp in and out through its own root, export.
    e.run(&["-d", "--name", "r", BUSYBOX, "sleep", "1000"]).ok();
    e.docker(&["cp", f, "r:/tmp/f"]).ok();
    assert_eq!(out(&e, &["exec", "r", "cat", "/tmp/f"]), "hello");
    let names: BTreeSet<String> = tar_entries(&docker_bytes(&e, &["export", "r"]))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains("tmp/f") && names.contains("bin/sh"),
        "{names:?}"
    );
}
