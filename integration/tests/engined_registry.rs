//! engined against a real registry (Debian's docker-registry on 127.0.0.1, started by
//! each test), driven by the real docker CLI 28: push, pull (explicit and the
//! implicit one of `docker run`), errors of unknown manifests, `docker login` with
//! htpasswd basic auth (and pushes and pulls with the stored credentials), the
//! token flow of login against a stand-in token server, and `docker events` with
//! since/until and filters.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use integration::containerd_lite::Registry;
use integration::daemon::{
    report_log_if_panicking, short_tempdir, spawn_logged, stop_daemon, wait_ready,
};
use integration::engined::{BUSYBOX, Engined};
use integration::{Output, Value};

/// GET `path` from a registry at 127.0.0.1:`port` (HTTP/1.0: no chunking), with an
/// optional `Authorization` header; returns the status code and the body.
fn registry_get(host: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n{auth}\r\n"
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

/// PUT a manifest (or index) at `path` of a registry; returns the status code.
fn registry_put(host: &str, path: &str, content_type: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {out}"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `<tag>: digest: sha256:... size: N` of a push's output: the digest.
fn pushed_digest(out: &Output, tag: &str) -> String {
    let prefix = format!("{tag}: digest: ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line for {tag}:\n{out}"))
        .to_string()
}

/// Loads busybox and tags it `<registry>/<repo>:<tag>`.
fn tagged_busybox(e: &Engined, target: &str) {
    e.load_busybox();
    e.docker(&["tag", BUSYBOX, target]).ok();
}

#[test]
fn engined_registry_push_rmi_pull_run() {
    let reg = Registry::start();
    let e = Engined::start();
    let image = format!("{}/bb:v1", reg.host());
    tagged_busybox(&e, &image);

    let push = e.docker(&["push", &image]);
    push.ok();
    assert!(
        push.stdout.contains(&format!(
            "The push refers to repository [{}/bb]",
            reg.host()
        )),
        "{push}"
    );
    assert!(push.stdout.contains(": Pushed"), "{push}");
    let digest = pushed_digest(&push, "v1");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The registry has it, under that digest.
    let (code, tags) = registry_get(&reg.host(), "/v2/bb/tags/list", None);
    assert_eq!(code, 200, "{tags}");
    assert!(tags.contains("\"v1\""), "{tags}");
    let (code, manifest) = registry_get(&reg.host(), &format!("/v2/bb/manifests/{digest}"), None);
    assert_eq!(code, 200, "{manifest}");
    let m: Value = serde_json::from_str(&manifest).unwrap();
    let layers = m["layers"].as_array().unwrap().len();
    assert!(layers >= 1, "{manifest}");

    // A second push finds every layer there already.
    let again = e.docker(&["push", &image]);
    again.ok();
    assert!(again.stdout.contains("Layer already exists"), "{again}");
    assert_eq!(pushed_digest(&again, "v1"), digest);

    // Gone from engined, then back from the registry.
    e.docker(&["rmi", &image, BUSYBOX]).ok();
    let images = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.ok().stdout.contains("bb"), "{images}");
    let pull = e.docker(&["pull", &image]);
    pull.ok();
    assert!(pull.stdout.contains("v1: Pulling from bb"), "{pull}");
    assert!(pull.stdout.contains(&format!("Digest: {digest}")), "{pull}");
    assert!(
        pull.stdout
            .contains(&format!("Status: Downloaded newer image for {image}")),
        "{pull}"
    );
    assert!(
        pull.stdout.contains("Pull complete") || pull.stdout.contains("Already exists"),
        "{pull}"
    );
    let run = e.run(&["--rm", &image, "sh", "-c", "echo pulled-and-ran"]);
    assert_eq!(run.ok().stdout, "pulled-and-ran\n");

    // The same again: nothing to download.
    let pull = e.docker(&["pull", &image]);
    assert!(
        pull.ok()
            .stdout
            .contains(&format!("Status: Image is up to date for {image}")),
        "{pull}"
    );

    // By digest: the same image under a digest reference, runnable as such.
    let by_digest = format!("{}/bb@{digest}", reg.host());
    let pull = e.docker(&["pull", &by_digest]);
    pull.ok();
    assert!(pull.stdout.contains(&format!("Digest: {digest}")), "{pull}");
    let run = e.run(&["--rm", &by_digest, "echo", "by-digest"]);
    assert_eq!(run.ok().stdout, "by-digest\n");
}

fn image_id(e: &Engined, name: &str) -> String {
    e.docker(&["image", "inspect", "--format", "{{.Id}}", name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn engined_registry_index_platforms_and_all_tags() {
    let reg = Registry::start();
    let e = Engined::start();
    // Two images in one repository: busybox (the amd64 one) and a one-file image
    // that the index will call arm64.
    let amd = format!("{}/multi:amd", reg.host());
    tagged_busybox(&e, &amd);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker"), "arm64 image\n").unwrap();
    let tar = dir.path().join("arm.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["-cf", tar.to_str().unwrap(), "marker"])
        .status()
        .unwrap();
    assert!(status.success());
    let arm = format!("{}/multi:arm", reg.host());
    e.docker(&["import", tar.to_str().unwrap(), &arm]).ok();
    let amd_digest = pushed_digest(e.docker(&["push", &amd]).ok(), "amd");
    let arm_digest = pushed_digest(e.docker(&["push", &arm]).ok(), "arm");
    let (amd_id, arm_id) = (image_id(&e, &amd), image_id(&e, &arm));
    let size_of = |digest: &str| {
        let (code, body) =
            registry_get(&reg.host(), &format!("/v2/multi/manifests/{digest}"), None);
        assert_eq!(code, 200, "{body}");
        body.len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": arm_digest, "size": size_of(&arm_digest),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": amd_digest, "size": size_of(&amd_digest),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    })
    .to_string();
    let code = registry_put(
        &reg.host(),
        "/v2/multi/manifests/both",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    assert_eq!(code, 201, "the registry refused the index");
    e.docker(&["rmi", &amd, &arm, BUSYBOX]).ok();

    // The index gives its linux/amd64 image...
    let both = format!("{}/multi:both", reg.host());
    let pull = e.docker(&["pull", &both]);
    pull.ok();
    assert!(
        pull.stdout.contains("Digest: sha256:") && !pull.stdout.contains(&amd_digest),
        "the digest shown is the index's:\n{pull}"
    );
    assert_eq!(image_id(&e, &both), amd_id);
    assert_eq!(
        e.run(&["--rm", &both, "echo", "amd64-ok"]).ok().stdout,
        "amd64-ok\n"
    );
    // ...and --platform another one.
    e.docker(&["rmi", &both]).ok();
    e.docker(&["pull", "--platform", "linux/arm64", &both]).ok();
    assert_eq!(image_id(&e, &both), arm_id);
    e.docker(&["rmi", &both]).ok();

    // `pull --all-tags`: every tag of the repository.
    let all = e.docker(&["pull", "--all-tags", &format!("{}/multi", reg.host())]);
    all.ok();
    let tags = e.docker(&[
        "images",
        "--format",
        "{{.Tag}}",
        &format!("{}/multi", reg.host()),
    ]);
    let mut tags: Vec<String> = tags.ok().stdout.lines().map(str::to_string).collect();
    tags.sort();
    assert_eq!(tags, ["amd", "arm", "both"], "{all}");
}

#[test]
fn engined_registry_run_pulls_an_absent_image() {
    let reg = Registry::start();
    let e = Engined::start();
    let image = format!("{}/implicit:latest", reg.host());
    tagged_busybox(&e, &image);
    e.docker(&["push", &image]).ok();
    e.docker(&["rmi", &image, BUSYBOX]).ok();

    let short = format!("{}/implicit", reg.host());
    let run = e.run(&["--rm", &short, "sh", "-c", "echo implicit-pull"]);
    run.ok();
    assert_eq!(run.stdout.lines().last(), Some("implicit-pull"), "{run}");
    assert!(
        run.stderr
            .contains(&format!("Unable to find image '{image}' locally")),
        "{run}"
    );
    let images = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.ok().stdout.contains(&image), "{images}");

    // Three runs at once of an image that is not here: three pulls of the same
    // layers (one writes each blob, the others wait for it), then three runs.
    e.docker(&["rmi", &image]).ok();
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let (e, short) = (&e, &short);
                scope.spawn(move || e.run(&["--rm", short, "echo", &format!("parallel-{i}")]))
            })
            .collect();
        runs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (i, out) in outs.iter().enumerate() {
        out.ok();
        assert_eq!(
            out.stdout.lines().last(),
            Some(format!("parallel-{i}").as_str()),
            "{out}"
        );
    }
}

#[test]
fn engined_registry_unknown_manifests() {
    let reg = Registry::start();
    let e = Engined::start();
    let pull = e.docker(&["pull", &format!("{}/nosuch:latest", reg.host())]);
    pull.assert_code(1);
    assert!(
        pull.stderr.contains(&format!(
            "manifest for {}/nosuch:latest not found: manifest unknown",
            reg.host()
        )),
        "{pull}"
    );
    // The implicit pull of run fails the same way, with run's exit code.
    let run = e.run(&["--rm", &format!("{}/nosuch:v2", reg.host()), "true"]);
    run.assert_code(125);
    assert!(
        run.stderr
            .contains(&format!("manifest for {}/nosuch:v2 not found", reg.host())),
        "{run}"
    );
    // An image that is not here cannot be pushed.
    let push = e.docker(&["push", &format!("{}/absent:v1", reg.host())]);
    push.assert_failed();
    assert!(
        push.stderr.contains(&format!(
            "An image does not exist locally with the tag: {}/absent",
            reg.host()
        )),
        "{push}"
    );
    // A registry that is not there: the error, not a hang.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pull = e.docker(&["pull", &format!("127.0.0.1:{port}/x:latest")]);
    pull.assert_failed();
    assert!(pull.stderr.contains("Error response from daemon"), "{pull}");
}

/// docker-registry with htpasswd basic auth (bcrypt, the only hash it takes).
#[derive(Debug)]
struct AuthRegistry {
    dir: tempfile::TempDir,
    child: Child,
    host: String,
}

impl AuthRegistry {
    fn start(user: &str, password: &str) -> Self {
        let dir = short_tempdir("reg-auth-");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash(password, 5).unwrap();
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: engined-test\n    path: {}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut child = spawn_logged(cmd, &log);
        wait_ready("docker-registry", &mut child, &log, || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        AuthRegistry {
            dir,
            child,
            host: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        report_log_if_panicking("docker-registry", &self.dir.path().join("registry.log"));
        stop_daemon(&mut self.child);
    }
}

fn cli_config(e: &Engined) -> Value {
    let text = std::fs::read_to_string(e.dir().join("cli/config.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn engined_registry_login_basic_auth() {
    let reg = AuthRegistry::start("alice", "s3cret-pw");
    let e = Engined::start();
    let image = format!("{}/private:v1", reg.host);
    tagged_busybox(&e, &image);
    // The registry really wants credentials.
    assert_eq!(registry_get(&reg.host, "/v2/", None).0, 401);

    let anonymous = e.docker(&["push", &image]);
    anonymous.assert_failed();
    assert!(
        anonymous.stderr.to_lowercase().contains("unauthorized")
            || anonymous.stderr.contains("authentication"),
        "{anonymous}"
    );

    let bad = e.docker(&["login", &reg.host, "-u", "alice", "-p", "wrong"]);
    bad.assert_failed();
    assert!(
        bad.stderr.contains(&format!(
            "login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
            reg.host
        )),
        "{bad}"
    );
    assert!(
        cli_config(&e)["auths"][&reg.host].is_null(),
        "a refused login stored credentials"
    );
    let unknown = e.docker(&["login", &reg.host, "-u", "bob", "-p", "s3cret-pw"]);
    unknown.assert_failed();

    let good = e.docker(&["login", &reg.host, "-u", "alice", "-p", "s3cret-pw"]);
    good.ok();
    assert!(good.stdout.contains("Login Succeeded"), "{good}");
    assert!(
        !cli_config(&e)["auths"][&reg.host].is_null(),
        "{:?}",
        cli_config(&e)
    );

    // The CLI now sends the stored credentials in X-Registry-Auth.
    let push = e.docker(&["push", &image]);
    push.ok();
    let digest = pushed_digest(&push, "v1");
    e.docker(&["rmi", &image, BUSYBOX]).ok();
    let pull = e.docker(&["pull", &image]);
    pull.ok();
    assert!(pull.stdout.contains(&format!("Digest: {digest}")), "{pull}");
    let run = e.run(&["--rm", &image, "echo", "private-ok"]);
    assert_eq!(run.ok().stdout, "private-ok\n");

    // Without them, the pull is refused before it starts.
    e.docker(&["logout", &reg.host]).ok();
    e.docker(&["rmi", &image]).ok();
    let pull = e.docker(&["pull", &image]);
    pull.assert_code(1);
    assert!(
        pull.stderr
            .contains(&format!("pull access denied for {}/private", reg.host)),
        "{pull}"
    );
}

/// A stand-in for a registry with token auth, enough for the login flow: `/v2/`
/// answers 401 with a bearer challenge pointing at `/token` unless it gets the token
/// that `/token` hands out for the right basic credentials (with a refresh token,
/// as `offline_token=true` asks).
struct TokenRegistry {
    host: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

const GOOD_BASIC: &str = "Basic Y2Fyb2w6dG9rZW4tcHc="; // carol:token-pw

impl TokenRegistry {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, host2) = (stop.clone(), host.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => seen.push(Self::answer(s, &host2)),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            seen
        });
        TokenRegistry {
            host,
            stop,
            thread: Some(thread),
        }
    }

    /// Serves one request; returns its request line (and auth header).
    fn answer(s: TcpStream, host: &str) -> String {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut request = String::new();
        r.read_line(&mut request).unwrap_or(0);
        let mut authorization = String::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if h.to_ascii_lowercase().starts_with("authorization:") {
                authorization = h["authorization:".len()..].trim().to_string();
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
        let (status, headers, body) = if path.starts_with("/token") {
            if authorization == GOOD_BASIC
                && path.contains("account=carol")
                && path.contains("service=stand-in")
            {
                (
                    "200 OK",
                    String::new(),
                    r#"{"token":"good-token","refresh_token":"refresh-for-carol"}"#.to_string(),
                )
            } else {
                ("401 Unauthorized", String::new(), "{}".into())
            }
        } else if authorization == "Bearer good-token" {
            ("200 OK", String::new(), "{}".into())
        } else {
            (
                "401 Unauthorized",
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"stand-in\"\r\n"
                ),
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .into(),
            )
        };
        let mut w = s;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
            body.len()
        );
        format!("{} {authorization}", request.trim())
    }

    fn requests(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn engined_registry_login_token_flow() {
    let tokens = TokenRegistry::start();
    let e = Engined::start();
    let bad = e.docker(&["login", &tokens.host, "-u", "carol", "-p", "nope"]);
    bad.assert_failed();
    assert!(bad.stderr.contains("401 Unauthorized"), "{bad}");
    let good = e.docker(&["login", &tokens.host, "-u", "carol", "-p", "token-pw"]);
    good.ok();
    assert!(good.stdout.contains("Login Succeeded"), "{good}");
    // The refresh token came back as the identity token, which the CLI keeps
    // instead of the password.
    let cfg = cli_config(&e);
    assert_eq!(
        cfg["auths"][&tokens.host]["identitytoken"], "refresh-for-carol",
        "{cfg}"
    );
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /v2/ ") && r.ends_with("Bearer good-token")),
        "the token was not tried on the registry: {requests:#?}"
    );
}

/// `docker events --format '{{json .}}'` lines as JSON.
fn events(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}\n{out}")))
        .collect()
}

fn actions_of(evs: &[Value], id: &str) -> Vec<String> {
    evs.iter()
        .filter(|v| v["Actor"]["ID"] == id)
        .map(|v| v["Action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn engined_registry_events_since_until_and_filters() {
    let e = Engined::start();
    e.load_busybox();
    let since = now_secs() - 1;
    // A listener that is there before anything happens and stops at its until.
    let until_live = now_secs() + 6;
    let mut live = e
        .docker_command(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until_live.to_string(),
            "--format",
            "{{json .}}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let run = e.run(&[
        "--rm",
        "--name",
        "evrun",
        "--label",
        "team=blue",
        BUSYBOX,
        "sh",
        "-c",
        "exit 3",
    ]);
    run.assert_code(3);
    e.docker(&["tag", BUSYBOX, "evtag:v1"]).ok();
    e.run(&["-d", "--name", "evsleep", BUSYBOX, "sleep", "60"])
        .ok();
    let sleeper = e.container_id("evsleep");
    e.docker(&["exec", "evsleep", "true"]).ok();
    // A kill by the kernel's OOM killer: `oom` before `die`.
    let oom = e.run(&[
        "--rm",
        "--name",
        "evoom",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        BUSYBOX,
        "tail",
        "/dev/zero",
    ]);
    oom.assert_code(137);
    e.docker(&["kill", "evsleep"]).ok();
    e.docker(&["wait", "evsleep"]).ok();
    e.docker(&["rm", "evsleep"]).ok();
    let until = now_secs() + 1;
    std::thread::sleep(Duration::from_millis(1100));

    let past = e.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--format",
        "{{json .}}",
    ]);
    let evs = events(past.ok());
    let die = evs
        .iter()
        .find(|v| v["Action"] == "die" && v["Actor"]["Attributes"]["name"] == "evrun")
        .unwrap_or_else(|| panic!("no die of evrun:\n{past}"));
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3", "{die}");
    assert_eq!(die["Actor"]["Attributes"]["team"], "blue", "{die}");
    assert_eq!(die["Type"], "container");
    assert_eq!(die["from"], BUSYBOX);
    assert_eq!(die["scope"], "local");
    assert!(die["timeNano"].as_i64().unwrap() / 1_000_000_000 == die["time"].as_i64().unwrap());
    let run_id = die["Actor"]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        actions_of(&evs, &run_id),
        ["create", "attach", "start", "die", "destroy"],
        "{past}"
    );
    let sleeper_actions = actions_of(&evs, &sleeper);
    for a in [
        "create",
        "start",
        "exec_create: true",
        "exec_start: true",
        "exec_die",
        "kill",
        "die",
        "destroy",
    ] {
        assert!(
            sleeper_actions.iter().any(|x| x == a),
            "no {a}: {sleeper_actions:?}"
        );
    }
    let oom_id = evs
        .iter()
        .find(|v| v["Action"] == "create" && v["Actor"]["Attributes"]["name"] == "evoom")
        .unwrap_or_else(|| panic!("no create of evoom:\n{past}"))["Actor"]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let oom_actions = actions_of(&evs, &oom_id);
    let at = |a: &str| oom_actions.iter().position(|x| x == a);
    assert!(
        at("oom").is_some() && at("oom") < at("die"),
        "{oom_actions:?}"
    );
    let tag = evs
        .iter()
        .find(|v| v["Type"] == "image" && v["Action"] == "tag")
        .unwrap_or_else(|| panic!("no tag event:\n{past}"));
    assert_eq!(tag["Actor"]["Attributes"]["name"], "evtag:v1");

    // The live listener saw the same and ended at its until by itself.
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(s) = live.try_wait().unwrap() {
            break s;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(15),
            "events --until did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut live_out = String::new();
    live.stdout
        .take()
        .unwrap()
        .read_to_string(&mut live_out)
        .unwrap();
    assert!(status.success(), "{live_out}");
    let live_evs: Vec<Value> = live_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        actions_of(&live_evs, &run_id),
        ["create", "attach", "start", "die", "destroy"],
        "{live_out}"
    );

    // Filters: by event, by container name, by type and label.
    let filtered = |filters: &[&str]| {
        let mut args = vec![
            "events".to_string(),
            "--since".into(),
            since.to_string(),
            "--until".into(),
            until.to_string(),
            "--format".into(),
            "{{json .}}".into(),
        ];
        for f in filters {
            args.push("--filter".into());
            args.push((*f).to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = e.docker(&refs);
        events(out.ok())
    };
    let dies = filtered(&["event=die"]);
    assert_eq!(dies.len(), 3, "{dies:?}");
    assert!(dies.iter().all(|v| v["Action"] == "die"));
    let evrun = filtered(&["container=evrun"]);
    assert_eq!(actions_of(&evrun, &run_id).len(), evrun.len());
    assert_eq!(evrun.len(), 5, "{evrun:?}");
    let blue = filtered(&["type=container", "label=team=blue", "event=start"]);
    assert_eq!(blue.len(), 1, "{blue:?}");
    let images = filtered(&["type=image"]);
    assert!(images.iter().all(|v| v["Type"] == "image"), "{images:?}");
    assert!(images.iter().any(|v| v["Action"] == "load"), "{images:?}");
    let execs = filtered(&["event=exec_create"]);
    assert_eq!(execs.len(), 1, "{execs:?}");

    // The CLI's own rendering of an event line.
    let text = e.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "event=destroy",
        "--filter",
        "container=evrun",
    ]);
    assert!(
        text.ok().stdout.contains(&format!(
            "container destroy {run_id} (image={BUSYBOX}, name=evrun, team=blue)"
        )),
        "{text}"
    );
}

/// A build whose FROM names an image that is not here pulls it first, with the
/// pull's progress in the build's stream, as dockerd's builder does; an unknown
/// one fails the build with the registry's answer.
#[test]
fn engined_registry_build_from_pulls_a_missing_base() {
    let reg = Registry::start();
    let e = Engined::start();
    let base = format!("{}/base:1", reg.host());
    tagged_busybox(&e, &base);
    e.docker(&["push", &base]).ok();
    e.docker(&["rmi", &base, BUSYBOX]).ok();

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo built-on-pulled-base\n"),
    )
    .unwrap();
    let mut c = e.docker_command(&["build", "-t", "onpulled", ctx.path().to_str().unwrap()]);
    c.env("DOCKER_BUILDKIT", "0");
    let out = integration::run_with_timeout(c, Duration::from_secs(120));
    out.ok();
    assert!(out.stdout.contains("Pulling from base"), "{out}");
    assert!(out.stdout.contains("built-on-pulled-base\n"), "{out}");
    let images = e.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.ok().stdout.contains(&base), "{images}");
    assert_eq!(
        e.run(&["--rm", "onpulled", "echo", "ok"]).ok().stdout,
        "ok\n"
    );

    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/nosuch:1\nRUN true\n", reg.host()),
    )
    .unwrap();
    let mut c = e.docker_command(&["build", ctx.path().to_str().unwrap()]);
    c.env("DOCKER_BUILDKIT", "0");
    let bad = integration::run_with_timeout(c, Duration::from_secs(120));
    bad.assert_failed();
    assert!(
        bad.stderr.contains("manifest for") && bad.stderr.contains("not found"),
        "{bad}"
    );
}
