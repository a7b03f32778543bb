//! Live restore and restart policies, with the real docker CLI: kill -9 of engined,
//! of its containerd-lite, and of both, while containers run and write as fast as
//! they can; every line must be in the log once, in order, with the container's
//! true exit code and time afterwards.
#![allow(clippy::unwrap_used, clippy::panic)]
use std::time::{Duration, Instant};

use integration::daemon::unique_name;
use integration::engined::{BUSYBOX, Engined};

const LINES: u32 = 200_000;

fn daemon() -> Engined {
    let e = Engined::start();
    e.load_busybox();
    e
}

fn inspect(e: &Engined, name: &str, format: &str) -> String {
    e.docker(&["inspect", "--format", format, name])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// A container that prints 1..=LINES as fast as its shell can, then exits with `code`.
fn start_writer(e: &Engined, name: &str, code: u32) {
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo $i; done; sleep 1; exit {code}"
    );
    e.run(&["-d", "--name", name, BUSYBOX, "sh", "-c", &script])
        .ok();
}

/// Every number once, in order: nothing lost, nothing repeated.
fn assert_complete_log(e: &Engined, name: &str) {
    let logs = e.docker(&["logs", name]);
    logs.ok();
    let got: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(got.len(), LINES as usize, "line count of {name}'s log");
    for (i, l) in got.iter().enumerate() {
        assert_eq!(*l, (i + 1).to_string(), "line {} of {name}'s log", i + 1);
    }
}

fn wait_exit(e: &Engined, name: &str) -> String {
    let out = e.docker(&["wait", name]);
    out.ok();
    out.stdout.trim().to_string()
}

fn status(e: &Engined, name: &str) -> String {
    inspect(e, name, "{{.State.Status}}")
}

fn wait_status(e: &Engined, name: &str, want: &str, timeout: Duration) {
    integration::wait_for(timeout, &format!("{name} to be {want}"), || {
        (status(e, name) == want).then_some(())
    });
}

#[test]
fn kill9_engined_while_a_container_writes_fast_loses_no_line() {
    let mut e = daemon();
    let w = unique_name();
    start_writer(&e, &w, 7);
    let sleeper = unique_name();
    e.run(&["-d", "--name", &sleeper, BUSYBOX, "sleep", "1000"])
        .ok();
    std::thread::sleep(Duration::from_millis(300));
    e.kill9();
    // The containers go on without engined.
    std::thread::sleep(Duration::from_millis(300));
    e.spawn();
    let ps = e.docker(&["ps", "--format", "{{.Names}}"]);
    assert!(ps.ok().stdout.contains(&sleeper), "{ps}");
    assert_eq!(status(&e, &sleeper), "running");
    assert_eq!(wait_exit(&e, &w), "7");
    assert_complete_log(&e, &w);
    // exec and stop work on a container engined took back.
    let out = e.docker(&["exec", &sleeper, "echo", "after restart"]);
    assert_eq!(out.ok().stdout, "after restart\n");
    e.docker(&["stop", "-t", "1", &sleeper]).ok();
    assert_eq!(inspect(&e, &sleeper, "{{.State.ExitCode}}"), "137");
}

#[test]
fn kill9_containerd_lite_is_restarted_and_containers_carry_on() {
    let e = daemon();
    let w = unique_name();
    start_writer(&e, &w, 3);
    let sleeper = unique_name();
    e.run(&["-d", "--name", &sleeper, BUSYBOX, "sleep", "1000"])
        .ok();
    let first = e.containerd_lite_pid().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    e.kill9_containerd_lite();
    // engined starts it again, and it reconnects to the shims.
    integration::wait_for(Duration::from_secs(20), "a new containerd-lite", || {
        e.containerd_lite_pid().filter(|p| *p != first)
    });
    let out = integration::wait_for(Duration::from_secs(20), "exec to work again", || {
        let o = e.docker(&["exec", &sleeper, "echo", "still here"]);
        o.success().then_some(o)
    });
    assert_eq!(out.stdout, "still here\n");
    assert_eq!(wait_exit(&e, &w), "3");
    assert_complete_log(&e, &w);
    e.docker(&["stop", "-t", "1", &sleeper]).ok();
    assert_eq!(status(&e, &sleeper), "exited");
}

#[test]
fn kill9_of_both_keeps_containers_and_the_exits_that_happened_meanwhile() {
    let mut e = daemon();
    let w = unique_name();
    start_writer(&e, &w, 0);
    let quitter = unique_name();
    e.run(&[
        "-d",
        "--name",
        &quitter,
        BUSYBOX,
        "sh",
        "-c",
        "sleep 1; exit 4",
    ])
    .ok();
    let sleeper = unique_name();
    e.run(&["-d", "--name", &sleeper, BUSYBOX, "sleep", "1000"])
        .ok();
    std::thread::sleep(Duration::from_millis(200));
    e.kill9();
    e.kill9_containerd_lite();
    // The quitter exits while nothing above its shim runs.
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = jsonlog::nanos_of(std::time::SystemTime::now());
    e.spawn();
    assert_eq!(status(&e, &sleeper), "running");
    wait_status(&e, &quitter, "exited", Duration::from_secs(10));
    assert_eq!(inspect(&e, &quitter, "{{.State.ExitCode}}"), "4");
    let finished = inspect(&e, &quitter, "{{.State.FinishedAt}}");
    assert!(
        jsonlog::parse_rfc3339_nanos(&finished).unwrap() < restarted_at,
        "the exit is dated when it happened ({finished}), not when engined came back ({restarted_at})"
    );
    let ps = e.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.ok().stdout.contains(&format!("{quitter} Exited (4)")),
        "{ps}"
    );
    assert_eq!(wait_exit(&e, &w), "0");
    assert_complete_log(&e, &w);
    let out = e.docker(&["exec", &sleeper, "echo", "ok"]);
    assert_eq!(out.ok().stdout, "ok\n");
}

#[test]
fn stdin_stays_open_across_an_engined_restart() {
    let mut e = daemon();
    let name = unique_name();
    e.run(&["-d", "-i", "--name", &name, BUSYBOX, "cat"]).ok();
    e.kill9();
    e.spawn();
    // cat would have exited at EOF.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&e, &name), "running");
    // A new attach writes to the same stdin.
    let mut cmd = e.docker_command(&["attach", &name]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed after the restart\n").unwrap();
    }
    integration::wait_for(Duration::from_secs(10), "cat to echo the input", || {
        let l = e.docker(&["logs", &name]);
        l.stdout.contains("typed after the restart").then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    e.docker(&["rm", "-f", &name]).ok();
}

#[test]
fn restart_policies_always_on_failure_and_stop() {
    let e = daemon();
    let always = unique_name();
    e.run(&[
        "-d",
        "--restart",
        "always",
        "--name",
        &always,
        BUSYBOX,
        "sh",
        "-c",
        "echo run; exit 3",
    ])
    .ok();
    let capped = unique_name();
    e.run(&[
        "-d",
        "--restart",
        "on-failure:2",
        "--name",
        &capped,
        BUSYBOX,
        "sh",
        "-c",
        "echo try; exit 1",
    ])
    .ok();
    let clean = unique_name();
    e.run(&[
        "-d",
        "--restart",
        "on-failure",
        "--name",
        &clean,
        BUSYBOX,
        "true",
    ])
    .ok();
    integration::wait_for(Duration::from_secs(20), "always to restart twice", || {
        let n: i64 = inspect(&e, &always, "{{.RestartCount}}").parse().ok()?;
        (n >= 2).then_some(())
    });
    integration::wait_for(Duration::from_secs(20), "on-failure:2 to give up", || {
        let s = inspect(&e, &capped, "{{.State.Status}} {{.RestartCount}}");
        (s == "exited 2").then_some(())
    });
    let tries = e.docker(&["logs", &capped]);
    assert_eq!(
        tries.ok().stdout,
        "try\ntry\ntry\n",
        "one run and two restarts"
    );
    assert_eq!(
        inspect(&e, &clean, "{{.State.Status}} {{.RestartCount}}"),
        "exited 0",
        "on-failure leaves a clean exit alone"
    );
    // A stop ends the restarts, even between two runs.
    e.docker(&["stop", "-t", "1", &always]).ok();
    let count = inspect(&e, &always, "{{.RestartCount}}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&e, &always), "exited");
    assert_eq!(inspect(&e, &always, "{{.RestartCount}}"), count);
    // --rm and a restart policy do not go together.
    let out = e.run(&["--rm", "--restart", "always", BUSYBOX, "true"]);
    out.assert_failed();
}

#[test]
fn restart_policies_hold_across_engined_restarts() {
    let mut e = daemon();
    let unless = unique_name();
    let always = unique_name();
    let plain = unique_name();
    for (name, policy) in [
        (&unless, "unless-stopped"),
        (&always, "always"),
        (&plain, "no"),
    ] {
        e.run(&[
            "-d",
            "--restart",
            policy,
            "--name",
            name,
            BUSYBOX,
            "sleep",
            "1000",
        ])
        .ok();
    }
    for name in [&unless, &always, &plain] {
        e.docker(&["stop", "-t", "0", name]).ok();
    }
    // An always container that exits while engined is down comes back with it.
    let flaky = unique_name();
    e.run(&[
        "-d",
        "--restart",
        "always",
        "--name",
        &flaky,
        BUSYBOX,
        "sh",
        "-c",
        "sleep 2; exit 1",
    ])
    .ok();
    e.kill9();
    std::thread::sleep(Duration::from_secs(3));
    let before = Instant::now();
    e.spawn();
    // dockerd's rule at daemon start: always restarts even a stopped container,
    // unless-stopped does not, no never does.
    wait_status(&e, &always, "running", Duration::from_secs(20));
    assert_eq!(status(&e, &unless), "exited");
    assert_eq!(status(&e, &plain), "exited");
    integration::wait_for(Duration::from_secs(20), "the flaky one to restart", || {
        let n: i64 = inspect(&e, &flaky, "{{.RestartCount}}").parse().ok()?;
        (n >= 1).then_some(())
    });
    assert!(before.elapsed() < Duration::from_secs(20));
    // A start clears the stop: unless-stopped comes back after the next restart.
    e.docker(&["start", &unless]).ok();
    e.stop();
    e.spawn();
    assert_eq!(status(&e, &unless), "running");
}

#[test]
fn pause_unpause_top_stats_and_sizes() {
    let e = daemon();
    let name = unique_name();
    e.run(&[
        "-d",
        "--memory",
        "64m",
        "--name",
        &name,
        BUSYBOX,
        "sh",
        "-c",
        "echo data > /big; sleep 1000",
    ])
    .ok();
    let top = e.docker(&["top", &name]);
    top.ok();
    assert!(top.stdout.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.stdout.contains("sleep 1000"), "{top}");

    e.docker(&["pause", &name]).ok();
    assert_eq!(status(&e, &name), "paused");
    let freezer = e.cgroup_dir("freezer", &name).join("freezer.state");
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
    let ps = e.docker(&[
        "ps",
        "--format",
        "{{.Status}}",
        "--filter",
        &format!("name={name}"),
    ]);
    assert!(ps.ok().stdout.contains("(Paused)"), "{ps}");
    e.docker(&["pause", &name]).assert_failed();
    e.docker(&["unpause", &name]).ok();
    assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    assert_eq!(status(&e, &name), "running");

    let stats = e.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        &name,
    ]);
    stats.ok();
    let fields: Vec<&str> = stats.stdout.split_whitespace().collect();
    assert_eq!(fields[0], name, "{stats}");
    // "1.2MiB / 64MiB 2": the limit is the container's own.
    assert_eq!(fields[3], "64MiB", "{stats}");
    assert!(fields[4].parse::<u32>().unwrap() >= 1, "{stats}");

    let sized = e.docker(&[
        "ps",
        "--size",
        "--format",
        "{{.Size}}",
        "--filter",
        &format!("name={name}"),
    ]);
    sized.ok();
    assert!(sized.stdout.contains("virtual"), "{sized}");
    assert!(
        !sized.stdout.starts_with("0B"),
        "the write of /big counts: {sized}"
    );
}

/// `--live-restore=false`, as dockerd without live restore: a shutdown stops the
/// containers (their stop signal, then SIGKILL), and none survives the restart.
#[test]
fn without_live_restore_a_shutdown_stops_the_containers() {
    let mut e = Engined::with_args(integration::Runtime::from_env(), &["--live-restore=false"]);
    e.load_busybox();
    let name = unique_name();
    e.run(&[
        "-d",
        "--name",
        &name,
        BUSYBOX,
        "sh",
        "-c",
        "trap 'exit 9' TERM; while true; do sleep 0.1; done",
    ])
    .ok();
    e.stop();
    e.spawn();
    assert_eq!(
        inspect(&e, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 9"
    );
}
