//! `linux.seccomp`: actions, errno values, argument conditions, Docker's default
//! profile, and profiles that must fail `create` cleanly.
// The fixture helpers fail the test that uses them when a precondition breaks.
#![allow(clippy::panic, clippy::unwrap_used)]
use integration::{Output, TestContainer, Value, json, serde_json, workspace_root};

/// SIGSYS is 31 on x86_64; a runtime reports death by signal N as 128+N.
const KILLED_BY_SIGSYS: i32 = 128 + 31;

/// Docker's default profile in OCI form (see integration/fixtures/README.md).
fn docker_default_profile() -> Value {
    let path = workspace_root().join("integration/fixtures/docker-default-seccomp.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Docker's default profile with `names` taken out of every rule, so that they fall
/// to its default action (SCMP_ACT_ERRNO).
fn docker_profile_without(names: &[&str]) -> Value {
    let mut p = docker_default_profile();
    for rule in p["syscalls"].as_array_mut().unwrap() {
        rule["names"]
            .as_array_mut()
            .unwrap()
            .retain(|n| !names.iter().any(|x| n == x));
    }
    p
}

fn container(args: &[&str], profile: Value) -> TestContainer {
    let mut tc = TestContainer::new(args);
    tc.config()["linux"]["seccomp"] = profile;
    tc
}

/// A profile that allows everything but applies `rule` to mkdir and mkdirat (busybox
/// uses either, depending on the build).
fn mkdir_rule(rule: Value) -> Value {
    let mut rule = rule;
    rule["names"] = json!(["mkdir", "mkdirat"]);
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule] })
}

#[track_caller]
fn assert_mkdir_fails_with(out: &Output, message: &str) {
    assert_ne!(out.code(), Some(0), "{out}");
    assert!(
        out.stderr
            .contains(&format!("can't create directory '/newdir': {message}")),
        "{out}"
    );
    assert!(
        out.stdout.contains("before\n"),
        "commands before mkdir ran:\n{out}"
    );
}

const MKDIR_SCRIPT: &[&str] = &["sh", "-c", "echo before; ls / >/dev/null; mkdir /newdir"];

#[test]
fn errno_action_blocks_only_the_listed_syscall() {
    let tc = container(
        MKDIR_SCRIPT,
        mkdir_rule(json!({ "action": "SCMP_ACT_ERRNO" })),
    );
    let out = tc.run_foreground(&[]);
    assert_mkdir_fails_with(&out, "Operation not permitted");
    assert!(!tc.rootfs().join("newdir").exists());
}

#[test]
fn errno_ret_is_the_errno_returned() {
    let tc = container(
        MKDIR_SCRIPT,
        mkdir_rule(json!({ "action": "SCMP_ACT_ERRNO", "errnoRet": libc_enosys() })),
    );
    assert_mkdir_fails_with(&tc.run_foreground(&[]), "Function not implemented");
}

#[test]
fn default_errno_with_an_allow_list() {
    // Docker's allow list without mkdir: mkdir falls to the default action, ERRNO.
    let tc = container(MKDIR_SCRIPT, docker_profile_without(&["mkdir", "mkdirat"]));
    assert_mkdir_fails_with(&tc.run_foreground(&[]), "Operation not permitted");
}

#[test]
fn default_errno_ret_is_honoured() {
    let mut profile = docker_profile_without(&["mkdir", "mkdirat"]);
    profile["defaultErrnoRet"] = json!(libc_enosys());
    let tc = container(MKDIR_SCRIPT, profile);
    assert_mkdir_fails_with(&tc.run_foreground(&[]), "Function not implemented");
}

#[test]
fn trace_without_a_tracer_fails_the_syscall_with_enosys() {
    let tc = container(
        MKDIR_SCRIPT,
        mkdir_rule(json!({ "action": "SCMP_ACT_TRACE" })),
    );
    assert_mkdir_fails_with(&tc.run_foreground(&[]), "Function not implemented");
}

#[test]
fn log_action_allows_the_syscall() {
    let tc = container(
        &["sh", "-c", "mkdir /newdir && echo made"],
        mkdir_rule(json!({ "action": "SCMP_ACT_LOG" })),
    );
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "made\n", "{out}");
}

#[test]
fn kill_process_kills_with_sigsys() {
    let tc = container(
        &["mkdir", "/newdir"],
        mkdir_rule(json!({ "action": "SCMP_ACT_KILL_PROCESS" })),
    );
    tc.run_foreground(&[]).assert_code(KILLED_BY_SIGSYS);
    assert!(!tc.rootfs().join("newdir").exists());
}

#[test]
fn kill_thread_of_a_single_threaded_process_kills_it() {
    let tc = container(
        &["mkdir", "/newdir"],
        mkdir_rule(json!({ "action": "SCMP_ACT_KILL" })),
    );
    tc.run_foreground(&[]).assert_code(KILLED_BY_SIGSYS);
}

#[test]
fn trap_delivers_sigsys() {
    let tc = container(
        &["mkdir", "/newdir"],
        mkdir_rule(json!({ "action": "SCMP_ACT_TRAP" })),
    );
    tc.run_foreground(&[]).assert_code(KILLED_BY_SIGSYS);
}

/// personality(PER_LINUX32) is what busybox `linux32` calls; `linux64` calls
/// personality(PER_LINUX), which the EQ condition must leave alone.
#[test]
fn eq_condition_blocks_only_the_matching_argument() {
    let tc = container(
        &[
            "sh",
            "-c",
            "linux64 true && echo linux64 ok; linux32 true || echo linux32 refused",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }]
            }]
        }),
    );
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "linux64 ok\nlinux32 refused\n", "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

/// Like Docker's rule for clone: refuse unshare when a namespace bit is set in the
/// flags (MASKED_EQ: flags & mask == valueTwo), here only CLONE_NEWUTS, with its own
/// errno to tell the seccomp refusal apart from a missing capability.
#[test]
fn masked_eq_condition_matches_flag_bits() {
    const CLONE_NEWUTS: u64 = 0x0400_0000;
    let mut tc = container(
        &[
            "sh",
            "-c",
            "unshare -i true && echo ipc ok; unshare -u true || echo uts refused",
        ],
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["unshare"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc_enosys(),
                "args": [{
                    "index": 0, "value": CLONE_NEWUTS, "valueTwo": CLONE_NEWUTS,
                    "op": "SCMP_CMP_MASKED_EQ"
                }]
            }]
        }),
    );
    let caps = json!(["CAP_SYS_ADMIN"]);
    tc.config()["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    let out = tc.run_foreground(&[]);
    out.ok();
    assert_eq!(out.stdout, "ipc ok\nuts refused\n", "{out}");
    assert!(out.stderr.contains("Function not implemented"), "{out}");
}

/// The capabilities dockerd gives a default container.
fn docker_caps() -> Value {
    json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ])
}

/// A container set up as dockerd sets up a default one: its capabilities, no
/// noNewPrivileges (so the filter is loaded while init still holds CAP_SYS_ADMIN),
/// and, when `seccomp` is true, its default profile.
fn docker_like(args: &[&str], seccomp: bool) -> TestContainer {
    let mut tc = TestContainer::new(args);
    let caps = docker_caps();
    tc.config()["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps
    });
    tc.config()["process"]["noNewPrivileges"] = json!(false);
    if seccomp {
        tc.config()["linux"]["seccomp"] = docker_default_profile();
    }
    tc
}

const DOCKER_SCRIPT: &[&str] = &[
    "sh",
    "-c",
    "echo hello; ls /bin | grep -c . >/dev/null; mkdir /newdir && echo mkdir ok; \
     linux32 true && echo linux32 ok; unshare -U true && echo userns ok",
];

#[test]
fn docker_default_profile_runs_normal_commands_and_blocks_unshare() {
    let out = docker_like(DOCKER_SCRIPT, true).run_foreground(&[]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.stdout, "hello\nmkdir ok\nlinux32 ok\n", "{out}");
    assert!(
        out.stderr
            .contains("unshare: unshare(0x10000000): Operation not permitted"),
        "{out}"
    );
}

/// The same container without the profile may unshare a user namespace: the refusal
/// above is the profile's doing.
#[test]
fn docker_like_container_without_profile_may_unshare() {
    let out = docker_like(DOCKER_SCRIPT, false).run_foreground(&[]);
    out.ok();
    assert_eq!(
        out.stdout, "hello\nmkdir ok\nlinux32 ok\nuserns ok\n",
        "{out}"
    );
}

/// The profile with noNewPrivileges: the filter is then loaded just before execve.
#[test]
fn docker_default_profile_with_no_new_privileges() {
    let mut tc = docker_like(DOCKER_SCRIPT, true);
    tc.config()["process"]["noNewPrivileges"] = json!(true);
    let out = tc.run_foreground(&[]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.stdout, "hello\nmkdir ok\nlinux32 ok\n", "{out}");
}

/// create + start (not run): the filter survives the wait for `start`.
#[test]
fn profile_applies_after_create_and_start() {
    let tc = container(
        &["mkdir", "/newdir"],
        mkdir_rule(json!({ "action": "SCMP_ACT_KILL_PROCESS" })),
    );
    tc.create().ok();
    tc.start().ok();
    let state = tc.wait_status("stopped");
    assert_eq!(state["status"], "stopped");
    assert!(!tc.rootfs().join("newdir").exists());
    tc.delete().ok();
}

/// ocirun promises more than runc: exactly one line of error.
#[track_caller]
fn assert_create_fails_cleanly(tc: &TestContainer) -> Output {
    let out = tc.create();
    out.assert_code(1);
    if tc.rt.is_ocirun() {
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of error:\n{out}");
    }
    tc.assert_no_trace();
    out
}

#[test]
fn unknown_default_action_fails_create() {
    let tc = container(&["true"], json!({ "defaultAction": "SCMP_ACT_BOGUS" }));
    let out = assert_create_fails_cleanly(&tc);
    if tc.rt.is_ocirun() {
        assert!(out.stderr.contains("SCMP_ACT_BOGUS"), "{out}");
    }
}

#[test]
fn unknown_rule_action_fails_create() {
    let tc = container(&["true"], mkdir_rule(json!({ "action": "SCMP_ACT_BOGUS" })));
    let out = assert_create_fails_cleanly(&tc);
    if tc.rt.is_ocirun() {
        assert!(out.stderr.contains("SCMP_ACT_BOGUS"), "{out}");
    }
}

#[test]
fn unknown_operator_fails_create() {
    let tc = container(
        &["true"],
        mkdir_rule(json!({
            "action": "SCMP_ACT_ERRNO",
            "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_BOGUS" }]
        })),
    );
    let out = assert_create_fails_cleanly(&tc);
    if tc.rt.is_ocirun() {
        assert!(out.stderr.contains("SCMP_CMP_BOGUS"), "{out}");
    }
}

#[test]
fn argument_index_out_of_range_fails_create() {
    let tc = container(
        &["true"],
        mkdir_rule(json!({
            "action": "SCMP_ACT_ERRNO",
            "args": [{ "index": 7, "value": 1, "op": "SCMP_CMP_EQ" }]
        })),
    );
    assert_create_fails_cleanly(&tc);
}

/// runc needs listenerPath for SCMP_ACT_NOTIFY; ocirun does not support it at all.
#[test]
fn notify_without_listener_fails_create() {
    let tc = container(
        &["true"],
        mkdir_rule(json!({ "action": "SCMP_ACT_NOTIFY" })),
    );
    let out = assert_create_fails_cleanly(&tc);
    if tc.rt.is_ocirun() {
        assert!(
            out.stderr.contains("SCMP_ACT_NOTIFY is not supported"),
            "{out}"
        );
    }
}

/// runc 1.1 refuses every flag ("seccomp flags are not yet supported by runc"); later
/// runc versions and ocirun accept them.
#[test]
fn filter_flags_are_accepted() {
    let mut profile = mkdir_rule(json!({ "action": "SCMP_ACT_ERRNO" }));
    profile["flags"] = json!([
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_TSYNC"
    ]);
    let tc = container(MKDIR_SCRIPT, profile);
    let out = tc.run_foreground(&[]);
    if !tc.rt.is_ocirun() && out.stderr.contains("seccomp flags are not yet supported") {
        eprintln!(
            "note: {} does not support seccomp flags",
            tc.rt.path().display()
        );
        out.assert_code(1);
        return;
    }
    assert_mkdir_fails_with(&out, "Operation not permitted");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let mut profile = mkdir_rule(json!({ "action": "SCMP_ACT_ERRNO" }));
    profile["syscalls"][0]["names"] = json!(["no_such_syscall_ever", "mkdir", "mkdirat"]);
    let tc = container(MKDIR_SCRIPT, profile);
    assert_mkdir_fails_with(&tc.run_foreground(&[]), "Operation not permitted");
}

#[test]
fn features_report_seccomp() {
    let rt = integration::Runtime::from_env();
    let mut cmd = rt.command();
    cmd.arg("features");
    let out = integration::run_with_timeout(cmd, integration::COMMAND_TIMEOUT);
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], true, "{f}");
    let has = |key: &str, v: &str| s[key].as_array().is_some_and(|a| a.iter().any(|x| x == v));
    for a in [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
    ] {
        assert!(has("actions", a), "{a}: {s}");
    }
    for op in ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"] {
        assert!(has("operators", &format!("SCMP_CMP_{op}")), "{op}: {s}");
    }
    for arch in ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"] {
        assert!(has("archs", arch), "{arch}: {s}");
    }
}

/// ENOSYS on Linux (every architecture Docker's profile names).
fn libc_enosys() -> u32 {
    38
}

/// `exec` applies the container's profile too: a process joined later must not escape
/// the filter init runs under.
#[test]
fn exec_runs_under_the_containers_profile() {
    let tc = container(
        &["sleep", "30"],
        mkdir_rule(json!({ "action": "SCMP_ACT_ERRNO" })),
    );
    tc.run_detached();
    let out = tc.run(&["exec", &tc.id, "sh", "-c", MKDIR_SCRIPT[2]]);
    assert_mkdir_fails_with(&out, "Operation not permitted");
    tc.run(&["exec", &tc.id, "echo", "allowed"]).ok();
}
