//! Commands that need no container: `spec` and `features`.
use integration::{COMMAND_TIMEOUT, Runtime, Value, run_with_timeout};

#[test]
fn spec_writes_default_config_in_cwd() {
    let rt = Runtime::from_env();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = rt.command();
    cmd.arg("spec").current_dir(dir.path());
    run_with_timeout(cmd, COMMAND_TIMEOUT).ok();
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    assert!(
        spec["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{spec}"
    );
    let args = spec["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!args.is_empty(), "{spec}");
}

#[test]
fn spec_refuses_to_overwrite_existing_config() {
    let rt = Runtime::from_env();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "keep me").unwrap();
    let mut cmd = rt.command();
    cmd.arg("spec").current_dir(dir.path());
    run_with_timeout(cmd, COMMAND_TIMEOUT).assert_failed();
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert_eq!(text, "keep me");
}

#[test]
fn features_prints_json() {
    let rt = Runtime::from_env();
    let mut cmd = rt.command();
    cmd.arg("features");
    let out = run_with_timeout(cmd, COMMAND_TIMEOUT);
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            f[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key}: {f}"
        );
    }
    let ns = f["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(ns.iter().any(|n| n == "user"), "{f}");
}
