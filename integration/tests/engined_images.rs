//! engined's image endpoints and TCP listeners, driven by the real docker CLI 28:
//! `docker save` (read back by our load and by real dockerd 20.10), `docker import`
//! with `--change`, image history and inspect, and `-H tcp://` with mutual TLS.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::dockerd::Dockerd;
use integration::engined::{BUSYBOX, Engined, workspace_bin};
use integration::{COMMAND_TIMEOUT, Output, Runtime, Value, run_with_timeout};
use sha2::{Digest, Sha256};

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every regular file of a tar, by path.
fn tar_files(path: &Path) -> HashMap<String, Vec<u8>> {
    let mut ar = tar::Archive::new(File::open(path).unwrap());
    let mut out = HashMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert!(
                out.insert(name.clone(), data).is_none(),
                "{name} twice in the tar"
            );
        }
    }
    out
}

fn json_of(files: &HashMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(
        files
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the tar")),
    )
    .unwrap()
}

/// Checks a saved tar the way a loader reads it: every blob named in index.json and
/// manifest.json is there under its digest; returns manifest.json.
fn check_saved_archive(path: &Path) -> Value {
    let files = tar_files(path);
    assert_eq!(
        json_of(&files, "oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    for (name, data) in &files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(data), hex, "{name} does not match its digest");
        }
    }
    let blob = |digest: &str| -> &Vec<u8> {
        let p = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        files.get(&p).unwrap_or_else(|| panic!("{p} missing"))
    };
    let index = json_of(&files, "index.json");
    for m in index["manifests"].as_array().unwrap() {
        let manifest: Value = serde_json::from_slice(blob(m["digest"].as_str().unwrap())).unwrap();
        blob(manifest["config"]["digest"].as_str().unwrap());
        for l in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                blob(l["digest"].as_str().unwrap()).len() as u64,
                l["size"].as_u64().unwrap()
            );
        }
    }
    let manifest = json_of(&files, "manifest.json");
    for m in manifest.as_array().unwrap() {
        for p in std::iter::once(&m["Config"]).chain(m["Layers"].as_array().unwrap()) {
            let p = p.as_str().unwrap();
            assert!(p.starts_with("blobs/sha256/"), "{p}");
            assert!(
                files.contains_key(p),
                "manifest.json names {p}, not in the tar"
            );
        }
    }
    manifest
}

/// The busybox image plus a second, two-layer image that shares busybox's layer;
/// returns the second one's tag.
fn load_second_image(e: &Engined) -> &'static str {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.txt"),
        "hello from the second image\n",
    )
    .unwrap();
    let extra = testkit::image::layer_from_dir(dir.path()).unwrap();
    let busybox_layer = testkit::image::build_busybox_layer().unwrap();
    let image = testkit::image::Image::new(
        "second:v1",
        vec![busybox_layer, extra],
        &["cat", "/hello.txt"],
    );
    let tar = e.dir().join("second.tar");
    testkit::image::write_docker_archive(&image, &tar).unwrap();
    e.docker(&["load", "-i", path_str(&tar)]).ok();
    "second:v1"
}

fn image_id(e: &Engined, name: &str) -> String {
    e.docker(&["image", "inspect", "--format", "{{.Id}}", name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn engined_save_rmi_load_run() {
    let e = Engined::start();
    e.load_busybox();
    let id = image_id(&e, BUSYBOX);
    let tar = e.dir().join("saved.tar");
    e.docker(&["save", "-o", path_str(&tar), "busybox"]).ok();
    let manifest = check_saved_archive(&tar);
    assert_eq!(manifest.as_array().unwrap().len(), 1, "{manifest}");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["busybox:latest"])
    );
    assert_eq!(
        manifest[0]["Config"].as_str().unwrap(),
        format!("blobs/sha256/{}", id.trim_start_matches("sha256:"))
    );
    let files = tar_files(&tar);
    let repositories = json_of(&files, "repositories");
    assert!(
        repositories["busybox"]["latest"].is_string(),
        "{repositories}"
    );
    let index = json_of(&files, "index.json");
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );

    // Saving twice gives the same bytes: nothing in the tar depends on the moment.
    let again = e.dir().join("again.tar");
    e.docker(&["save", "-o", path_str(&again), "busybox:latest"])
        .ok();
    assert_eq!(std::fs::read(&tar).unwrap(), std::fs::read(&again).unwrap());

    let rmi = e.docker(&["rmi", "busybox"]);
    assert!(
        rmi.ok().stdout.contains("Untagged: busybox:latest"),
        "{rmi}"
    );
    assert_eq!(e.docker(&["images", "-q"]).ok().stdout.trim(), "");
    let load = e.docker(&["load", "-i", path_str(&tar)]);
    assert_eq!(load.ok().stdout.trim(), "Loaded image: busybox:latest");
    assert_eq!(image_id(&e, BUSYBOX), id, "the id survives save and load");
    let run = e.run(&["--rm", BUSYBOX, "echo", "saved-and-loaded"]);
    assert_eq!(run.ok().stdout, "saved-and-loaded\n");

    // Saved by id: the image without names.
    let by_id = e.dir().join("by-id.tar");
    e.docker(&["save", "-o", path_str(&by_id), &id[7..19]]).ok();
    let manifest = check_saved_archive(&by_id);
    assert_eq!(manifest[0]["RepoTags"], Value::Null, "{manifest}");

    // The per-image endpoint streams a chunked tar as dockerd does.
    let mut s = UnixStream::connect(e.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /v1.41/images/busybox:latest/get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let head = String::from_utf8_lossy(&resp[..resp.len().min(512)]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/x-tar"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");

    let missing = e.docker(&["save", "-o", path_str(&e.dir().join("x.tar")), "nosuch:1"]);
    assert!(
        missing
            .assert_failed()
            .stderr
            .contains("No such image: nosuch:1"),
        "{missing}"
    );
}

#[test]
fn engined_save_two_images_in_one_tar() {
    let e = Engined::start();
    e.load_busybox();
    let second = load_second_image(&e);
    e.docker(&["tag", BUSYBOX, "busybox:other"]).ok();
    let ids = [image_id(&e, BUSYBOX), image_id(&e, second)];
    let tar = e.dir().join("two.tar");
    // A repository without a tag saves every tag of it, as docker save does.
    e.docker(&["save", "-o", path_str(&tar), "busybox", second])
        .ok();
    let manifest = check_saved_archive(&tar);
    let mut tags: Vec<Vec<String>> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| serde_json::from_value(m["RepoTags"].clone()).unwrap())
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            vec!["busybox:latest".to_string(), "busybox:other".into()],
            vec!["second:v1".to_string()]
        ]
    );
    // The busybox layer is in both images and in the tar once.
    let files = tar_files(&tar);
    let blobs = files.keys().filter(|k| k.starts_with("blobs/")).count();
    assert_eq!(blobs, 2 * 2 + 2, "two manifests, two configs, two layers");

    for name in [BUSYBOX, "busybox:other", second] {
        e.docker(&["rmi", name]).ok();
    }
    assert_eq!(e.docker(&["images", "-q"]).ok().stdout.trim(), "");
    let load = e.docker(&["load", "-i", path_str(&tar)]);
    let mut loaded: Vec<&str> = load.ok().stdout.lines().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "Loaded image: busybox:latest",
            "Loaded image: busybox:other",
            "Loaded image: second:v1"
        ]
    );
    assert_eq!([image_id(&e, BUSYBOX), image_id(&e, second)], ids);
    assert_eq!(
        e.run(&["--rm", second]).ok().stdout,
        "hello from the second image\n"
    );
    assert_eq!(
        e.run(&["--rm", "busybox:other", "echo", "other"])
            .ok()
            .stdout,
        "other\n"
    );
}

/// A busybox root filesystem as a plain tar made by GNU tar from a directory
/// (entries `./bin/...`, as users make them).
fn rootfs_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    testkit::make_busybox_rootfs(&rootfs).unwrap();
    std::fs::write(rootfs.join("etc/imported-marker"), "marker\n").unwrap();
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    tar
}

#[test]
fn engined_import_with_changes_run_history_inspect() {
    let e = Engined::start();
    let tar = rootfs_tar(e.dir());
    let plain = std::fs::read(&tar).unwrap();
    let out = e.docker(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh","-c","echo imported"]"#,
        "--change",
        "ENV GREETING=hello PATH=/usr/bin:/bin:/sbin",
        "--change",
        "WORKDIR /srv/app",
        "--change",
        "EXPOSE 8080 53/udp",
        "--change",
        r#"LABEL team=runtime "with space"="a b""#,
        "--change",
        "VOLUME /data",
        "--change",
        "USER 1000",
        "-m",
        "made from a directory",
        path_str(&tar),
        "imported:v1",
    ]);
    let id = out.ok().stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    assert_eq!(image_id(&e, "imported:v1"), id);

    assert_eq!(e.run(&["--rm", "imported:v1"]).ok().stdout, "imported\n");
    let env = e.run(&[
        "--rm",
        "imported:v1",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u); cat /etc/imported-marker",
    ]);
    assert_eq!(env.ok().stdout, "hello /srv/app 1000\nmarker\n");

    let inspect = e.docker(&["image", "inspect", "imported:v1"]);
    let v: Value = serde_json::from_str(&inspect.ok().stdout).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["RepoTags"], serde_json::json!(["imported:v1"]));
    assert_eq!(i["Comment"], "made from a directory");
    assert_eq!(i["Os"], "linux");
    assert_eq!(
        i["Config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo imported"])
    );
    assert_eq!(
        i["Config"]["Env"],
        serde_json::json!(["GREETING=hello", "PATH=/usr/bin:/bin:/sbin"])
    );
    assert_eq!(i["Config"]["WorkingDir"], "/srv/app");
    assert_eq!(i["Config"]["User"], "1000");
    assert_eq!(
        i["Config"]["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(
        i["Config"]["Labels"],
        serde_json::json!({"team": "runtime", "with space": "a b"})
    );
    assert_eq!(i["Config"]["Volumes"], serde_json::json!({"/data": {}}));
    // One layer, stored as sent: its diff id is the digest of the tar itself.
    assert_eq!(
        i["RootFS"]["Layers"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&plain))])
    );

    let history = e.docker(&[
        "image",
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Comment}}|{{.Size}}",
        "imported:v1",
    ]);
    let rows: Vec<&str> = history.ok().stdout.lines().collect();
    assert_eq!(rows.len(), 1, "{history}");
    let cols: Vec<&str> = rows[0].split('|').collect();
    assert_eq!(
        cols[..3],
        [id.as_str(), "", "made from a directory"],
        "{history}"
    );
    assert_ne!(cols[3], "0B", "the layer has a size: {history}");
    let default = e.docker(&["image", "history", "imported:v1"]);
    assert!(
        default.ok().stdout.contains(&id[7..19]),
        "the table shows the short id: {default}"
    );
}

#[test]
fn engined_import_compressed_untagged_and_bad_input() {
    let e = Engined::start();
    let tar = rootfs_tar(e.dir());
    let plain = std::fs::read(&tar).unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&plain));

    // gzip from stdin (`docker import -`), zstd from a file: both stored uncompressed.
    let gz = e.dir().join("rootfs.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&plain).unwrap();
    enc.finish().unwrap();
    let mut cmd = e.docker_command(&["import", "-", "gz:v1"]);
    cmd.stdin(File::open(&gz).unwrap());
    run_with_timeout(cmd, COMMAND_TIMEOUT).ok();
    let zst = e.dir().join("rootfs.tar.zst");
    std::fs::write(&zst, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    e.docker(&["import", path_str(&zst), "zst:v1"]).ok();
    for name in ["gz:v1", "zst:v1"] {
        let layers = e.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            name,
        ]);
        assert_eq!(layers.ok().stdout.trim(), format!("[\"{diff_id}\"]"));
        let hist = e.docker(&["image", "history", "--format", "{{.Comment}}", name]);
        assert_eq!(hist.ok().stdout.trim(), "Imported from -");
    }
    // Without CMD the image runs what it is given.
    assert_eq!(
        e.run(&["--rm", "zst:v1", "/bin/echo", "from zstd"])
            .ok()
            .stdout,
        "from zstd\n"
    );

    // Without a name: an image listed as <none>, usable and removable by id.
    let out = e.docker(&["import", path_str(&tar)]);
    let id = out.ok().stdout.trim().to_string();
    let images = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        images
            .ok()
            .stdout
            .lines()
            .any(|l| l == format!("<none>:<none> {}", &id[7..19])),
        "{images}"
    );
    e.docker(&["tag", &id[7..19], "named:later"]).ok();
    let images = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !images.ok().stdout.contains("<none>"),
        "tagging it names it: {images}"
    );
    let rmi = e.docker(&["rmi", "named:later"]);
    assert!(rmi.ok().stdout.contains(&format!("Deleted: {id}")), "{rmi}");

    let text = e.dir().join("notes.txt");
    std::fs::write(&text, "this is not a tar\n").unwrap();
    let bad = e.docker(&["import", path_str(&text), "bad:v1"]);
    assert!(
        bad.assert_failed().stderr.contains("not a tar archive"),
        "{bad}"
    );
    let bad = e.docker(&[
        "import",
        "--change",
        "RUN echo hi",
        path_str(&tar),
        "bad:v1",
    ]);
    assert!(
        bad.assert_failed()
            .stderr
            .contains("RUN is not a valid change command"),
        "{bad}"
    );
    let images = e.docker(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.ok().stdout.contains("bad"), "{images}");
}

#[test]
fn engined_saved_images_load_and_run_in_dockerd() {
    let e = Engined::start();
    e.load_busybox();
    let second = load_second_image(&e);
    let rootfs = rootfs_tar(e.dir());
    e.docker(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh","-c","echo imported in dockerd"]"#,
        path_str(&rootfs),
        "imported:v1",
    ])
    .ok();
    let tar = e.dir().join("for-dockerd.tar");
    e.docker(&["save", "-o", path_str(&tar), BUSYBOX, second, "imported:v1"])
        .ok();
    let ids: Vec<String> = [BUSYBOX, second, "imported:v1"]
        .iter()
        .map(|n| image_id(&e, n))
        .collect();

    let d = Dockerd::start();
    let load = d.docker(&["load", "-i", path_str(&tar)]);
    let out = load.ok().stdout.clone();
    for name in [BUSYBOX, second, "imported:v1"] {
        assert!(out.contains(&format!("Loaded image: {name}")), "{load}");
    }
    for (name, id) in [BUSYBOX, second, "imported:v1"].iter().zip(&ids) {
        let got = d.docker(&["image", "inspect", "--format", "{{.Id}}", name]);
        assert_eq!(
            got.ok().stdout.trim(),
            id,
            "dockerd gives {name} the same id"
        );
    }
    assert_eq!(
        d.run(&["--rm", BUSYBOX, "echo", "from engined's save"])
            .ok()
            .stdout,
        "from engined's save\n"
    );
    assert_eq!(
        d.run(&["--rm", second]).ok().stdout,
        "hello from the second image\n"
    );
    assert_eq!(
        d.run(&["--rm", "imported:v1"]).ok().stdout,
        "imported in dockerd\n"
    );
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl (apt-get install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it,
/// plus a client certificate from another CA.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "rogue-ca"] {
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        let (key, cert, subj) = (
            format!("{ca}-key.pem"),
            format!("{ca}.pem"),
            format!("/CN={ca}"),
        );
        a.extend([
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &a);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    for (name, ca, ext, serial) in [
        ("server", "ca", "server.ext", "0x1001"),
        ("client", "ca", "client.ext", "0x1002"),
        ("rogue", "rogue-ca", "client.ext", "0x1003"),
    ] {
        let (key, csr, cert, subj) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &a);
        let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}-key.pem"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-set_serial",
                serial,
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                ext,
            ],
        );
    }
}

/// `docker <tls flags> -H tcp://127.0.0.1:PORT <args>` with a private CLI config.
fn tcp_docker(dir: &Path, port: u16, tls: &[&str], args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    c.current_dir(dir)
        .args(tls)
        .arg("-H")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .args(args)
        .env("DOCKER_CONFIG", dir.join("cli"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .stdin(Stdio::null());
    run_with_timeout(c, COMMAND_TIMEOUT)
}

#[test]
fn engined_tcp_with_mutual_tls() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_certs(c);
    let port = free_port();
    let (ca, cert, key) = (
        c.join("ca.pem"),
        c.join("server.pem"),
        c.join("server-key.pem"),
    );
    let e = Engined::with_args(
        Runtime::from_env(),
        &[
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--tlsverify",
            "--tlscacert",
            path_str(&ca),
            "--tlscert",
            path_str(&cert),
            "--tlskey",
            path_str(&key),
        ],
    );
    e.load_busybox();
    let client = [
        "--tlsverify",
        "--tlscacert",
        "ca.pem",
        "--tlscert",
        "client.pem",
        "--tlskey",
        "client-key.pem",
    ];
    let v = tcp_docker(
        c,
        port,
        &client,
        &["version", "--format", "{{.Server.APIVersion}}"],
    );
    assert_eq!(v.ok().stdout.trim(), "1.41");
    // Attach and wait streams (hijacked connections) work through TLS too.
    let run = tcp_docker(
        c,
        port,
        &client,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            BUSYBOX,
            "sh",
            "-c",
            "echo over-tls; echo err >&2",
        ],
    );
    assert_eq!(run.ok().stdout, "over-tls\n");
    assert_eq!(run.stderr, "err\n");

    // No client certificate, one from another CA, no TLS at all: all refused.
    let no_cert = tcp_docker(c, port, &["--tls", "--tlscacert", "ca.pem"], &["version"]);
    assert!(
        no_cert
            .assert_failed()
            .stderr
            .contains("certificate required"),
        "{no_cert}"
    );
    assert!(!no_cert.stdout.contains("1.41"), "{no_cert}");
    let rogue = [
        "--tlsverify",
        "--tlscacert",
        "ca.pem",
        "--tlscert",
        "rogue.pem",
        "--tlskey",
        "rogue-key.pem",
    ];
    let r = tcp_docker(
        c,
        port,
        &rogue,
        &["version", "--format", "{{.Server.APIVersion}}"],
    );
    r.assert_failed();
    assert!(r.stderr.contains("certificate"), "{r}");
    tcp_docker(
        c,
        port,
        &[],
        &["version", "--format", "{{.Server.APIVersion}}"],
    )
    .assert_failed();
    let log = e.log();
    assert!(log.contains("TLS handshake refused"), "{log}");
    // The Unix socket is still served alongside.
    e.docker(&["ps"]).ok();
}

#[test]
fn engined_tcp_with_server_only_tls() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    make_certs(c);
    let port = free_port();
    let (cert, key) = (c.join("server.pem"), c.join("server-key.pem"));
    let _e = Engined::with_args(
        Runtime::from_env(),
        &[
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--tls",
            "--tlscert",
            path_str(&cert),
            "--tlskey",
            path_str(&key),
        ],
    );
    // Any client may connect; the one that checks the server against the CA can.
    let fmt = ["version", "--format", "{{.Server.APIVersion}}"];
    let v = tcp_docker(c, port, &["--tlsverify", "--tlscacert", "ca.pem"], &fmt);
    assert_eq!(v.ok().stdout.trim(), "1.41");
    // `--tls` alone does not check the server (the CLI still wants some CA file).
    let v = tcp_docker(c, port, &["--tls", "--tlscacert", "rogue-ca.pem"], &fmt);
    assert_eq!(v.ok().stdout.trim(), "1.41");
    // One that trusts another CA refuses the server.
    let wrong = tcp_docker(
        c,
        port,
        &["--tlsverify", "--tlscacert", "rogue-ca.pem"],
        &fmt,
    );
    assert!(
        wrong.assert_failed().stderr.contains("certificate"),
        "{wrong}"
    );
}

#[test]
fn engined_insecure_tcp_serves_plain_http_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let e = Engined::with_args(
        Runtime::from_env(),
        &["-H", &format!("tcp://127.0.0.1:{port}"), "--insecure-tcp"],
    );
    let v = tcp_docker(
        dir.path(),
        port,
        &[],
        &["version", "--format", "{{.Server.APIVersion}}"],
    );
    assert_eq!(v.ok().stdout.trim(), "1.41");
    assert!(e.log().contains("serving plain HTTP on TCP"), "{}", e.log());
}

/// Runs the engined binary with `args` (and private paths) to its exit.
fn engined_exit(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("engined.pid");
    let mut c = Command::new(workspace_bin("engined"));
    c.arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .arg("--pidfile")
        .arg(&pidfile)
        // Nothing there: the flags must be refused before engined looks for it.
        .arg("--containerd")
        .arg(dir.path().join("no-containerd.sock"))
        .args(args)
        .stdin(Stdio::null());
    let out = run_with_timeout(c, COMMAND_TIMEOUT);
    assert!(!pidfile.exists(), "a refused start writes no pid file");
    out
}

#[test]
fn engined_refuses_tcp_without_tls() {
    let port = free_port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let started = Instant::now();
    let out = engined_exit(&["-H", &tcp]);
    out.assert_code(1);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one error line:\n{out}");
    assert!(
        lines[0].contains(&format!("refusing to serve {tcp} without TLS"))
            && lines[0].contains("--tlsverify")
            && lines[0].contains("--insecure-tcp"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {tcp}"
    );

    let out = engined_exit(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        "/nonexistent/ca.pem",
        "--tlscert",
        "/nonexistent/cert.pem",
        "--tlskey",
        "/nonexistent/key.pem",
    ]);
    out.assert_code(1);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("--tlscacert /nonexistent/ca.pem"),
        "{out}"
    );

    let out = engined_exit(&["-H", &tcp, "--tls", "--insecure-tcp"]);
    out.assert_code(1);
    assert!(out.stderr.contains("contradicts"), "{out}");
}

/// engined's peak resident memory so far (`VmHWM`), in MiB.
fn peak_rss_mib(e: &Engined) -> u64 {
    let pid = std::fs::read_to_string(e.dir().join("engined.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let kb: u64 = integration::status_field(&status, "VmHWM")
        .unwrap()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024
}

#[test]
fn engined_big_layers_stream_through_import_save_and_load() {
    const LAYER_MIB: usize = 64;
    let e = Engined::start();
    // Incompressible data, so that no stage can hide a whole copy in a small buffer.
    let rootfs = e.dir().join("big-rootfs");
    testkit::make_busybox_rootfs(&rootfs).unwrap();
    let mut f = File::create(rootfs.join("blob.bin")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..LAYER_MIB {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let tar = e.dir().join("big.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_dir_all(&rootfs).unwrap();

    let base = peak_rss_mib(&e);
    let t = Instant::now();
    e.docker(&["import", path_str(&tar), "big:v1"]).ok();
    let import = (t.elapsed(), peak_rss_mib(&e));
    std::fs::remove_file(&tar).unwrap();
    let saved = e.dir().join("big-saved.tar");
    let t = Instant::now();
    e.docker(&["save", "-o", path_str(&saved), "big:v1"]).ok();
    let save = (t.elapsed(), peak_rss_mib(&e));
    assert!(
        std::fs::metadata(&saved).unwrap().len() > (LAYER_MIB as u64) << 20,
        "the layer is in the saved tar"
    );
    e.docker(&["rmi", "big:v1"]).ok();
    let t = Instant::now();
    e.docker(&["load", "-i", path_str(&saved)]).ok();
    let load = (t.elapsed(), peak_rss_mib(&e));
    eprintln!(
        "{LAYER_MIB} MiB layer: baseline peak RSS {base} MiB; import {:?} -> {} MiB, save {:?} -> {} MiB, load {:?} -> {} MiB",
        import.0, import.1, save.0, save.1, load.0, load.1
    );
    // A buffered copy of the layer would add at least LAYER_MIB.
    let limit = base + LAYER_MIB as u64 / 2;
    for (what, peak) in [("import", import.1), ("save", save.1), ("load", load.1)] {
        assert!(
            peak < limit,
            "{what} raised engined's peak RSS to {peak} MiB (baseline {base} MiB)"
        );
    }
    let sum = e.run(&["--rm", "big:v1", "sh", "-c", "wc -c < /blob.bin"]);
    assert_eq!(
        sum.ok().stdout.trim(),
        ((LAYER_MIB as u64) << 20).to_string()
    );
}
