//! `docker build` with the classic builder (`DOCKER_BUILDKIT=0`, the real docker CLI)
//! against engined: the build stream, the built image's config and files, the
//! cache, .dockerignore, build args, failing RUNs, `-q`, `-f`, symlink escapes in
//! the context, history; and `engine build` (our CLI) on the same daemon.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::path::Path;

use integration::engined::Engined;
use integration::{COMMAND_TIMEOUT, Output, run_with_timeout};

fn build(e: &Engined, args: &[&str]) -> Output {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let mut c = e.docker_command(&full);
    c.env("DOCKER_BUILDKIT", "0");
    run_with_timeout(c, COMMAND_TIMEOUT)
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn image_id(e: &Engined, name: &str) -> String {
    e.docker(&["image", "inspect", "--format", "{{.Id}}", name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

const DOCKERFILE: &str = "\
# a comment
FROM busybox
ARG GREETING=hello
ENV APP_HOME=/app \\
    MODE=test
WORKDIR $APP_HOME
COPY hello.txt ./
COPY dir/ sub/
ADD files.tar /unpacked/
RUN echo \"built-$GREETING\" && echo made > /app/made.txt
LABEL org.example.k=v
EXPOSE 8080
VOLUME /data
USER 1000
ENTRYPOINT [\"/bin/sh\", \"-c\"]
CMD [\"echo run-$MODE; id -u; pwd; cat hello.txt\"]
";

fn context(dir: &Path) {
    write(dir, "Dockerfile", DOCKERFILE);
    write(dir, "hello.txt", "hello from the context\n");
    write(dir, "dir/a.txt", "a\n");
    write(dir, "dir/deep/b.txt", "b\n");
    write(dir, "secret.key", "do not send\n");
    write(dir, ".dockerignore", "*.key\n");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(7);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "inner/x.txt", &b"inside\n"[..])
        .unwrap();
    std::fs::write(dir.join("files.tar"), b.into_inner().unwrap()).unwrap();
}

#[test]
fn engined_build_stream_config_cache_and_history() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path());
    let ctxs = ctx.path().to_str().unwrap();

    let out = build(
        &e,
        &["-t", "built:1", "--build-arg", "GREETING=bonjour", ctxs],
    );
    out.ok();
    let s = &out.stdout;
    assert!(s.contains("Step 1/14 : FROM busybox"), "{out}");
    assert!(s.contains("Step 8/14 : RUN echo"), "{out}");
    assert!(s.contains(" ---> Running in "), "{out}");
    assert!(s.contains("built-bonjour\n"), "{out}");
    assert!(s.contains("Removing intermediate container "), "{out}");
    assert!(s.contains("Successfully built "), "{out}");
    assert!(s.contains("Successfully tagged built:1\n"), "{out}");
    let id = image_id(&e, "built:1");
    let short = &id.trim_start_matches("sha256:")[..12];
    assert!(
        s.contains(&format!("Successfully built {short}\n")),
        "{out}"
    );
    // No intermediate containers are left after a successful build.
    let ps = e.docker(&["ps", "-aq"]);
    assert_eq!(ps.ok().stdout.trim(), "", "{ps}");

    // The image's config and files, through a container of it.
    let run = e.run(&["--rm", "built:1"]);
    assert_eq!(
        run.ok().stdout,
        "run-test\n1000\n/app\nhello from the context\n",
        "{run}"
    );
    let files = e.run(&[
        "--rm",
        "--entrypoint",
        "sh",
        "built:1",
        "-c",
        "cat /app/sub/a.txt /app/sub/deep/b.txt /unpacked/inner/x.txt /app/made.txt; ls /app; stat -c %u /app/hello.txt",
    ]);
    assert_eq!(
        files.ok().stdout,
        "a\nb\ninside\nmade\nhello.txt\nmade.txt\nsub\n0\n",
        "{files}"
    );
    let secret = e.run(&["--rm", "--entrypoint", "ls", "built:1", "/app"]);
    assert!(!secret.ok().stdout.contains("secret.key"), "{secret}");
    let cfg = e.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}} {{json .Config.ExposedPorts}} {{json .Config.Volumes}} {{.Config.User}} {{.Config.WorkingDir}}",
        "built:1",
    ]);
    assert_eq!(
        cfg.ok().stdout.trim(),
        r#"{"org.example.k":"v"} {"8080/tcp":{}} {"/data":{}} 1000 /app"#,
        "{cfg}"
    );

    // docker history: one row per instruction, the classic builder's created_by.
    let h = e.docker(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "built:1",
    ]);
    let rows = h.ok().stdout.clone();
    assert!(rows.contains("/bin/sh -c #(nop)  CMD [\""), "{h}");
    assert!(
        rows.contains("/bin/sh -c #(nop)  ENV APP_HOME=/app MODE=test"),
        "{h}"
    );
    assert!(rows.contains("|1 GREETING=bonjour /bin/sh -c echo"), "{h}");
    assert!(rows.contains("/bin/sh -c #(nop) COPY file:"), "{h}");

    // Again: every step from the cache, the same image.
    let again = build(
        &e,
        &["-t", "built:2", "--build-arg", "GREETING=bonjour", ctxs],
    );
    again.ok();
    assert_eq!(
        again.stdout.matches(" ---> Using cache").count(),
        13,
        "{again}"
    );
    assert!(!again.stdout.contains("built-bonjour"), "{again}");
    assert_eq!(image_id(&e, "built:2"), id);

    // A changed COPYed file: cache up to the step before it, rebuilt from it on.
    write(ctx.path(), "hello.txt", "changed\n");
    let changed = build(
        &e,
        &["-t", "built:3", "--build-arg", "GREETING=bonjour", ctxs],
    );
    changed.ok();
    assert_eq!(
        changed.stdout.matches(" ---> Using cache").count(),
        3,
        "{changed}"
    );
    assert!(changed.stdout.contains("built-bonjour\n"), "{changed}");
    assert_ne!(image_id(&e, "built:3"), id);
    let run = e.run(&["--rm", "--entrypoint", "cat", "built:3", "/app/hello.txt"]);
    assert_eq!(run.ok().stdout, "changed\n", "{run}");
}

#[test]
fn engined_build_failures_quiet_and_other_dockerfile() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let ctxs = ctx.path().to_str().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nRUN echo before; false\n",
    );
    let out = build(&e, &["-t", "fails", ctxs]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("The command '/bin/sh -c echo before; false' returned a non-zero code: 1"),
        "{out}"
    );
    assert!(out.stdout.contains("before\n"), "{out}");
    // The failed container stays, as dockerd leaves it.
    let ps = e.docker(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.ok().stdout.starts_with("Exited (1)"), "{ps}");

    // -f another Dockerfile, -q: only the id.
    write(
        ctx.path(),
        "other.Dockerfile",
        "FROM busybox\nENV X=${UNSET:-fallback}\nCMD echo $X\n",
    );
    // The CLI takes -f relative to its working directory.
    let other = ctx.path().join("other.Dockerfile");
    let q = build(&e, &["-q", "-f", other.to_str().unwrap(), ctxs]);
    q.ok();
    let id = q.stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{q}");
    assert!(!q.stdout.contains("Step"), "{q}");
    let run = e.run(&["--rm", &id]);
    assert_eq!(run.ok().stdout, "fallback\n", "{run}");

    // An unknown instruction and a missing base image fail cleanly.
    write(ctx.path(), "bad.Dockerfile", "FROM busybox\nFROBNICATE x\n");
    let bad_file = ctx.path().join("bad.Dockerfile");
    let bad = build(&e, &["-f", bad_file.to_str().unwrap(), ctxs]);
    bad.assert_code(1);
    assert!(
        bad.stderr.contains("unknown instruction: FROBNICATE"),
        "{bad}"
    );
    // On a registry that refuses connections, so the test needs no network.
    write(
        ctx.path(),
        "absent.Dockerfile",
        "FROM 127.0.0.1:1/nothere:1\n",
    );
    let absent_file = ctx.path().join("absent.Dockerfile");
    let absent = build(&e, &["-f", absent_file.to_str().unwrap(), ctxs]);
    absent.assert_code(1);
    assert!(absent.stderr.contains("nothere:1"), "{absent}");
}

#[test]
fn engined_build_context_symlinks_do_not_leak_host_files() {
    let e = Engined::start();
    e.load_busybox();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret.txt");
    std::fs::write(&secret, "HOST-SECRET\n").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let ctxs = ctx.path().to_str().unwrap();
    write(ctx.path(), "ok.txt", "ok\n");
    std::os::unix::fs::symlink(&secret, ctx.path().join("abs")).unwrap();
    // Enough `..` to climb from any temp dir to the host's root.
    let rel = format!("../../../../../../../..{}", secret.display());
    std::os::unix::fs::symlink(&rel, ctx.path().join("rel")).unwrap();

    // The links themselves as sources: resolved inside the context, not found.
    for link in ["abs", "rel"] {
        write(
            ctx.path(),
            "Dockerfile",
            &format!("FROM busybox\nCOPY {link} /leak\n"),
        );
        let out = build(&e, &[ctxs]);
        out.assert_code(1);
        assert!(!out.stdout.contains("HOST-SECRET"), "{out}");
        assert!(
            out.stderr.contains("file not found in build context"),
            "{out}"
        );
    }
    // A `..` source outside the context.
    write(ctx.path(), "Dockerfile", "FROM busybox\nCOPY ../x /x\n");
    let out = build(&e, &[ctxs]);
    out.assert_code(1);
    assert!(out.stderr.contains("outside the build context"), "{out}");

    // The whole context: the links are copied as links, which lead nowhere inside.
    write(ctx.path(), "Dockerfile", "FROM busybox\nCOPY . /ctx/\n");
    build(&e, &["-t", "links", ctxs]).ok();
    let run = e.run(&[
        "--rm",
        "links",
        "sh",
        "-c",
        "cat /ctx/ok.txt; readlink /ctx/abs; cat /ctx/abs /ctx/rel 2>/dev/null; echo end",
    ]);
    assert_eq!(
        run.ok().stdout,
        format!("ok\n{}\nend\n", secret.display()),
        "{run}"
    );
}

#[test]
fn engined_build_with_the_engine_cli() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nCOPY msg.txt /msg.txt\nRUN echo engine-run-output && cat /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
    );
    write(ctx.path(), "msg.txt", "from engine build\n");
    let c = e.engine_command(&["build", "-t", "viaengine", ctx.path().to_str().unwrap()]);
    let out = run_with_timeout(c, COMMAND_TIMEOUT);
    out.ok();
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("engine-run-output"), "{out}");
    assert!(all.contains("from engine build"), "{out}");
    let run = e.run(&["--rm", "viaengine"]);
    assert_eq!(run.ok().stdout, "from engine build\n", "{run}");
}

#[test]
fn engined_build_chown_wildcards_shell_labels_and_events() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let ctxs = ctx.path().to_str().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "# escape=`\nFROM busybox\nCOPY --chown=1234:5678 *.conf /etc/app/\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo shell-ok `\n  && stat -c %u:%g /etc/app/one.conf\nSTOPSIGNAL SIGUSR1\nONBUILD RUN echo child\n",
    );
    write(ctx.path(), "one.conf", "1\n");
    write(ctx.path(), "two.conf", "2\n");
    write(ctx.path(), "skip.txt", "x\n");
    let out = build(
        &e,
        &[
            "-t",
            "edge",
            "--label",
            "from.cli=yes",
            "--build-arg",
            "UNUSED=1",
            ctxs,
        ],
    );
    out.ok();
    assert!(out.stdout.contains("shell-ok\n1234:5678\n"), "{out}");
    assert!(out.stdout.contains("Step 7/7 : LABEL"), "{out}");
    assert!(
        out.stdout
            .contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    let ls = e.run(&["--rm", "edge", "ls", "/etc/app"]);
    assert_eq!(ls.ok().stdout, "one.conf\ntwo.conf\n", "{ls}");
    let cfg = e.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Shell}} {{.Config.StopSignal}} {{json .Config.OnBuild}} {{index .Config.Labels \"from.cli\"}}",
        "edge",
    ]);
    assert_eq!(
        cfg.ok().stdout.trim(),
        r#"["/bin/sh","-ec"] SIGUSR1 ["RUN echo child"] yes"#,
        "{cfg}"
    );
    // The build's containers are reported like any other.
    let ev = e.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions = ev.ok().stdout.clone();
    for a in ["create", "start", "die", "commit", "destroy"] {
        assert!(actions.lines().any(|l| l == a), "no {a} event: {ev}");
    }
}

#[test]
fn engined_build_stages_and_target() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let ctxs = ctx.path().to_str().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "ARG BASE=busybox\nFROM $BASE AS base\nRUN echo first > /stage.txt\nFROM base AS second\nRUN echo second >> /stage.txt\n",
    );
    let out = build(&e, &["-t", "full", ctxs]);
    out.ok();
    assert!(
        out.stdout
            .contains("Step 1/5 : ARG BASE=busybox\nStep 2/5 : FROM $BASE AS base\n ---> "),
        "{out}"
    );
    let full = e.run(&["--rm", "full", "cat", "/stage.txt"]);
    assert_eq!(full.ok().stdout, "first\nsecond\n", "{full}");
    let out = build(&e, &["-t", "first", "--target", "base", ctxs]);
    out.ok();
    assert!(!out.stdout.contains("FROM base AS second"), "{out}");
    let first = e.run(&["--rm", "first", "cat", "/stage.txt"]);
    assert_eq!(first.ok().stdout, "first\n", "{first}");
}

#[test]
fn engined_build_from_scratch() {
    let e = Engined::start();
    e.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let ctxs = ctx.path().to_str().unwrap();
    write(ctx.path(), "bin/hello.txt", "scratch file\n");
    write(
        ctx.path(),
        "Dockerfile",
        "FROM scratch\nCOPY bin/ /data/\nENV X=1\nCMD [\"/bin/true\"]\n",
    );
    build(&e, &["-t", "scratchy", ctxs]).ok();
    let h = e.docker(&["history", "--format", "{{.Size}}", "scratchy"]);
    assert!(h.ok().stdout.lines().count() == 3, "{h}");
    // Its files, read by a busybox container copying them out.
    let out = tempfile::tempdir().unwrap();
    let id = e
        .docker(&["create", "scratchy"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let dest = out.path().join("got");
    e.docker(&[
        "cp",
        &format!("{id}:/data/hello.txt"),
        dest.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "scratch file\n");
}
