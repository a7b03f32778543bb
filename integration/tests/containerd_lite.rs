//! containerd-lite driven by real containerd clients: Debian's `ctr` (containerd 1.6)
//! and the `containerd-client` crate. Each test starts its own daemon (own root,
//! state and socket) and stops it on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::containerd_lite::{ContainerdLite, Registry, binary};
use integration::wait_for;
use testkit::image::{Image, Layer, build_busybox_layer, write_docker_archive, write_oci_layout};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn busybox(name: &str) -> Image {
    Image::new(name, vec![build_busybox_layer().unwrap()], &["sh"])
}

/// Names in the first column of a ctr listing.
fn first_column(out: &str) -> Vec<String> {
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

#[test]
fn ctr_version_and_namespaces() {
    let d = ContainerdLite::start();
    let v = d.ctr_global(&["version"]);
    v.ok();
    assert!(v.stdout.contains("containerd-lite"), "{v}");
    assert!(v.stdout.contains("UUID:"), "{v}");

    let ns = format!("{}-x", d.namespace());
    d.ctr_global(&["namespaces", "create", &ns, "team=a"]).ok();
    let ls = d.ctr_global(&["namespaces", "ls"]);
    ls.ok();
    let line = ls
        .stdout
        .lines()
        .find(|l| l.starts_with(&ns))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(line.contains("team=a"), "{ls}");
    d.ctr_global(&["namespaces", "label", &ns, "team=b"]).ok();
    assert!(
        d.ctr_global(&["namespaces", "ls"])
            .stdout
            .contains("team=b")
    );
    d.ctr_global(&["namespaces", "create", &ns]).assert_failed();
    d.ctr_global(&["namespaces", "rm", &ns]).ok();
    assert!(!first_column(&d.ctr_global(&["namespaces", "ls"]).stdout).contains(&ns));
}

#[test]
fn ctr_import_both_formats_then_list_export_and_reimport() {
    let d = ContainerdLite::start();
    let docker_tar = d.dir().join("docker.tar");
    let oci_tar = d.dir().join("oci.tar");
    write_docker_archive(&busybox("busybox:latest"), &docker_tar).unwrap();
    write_oci_layout(&busybox("example/bb:v1"), &oci_tar).unwrap();
    d.ctr(&["images", "import", s(&docker_tar)]).ok();
    d.ctr(&["images", "import", s(&oci_tar)]).ok();

    let ls = d.ctr(&["images", "ls"]);
    ls.ok();
    let names = first_column(&ls.stdout);
    assert!(
        names.contains(&"docker.io/library/busybox:latest".to_string()),
        "{ls}"
    );
    assert!(
        names.contains(&"docker.io/example/bb:v1".to_string()),
        "{ls}"
    );
    assert!(ls.stdout.contains("linux/amd64"), "{ls}");

    // Two manifests, one shared config and one shared layer.
    let content = d.ctr(&["content", "ls"]);
    content.ok();
    assert_eq!(content.stdout.lines().count() - 1, 4, "{content}");
    assert!(
        content.stdout.contains("containerd.io/gc.ref.content.l.0"),
        "{content}"
    );
    assert!(
        content.stdout.contains("containerd.io/uncompressed"),
        "{content}"
    );

    // ctr unpacked through Snapshots.Prepare + Diff.Apply + Snapshots.Commit.
    let layer = build_busybox_layer().unwrap();
    let snaps = d.ctr(&["snapshots", "ls"]);
    snaps.ok();
    let line = snaps
        .stdout
        .lines()
        .find(|l| l.starts_with(layer.diff_id()))
        .unwrap_or_else(|| panic!("no snapshot named by the chain id:\n{snaps}"));
    assert!(line.contains("Committed"), "{snaps}");
    let mounts_key = format!("{}-view", d.namespace());
    d.ctr(&["snapshots", "view", &mounts_key, layer.diff_id()])
        .ok();
    let mounts = d.ctr(&["snapshots", "mounts", "/mnt", &mounts_key]);
    mounts.ok();
    assert!(mounts.stdout.contains("mount -t bind"), "{mounts}");
    assert!(
        mounts.stdout.contains("ro"),
        "a view is read-only:\n{mounts}"
    );
    d.ctr(&["snapshots", "rm", &mounts_key]).ok();

    let out = d.dir().join("export.tar");
    d.ctr(&[
        "images",
        "export",
        s(&out),
        "docker.io/library/busybox:latest",
    ])
    .ok();
    let entries = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    let entries = String::from_utf8_lossy(&entries.stdout);
    assert!(entries.contains("index.json"), "{entries}");
    assert!(
        entries.contains(&format!(
            "blobs/sha256/{}",
            layer.diff_id().trim_start_matches("sha256:")
        )),
        "{entries}"
    );

    // The export loads back, into another namespace.
    let other = format!("{}-re", d.namespace());
    let re = d.ctr_global(&["-n", &other, "images", "import", s(&out)]);
    re.ok();
    let ls = d.ctr_global(&["-n", &other, "images", "ls", "-q"]);
    assert!(
        ls.stdout.contains("docker.io/library/busybox:latest"),
        "{ls}"
    );
}

#[test]
fn ctr_images_rm_collects_content_and_snapshots() {
    let d = ContainerdLite::start();
    let tar = d.dir().join("bb.tar");
    write_docker_archive(&busybox("busybox:latest"), &tar).unwrap();
    d.ctr(&["images", "import", s(&tar)]).ok();
    assert_eq!(
        d.blob_files().len(),
        3,
        "manifest, config and layer on disk"
    );
    assert!(!first_column(&d.ctr(&["snapshots", "ls"]).stdout).is_empty());

    d.ctr(&["images", "rm", "docker.io/library/busybox:latest"])
        .ok();
    let content = d.ctr(&["content", "ls", "-q"]);
    content.ok();
    assert_eq!(content.stdout.trim(), "", "{content}");
    assert!(first_column(&d.ctr(&["snapshots", "ls"]).stdout).is_empty());
    assert_eq!(d.blob_files(), Vec::<String>::new());
    let dirs = std::fs::read_dir(
        d.root()
            .join("io.containerd.snapshotter.v1.overlayfs/snapshots"),
    )
    .unwrap()
    .count();
    assert_eq!(dirs, 0, "snapshot directories removed");
}

#[test]
fn ctr_pull_plain_http_from_local_registry() {
    let reg = Registry::start();
    let d = ContainerdLite::start();
    // Put the image into the registry with our push (a second, offline root).
    let src = d.dir().join("src-root");
    let tar = d.dir().join("bb.tar");
    write_docker_archive(&busybox("busybox:latest"), &tar).unwrap();
    d.offline(&src, &["import", "--no-unpack", s(&tar)]).ok();
    let reference = format!("{}/busybox:latest", reg.host());
    d.offline(
        &src,
        &[
            "push",
            "--plain-http",
            "docker.io/library/busybox:latest",
            &reference,
        ],
    )
    .ok();

    let pull = d.ctr(&["images", "pull", "--plain-http", &reference]);
    pull.ok();
    let ls = d.ctr(&["images", "ls"]);
    assert!(first_column(&ls.stdout).contains(&reference), "{ls}");
    let layer = build_busybox_layer().unwrap();
    let snaps = d.ctr(&["snapshots", "ls"]);
    assert!(
        snaps.stdout.contains(layer.diff_id()),
        "pull unpacked:\n{snaps}"
    );

    // The library pull (what engined uses) against the same registry.
    let lib_root = d.dir().join("lib-root");
    let out = d.offline(&lib_root, &["pull", "--plain-http", &reference]);
    out.ok();
    assert!(out.stdout.starts_with(&reference), "{out}");
    let snapshot_dirs =
        std::fs::read_dir(lib_root.join("io.containerd.snapshotter.v1.overlayfs/snapshots"))
            .unwrap()
            .count();
    assert_eq!(snapshot_dirs, 1, "library pull unpacked one layer");
}

#[test]
fn containerd_client_crate_lists_and_manages_containers() {
    use containerd_client::services::v1::container::Runtime;
    use containerd_client::services::v1::containers_client::ContainersClient;
    use containerd_client::services::v1::images_client::ImagesClient;
    use containerd_client::services::v1::namespaces_client::NamespacesClient;
    use containerd_client::services::v1::{
        Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
        ListContainersRequest, ListImagesRequest, ListNamespacesRequest,
    };
    use containerd_client::tonic::{Code, Request};
    use containerd_client::with_namespace;

    let d = ContainerdLite::start();
    let tar = d.dir().join("bb.tar");
    write_docker_archive(&busybox("busybox:latest"), &tar).unwrap();
    d.ctr(&["images", "import", s(&tar)]).ok();
    let ns = d.namespace().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = containerd_client::connect(d.address()).await.unwrap();
        let nss = NamespacesClient::new(ch.clone())
            .list(ListNamespacesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(nss.namespaces.iter().any(|n| n.name == ns), "{nss:?}");

        let imgs = ImagesClient::new(ch.clone())
            .list(with_namespace!(
                ListImagesRequest {
                    filters: vec!["name~=busybox".into()]
                },
                ns
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(imgs.images.len(), 1, "{imgs:?}");
        assert_eq!(imgs.images[0].name, "docker.io/library/busybox:latest");

        let mut cc = ContainersClient::new(ch.clone());
        let spec = prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        };
        let c = Container {
            id: "c1".into(),
            image: "docker.io/library/busybox:latest".into(),
            runtime: Some(Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            }),
            spec: Some(spec.clone()),
            labels: [("app".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        let created = cc
            .create(with_namespace!(
                CreateContainerRequest { container: Some(c) },
                ns
            ))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        assert!(created.created_at.is_some());
        let got = cc
            .get(with_namespace!(GetContainerRequest { id: "c1".into() }, ns))
            .await
            .unwrap()
            .into_inner()
            .container
            .unwrap();
        assert_eq!(got.spec, Some(spec));
        assert_eq!(got.runtime.unwrap().name, "io.containerd.runc.v2");
        let listed = cc
            .list(with_namespace!(
                ListContainersRequest {
                    filters: vec!["labels.app==x".into()]
                },
                ns
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.containers.len(), 1);
        cc.delete(with_namespace!(
            DeleteContainerRequest { id: "c1".into() },
            ns
        ))
        .await
        .unwrap();
        let err = cc
            .get(with_namespace!(GetContainerRequest { id: "c1".into() }, ns))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    });
    // ctr sees the same store.
    let ls = d.ctr(&["containers", "ls", "-q"]);
    assert_eq!(ls.stdout.trim(), "", "{ls}");
}

/// An Any as containerd's typeurl packs a `containerd.events.TaskExit` with
/// container_id `id`: hand-encoded protobuf (two length-delimited fields).
fn task_exit_any(id: &str) -> Vec<u8> {
    fn field(n: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, u8::try_from(data.len()).unwrap()];
        v.extend_from_slice(data);
        v
    }
    let event = field(1, id.as_bytes());
    let mut any = field(1, b"containerd.events.TaskExit");
    any.extend(field(2, &event));
    any
}

#[test]
fn events_publish_reaches_filtered_subscribers() {
    let d = ContainerdLite::start();
    let log = d.dir().join("events.out");
    let out = std::fs::File::create(&log).unwrap();
    let mut sub = d
        .ctr_command(&["events", r#"topic=="/tasks/exit""#])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Subscription is asynchronous: publish until one arrives.
    let publish = |topic: &str, id: &str| {
        let mut p = Command::new(binary())
            .args([
                "publish",
                "--address",
                s(&d.address()),
                "--topic",
                topic,
                "--namespace",
                d.namespace(),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(&task_exit_any(id))
            .unwrap();
        assert!(p.wait().unwrap().success());
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publish("/tasks/start", "not-me");
        publish("/tasks/exit", "ctr-events-probe");
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("ctr-events-probe") {
            assert!(text.contains("/tasks/exit"), "{text}");
            assert!(!text.contains("not-me"), "filtered out:\n{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event reached ctr events:\n{text}"
        );
    }
    let _ = sub.kill();
    let _ = sub.wait();
    // A malformed topic is refused.
    let bad = Command::new(binary())
        .args([
            "publish",
            "--address",
            s(&d.address()),
            "--topic",
            "nope",
            "--namespace",
            "default",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// A layer of incompressible data, so an import takes long enough to be killed in.
fn big_layer(mib: usize) -> Layer {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("blob.bin")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    drop(f);
    testkit::image::layer_from_dir(dir.path()).unwrap()
}

#[test]
fn kill9_during_import_leaves_a_consistent_store() {
    let mut d = ContainerdLite::start();
    let tar = d.dir().join("big.tar");
    let image = Image::new(
        "big:latest",
        vec![build_busybox_layer().unwrap(), big_layer(96)],
        &["sh"],
    );
    write_docker_archive(&image, &tar).unwrap();
    let mut import = d
        .ctr_command(&["images", "import", s(&tar)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the import is under way: an ingest or a blob exists.
    let ingest = d.root().join("io.containerd.content.v1.content/ingest");
    wait_for(
        Duration::from_secs(20),
        "the import to start writing",
        || {
            let ingesting = std::fs::read_dir(&ingest)
                .map(|r| r.count() > 0)
                .unwrap_or(false);
            (ingesting || !d.blob_files().is_empty()).then_some(())
        },
    );
    d.kill9();
    let _ = import.kill();
    let _ = import.wait();

    d.spawn();
    let ls = d.ctr(&["images", "ls", "-q"]);
    ls.ok();
    assert!(!ls.stdout.contains("big:latest"), "no partial image:\n{ls}");
    d.ctr(&["content", "ls"]).ok();
    d.ctr(&["snapshots", "ls"]).ok();
    // And the same import completes now.
    d.ctr(&["images", "import", s(&tar)]).ok();
    let ls = d.ctr(&["images", "ls", "-q"]);
    assert!(ls.stdout.contains("docker.io/library/big:latest"), "{ls}");
    let check = d.ctr(&["images", "check"]);
    check.ok();
    assert!(check.stdout.contains("complete"), "{check}");
}

/// A daemon with the testkit busybox imported as `docker.io/library/busybox:latest`.
fn daemon_with_busybox() -> ContainerdLite {
    daemon_with_busybox_config(None)
}

fn daemon_with_busybox_config(config: Option<&str>) -> ContainerdLite {
    let d = ContainerdLite::start_with_config(config);
    let tar = d.dir().join("bb.tar");
    write_docker_archive(&busybox("busybox:latest"), &tar).unwrap();
    d.ctr(&["images", "import", s(&tar)]).ok();
    d
}

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// `ctr task ls` as (task, status) pairs.
fn task_statuses(d: &ContainerdLite) -> Vec<(String, String)> {
    let out = d.ctr(&["task", "ls"]);
    out.ok();
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect()
}

#[test]
fn ctr_run_rm_prints_output_and_propagates_exit_codes() {
    let d = daemon_with_busybox();
    let out = d.ctr(&["run", "--rm", BUSYBOX, "t1", "echo", "hi"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "hi", "{out}");

    let out = d.ctr(&[
        "run",
        "--rm",
        BUSYBOX,
        "t2",
        "sh",
        "-c",
        "echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out}");
    assert!(out.stderr.contains("err"), "{out}");

    // --rm removed both the tasks and the containers, and their bundles.
    assert!(task_statuses(&d).is_empty());
    assert!(first_column(&d.ctr(&["containers", "ls"]).stdout).is_empty());
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

#[test]
fn ctr_detached_task_lifecycle_with_exec_kill_and_removal() {
    let d = daemon_with_busybox();
    d.ctr(&["run", "-d", BUSYBOX, "t2", "sleep", "1000"]).ok();
    assert_eq!(
        task_statuses(&d),
        vec![("t2".to_string(), "RUNNING".to_string())]
    );
    let ex = d.ctr(&["task", "exec", "--exec-id", "e1", "t2", "echo", "ex"]);
    ex.ok();
    assert_eq!(ex.stdout.trim(), "ex", "{ex}");
    let ps = d.ctr(&["task", "ps", "t2"]);
    ps.ok();
    assert_eq!(first_column(&ps.stdout).len(), 1, "{ps}");

    d.ctr(&["task", "kill", "-s", "KILL", "t2"]).ok();
    wait_for(Duration::from_secs(10), "t2 STOPPED", || {
        (task_statuses(&d) == vec![("t2".to_string(), "STOPPED".to_string())]).then_some(())
    });
    d.ctr(&["task", "rm", "t2"]).ok();
    assert!(task_statuses(&d).is_empty());
    d.ctr(&["containers", "rm", "t2"]).ok();
    assert!(first_column(&d.ctr(&["containers", "ls"]).stdout).is_empty());
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

#[test]
fn kill9_daemon_with_running_tasks_then_restart_reconnects() {
    let mut d = daemon_with_busybox();
    d.ctr(&["run", "-d", BUSYBOX, "r1", "sleep", "1000"]).ok();
    d.ctr(&["run", "-d", BUSYBOX, "r2", "sh", "-c", "sleep 2; exit 7"])
        .ok();
    d.ctr(&["run", "-d", BUSYBOX, "r3", "sleep", "1000"]).ok();
    d.kill9();
    // r2 exits while the daemon is down (its shim keeps the exit); r3's shim dies
    // too, so only `shim delete` can end it and tell its exit.
    let r3 = d
        .task_bundles()
        .into_iter()
        .find(|b| b.ends_with("r3"))
        .unwrap();
    let shim_pid: i32 = std::fs::read_to_string(r3.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // r2's shim retries its exit event with a doubling delay (0.1 s, 0.2 s, ...)
    // from the exit on: restart the daemon just after the retry at 6.3 s, so the
    // next one (at 11.3 s) comes after our subscriber is there, not before it.
    let r2 = d
        .task_bundles()
        .into_iter()
        .find(|b| b.ends_with("r2"))
        .unwrap();
    let exited_at = wait_for(Duration::from_secs(20), "r2's exit file", || {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r2.join("init.exit")).ok()?).ok()?;
        v["exited_at_unix_nanos"].as_u64()
    });
    let restart_at =
        std::time::UNIX_EPOCH + Duration::from_nanos(exited_at) + Duration::from_millis(6600);
    if let Ok(wait) = restart_at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait);
    }
    d.spawn();
    let events = subscribe_events(&d);
    let st = task_statuses(&d);
    assert!(
        st.contains(&("r1".to_string(), "RUNNING".to_string())),
        "{st:?}"
    );
    assert!(
        st.contains(&("r2".to_string(), "STOPPED".to_string())),
        "{st:?}"
    );
    assert!(
        st.contains(&("r3".to_string(), "STOPPED".to_string())),
        "{st:?}"
    );

    // r2's shim kept retrying the exit it could not publish while the daemon was
    // down: subscribers get it now.
    let exit = wait_for(Duration::from_secs(20), "r2's /tasks/exit", || {
        events_about(&events.path, "r2")
            .into_iter()
            .find(|(t, _)| t == "/tasks/exit")
    });
    assert_eq!(exit.1["exit_status"], 7, "{exit:?}");

    d.ctr(&["task", "kill", "-s", "KILL", "r1"]).ok();
    wait_for(Duration::from_secs(10), "r1 STOPPED", || {
        task_statuses(&d)
            .contains(&("r1".to_string(), "STOPPED".to_string()))
            .then_some(())
    });
    let rm = d.ctr(&["task", "rm", "r1"]);
    rm.ok();
    let rm = d.ctr(&["task", "rm", "r2"]);
    rm.ok();
    assert!(rm.stderr.contains("exit code 7"), "{rm}");
    let rm = d.ctr(&["task", "rm", "r3"]);
    rm.ok();
    assert!(rm.stderr.contains("exit code 137"), "{rm}");
    assert!(task_statuses(&d).is_empty());
    // One /tasks/delete each: from r2's shim, and from the daemon for r3, whose
    // shim is gone.
    for (id, status) in [("r2", 7), ("r3", 137)] {
        let deletes = || -> Vec<serde_json::Value> {
            events_about(&events.path, id)
                .into_iter()
                .filter(|(t, _)| t == "/tasks/delete")
                .map(|(_, v)| v)
                .collect()
        };
        wait_for(Duration::from_secs(10), "the delete events", || {
            (!deletes().is_empty()).then_some(())
        });
        // Time for a duplicate to arrive.
        std::thread::sleep(Duration::from_millis(300));
        let deletes = deletes();
        assert_eq!(deletes.len(), 1, "{id}: {deletes:?}");
        assert_eq!(deletes[0]["exit_status"], status, "{id}: {deletes:?}");
    }
    drop(events);
    d.ctr(&["containers", "rm", "r1", "r2", "r3"]).ok();
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

#[test]
fn ctr_run_tty_gets_a_pty() {
    let d = daemon_with_busybox();
    // ctr -t wants a terminal on its own stdin: script(1) gives it one.
    let inner = format!(
        "ctr -a {} -n {} run -t --rm {BUSYBOX} tt sh -c 'tty; echo done'",
        s(&d.address()),
        d.namespace()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"]).stdin(Stdio::null());
    let out = integration::run_with_timeout(cmd, Duration::from_secs(60));
    out.ok();
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert!(out.stdout.contains("done"), "{out}");
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

#[test]
fn config_points_a_runtime_at_real_containerd_shim_runc_v2() {
    let d = daemon_with_busybox_config(Some(
        "[runtimes.\"io.containerd.runc.v2\"]\nshim = \"/usr/bin/containerd-shim-runc-v2\"\n",
    ));
    let out = d.ctr(&[
        "run",
        "--rm",
        BUSYBOX,
        "rr",
        "sh",
        "-c",
        "echo via-runc; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out}");
    assert_eq!(out.stdout.trim(), "via-runc", "{out}");
    // ocirun is still there under its own name.
    let out = d.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.ocirun.v2",
        BUSYBOX,
        "ro",
        "echo",
        "via-ocirun",
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "via-ocirun", "{out}");
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

// The example that embeds containerd-lite over gRPC (cargo run --example
// run_container), taken as a module so the test runs exactly its code.
#[allow(dead_code)]
#[path = "../../containerd-lite/examples/run_container.rs"]
mod run_container;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn containerd_client_crate_runs_a_container_through_tasks() {
    let d = daemon_with_busybox();
    let spec = run_container::RunSpec {
        address: d.address(),
        namespace: d.namespace().to_string(),
        image: BUSYBOX.into(),
        id: "cc-run".into(),
        args: [
            "sh",
            "-c",
            "echo out from $(hostname); echo err >&2; exit 5",
        ]
        .map(String::from)
        .to_vec(),
        fifo_dir: d.dir().to_path_buf(),
    };
    let r = current_thread()
        .block_on(run_container::run_container(&spec))
        .unwrap();
    assert_eq!(r.exit_status, 5, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "out from cc-run\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    assert!(r.pid > 0);
    assert_eq!(r.listed, vec!["cc-run".to_string()]);
    // The image's own command when none is given (busybox: sh, which exits at EOF).
    let spec = run_container::RunSpec {
        id: "cc-default".into(),
        args: vec![],
        ..spec
    };
    let r = current_thread()
        .block_on(run_container::run_container(&spec))
        .unwrap();
    assert_eq!(r.exit_status, 0, "{r:?}");
    // Task, container, snapshot and bundle are gone.
    assert!(task_statuses(&d).is_empty());
    assert!(first_column(&d.ctr(&["containers", "ls"]).stdout).is_empty());
    let snaps = d.ctr(&["snapshots", "ls"]);
    assert!(!snaps.stdout.contains("cc-"), "{snaps}");
    let leases = d.ctr(&["leases", "ls"]);
    leases.ok();
    assert!(!leases.stdout.contains("run_container-"), "{leases}");
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

#[test]
fn run_container_example_chain_id_matches_the_unpacked_snapshot() {
    // Two layers: the chain id is sha256 of "<parent chain> <diff id>".
    let a = "sha256:aaaa".to_string();
    let b = "sha256:bbbb".to_string();
    assert_eq!(
        run_container::chain_id(std::slice::from_ref(&a)),
        Some(a.clone())
    );
    let want = {
        use sha2::Digest;
        let sum = sha2::Sha256::digest(b"sha256:aaaa sha256:bbbb");
        format!(
            "sha256:{}",
            sum.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    };
    assert_eq!(run_container::chain_id(&[a, b]), Some(want));
    assert_eq!(run_container::chain_id(&[]), None);
}

/// Lines of a log file the shim writes (`--log-uri file://`).
fn log_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Tasks.Wait through the containerd-client crate (ctr 1.6 has no `task wait`).
fn wait_exit(d: &ContainerdLite, id: &str) -> u32 {
    use containerd_client::services::v1::WaitRequest;
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::tonic::Request;
    use containerd_client::with_namespace;
    let ns = d.namespace().to_string();
    current_thread().block_on(async {
        let ch = containerd_client::connect(d.address()).await.unwrap();
        TasksClient::new(ch)
            .wait(with_namespace!(
                WaitRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                ns
            ))
            .await
            .unwrap()
            .into_inner()
            .exit_status
    })
}

#[test]
fn kill9_daemon_while_three_containers_write_then_restart_keeps_their_output_and_exits() {
    let mut d = daemon_with_busybox();
    // A counter every 50 ms; SIGTERM ends it with 3.
    let counter = "trap 'exit 3' TERM; i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";
    let ids = ["w1", "w2", "w3"];
    let logs: Vec<std::path::PathBuf> = ids
        .iter()
        .map(|id| d.dir().join(format!("{id}.log")))
        .collect();
    for (id, log) in ids.iter().zip(&logs) {
        let uri = format!("file://{}", log.display());
        d.ctr(&[
            "run",
            "-d",
            "--log-uri",
            &uri,
            BUSYBOX,
            id,
            "sh",
            "-c",
            counter,
        ])
        .ok();
    }
    let counts = || logs.iter().map(|l| log_lines(l).len()).collect::<Vec<_>>();
    wait_for(Duration::from_secs(15), "output from all three", || {
        counts().iter().all(|n| *n >= 5).then_some(())
    });
    d.kill9();
    let at_kill = counts();
    std::thread::sleep(Duration::from_secs(1));
    let while_down = counts();
    for (i, id) in ids.iter().enumerate() {
        assert!(
            while_down[i] > at_kill[i] + 5,
            "{id} stopped writing while the daemon was down: {at_kill:?} -> {while_down:?}"
        );
    }
    d.spawn();
    let st = task_statuses(&d);
    for id in ids {
        assert!(
            st.contains(&(id.to_string(), "RUNNING".to_string())),
            "{id} not RUNNING after the restart: {st:?}"
        );
    }
    let at_restart = counts();
    wait_for(Duration::from_secs(10), "output after the restart", || {
        counts()
            .iter()
            .zip(&at_restart)
            .all(|(n, r)| *n > r + 5)
            .then_some(())
    });
    for id in ids {
        d.ctr(&["task", "kill", id]).ok();
    }
    for (id, log) in ids.iter().zip(&logs) {
        assert_eq!(wait_exit(&d, id), 3, "{id}");
        // The counter ran on through the crash: every number once, in order.
        let lines = log_lines(log);
        let nums: Vec<u64> = lines.iter().map(|l| l.parse().unwrap()).collect();
        let want: Vec<u64> = (1..=nums.len() as u64).collect();
        assert_eq!(nums, want, "{id}: a gap or a repeat in its output");
    }
    let st = task_statuses(&d);
    for id in ids {
        assert!(
            st.contains(&(id.to_string(), "STOPPED".to_string())),
            "{st:?}"
        );
        let rm = d.ctr(&["task", "rm", id]);
        rm.ok();
        assert!(rm.stderr.contains("exit code 3"), "{rm}");
    }
    d.ctr(&["containers", "rm", "w1", "w2", "w3"]).ok();
    assert!(d.task_bundles().is_empty(), "{:?}", d.task_bundles());
}

/// A `ctr events` subscriber printing into `path`; stopped on drop.
struct EventLog {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ctr events` (all topics) into a file, once it is seen to be subscribed: a
/// probe event is published until it shows up.
fn subscribe_events(d: &ContainerdLite) -> EventLog {
    let log = d.dir().join("events.all");
    let out = std::fs::File::create(&log).unwrap();
    let sub = EventLog {
        child: d
            .ctr_command(&["events"])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        path: log.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut p = Command::new(binary())
            .args([
                "publish",
                "--address",
                s(&d.address()),
                "--topic",
                "/tasks/exit",
                "--namespace",
                d.namespace(),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin
            .take()
            .unwrap()
            .write_all(&task_exit_any("subscribed-probe"))
            .unwrap();
        assert!(p.wait().unwrap().success());
        std::thread::sleep(Duration::from_millis(100));
        if std::fs::read_to_string(&log)
            .unwrap()
            .contains("subscribed-probe")
        {
            return sub;
        }
        assert!(Instant::now() < deadline, "ctr events never subscribed");
    }
}

/// (topic, event JSON) of the lines `ctr events` printed that mention `id`.
fn events_about(log: &Path, id: &str) -> Vec<(String, serde_json::Value)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            // "<timestamp> <namespace> <topic> <event as JSON>"
            let brace = l.find('{')?;
            let topic = l[..brace].split_whitespace().last()?.to_string();
            let v: serde_json::Value = serde_json::from_str(&l[brace..]).ok()?;
            let about = v["container_id"] == id || v["id"] == id;
            about.then_some((topic, v))
        })
        .collect()
}

#[test]
fn events_from_a_real_shim_reach_an_events_subscriber() {
    let d = daemon_with_busybox();
    let sub = subscribe_events(&d);
    let log = sub.path.clone();
    let out = d.ctr(&["run", "--rm", BUSYBOX, "ev1", "sh", "-c", "echo hi; exit 2"]);
    assert_eq!(out.status.code(), Some(2), "{out}");
    let events = wait_for(Duration::from_secs(15), "/tasks/delete of ev1", || {
        let ev = events_about(&log, "ev1");
        ev.iter().any(|(t, _)| t == "/tasks/delete").then_some(ev)
    });
    // Give a duplicate time to show up before judging.
    std::thread::sleep(Duration::from_millis(500));
    let events = {
        let again = events_about(&log, "ev1");
        if again.len() > events.len() {
            again
        } else {
            events
        }
    };
    drop(sub);
    let tasks: Vec<&str> = events
        .iter()
        .map(|(t, _)| t.as_str())
        .filter(|t| t.starts_with("/tasks/"))
        .collect();
    assert_eq!(
        tasks,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{events:?}"
    );
    let exit = &events.iter().find(|(t, _)| t == "/tasks/exit").unwrap().1;
    assert_eq!(exit["exit_status"], 2, "{exit}");
    let start = &events.iter().find(|(t, _)| t == "/tasks/start").unwrap().1;
    assert!(start["pid"].as_u64().is_some_and(|p| p > 0), "{start}");
    let topics: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert!(topics.contains(&"/containers/create"), "{topics:?}");
    assert!(topics.contains(&"/containers/delete"), "{topics:?}");
}

/// The task's pid from `ctr task ls`.
fn task_pid(d: &ContainerdLite, id: &str) -> u32 {
    let out = d.ctr(&["task", "ls"]);
    out.stdout
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f[1].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{id} not listed:\n{out}"))
}

/// `/sys/fs/cgroup/<controller>/<path>` of a process, from /proc/PID/cgroup (v1).
fn cgroup_file(pid: u32, controller: &str, file: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = if v2 {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            hit.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in\n{text}"));
    let base = if v2 {
        Path::new("/sys/fs/cgroup").to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    base.join(path.trim_start_matches('/')).join(file)
}

#[test]
fn ctr_task_pause_resume_metrics_and_client_update() {
    let d = daemon_with_busybox();
    let log = d.dir().join("p1.log");
    let uri = format!("file://{}", log.display());
    d.ctr(&[
        "run",
        "-d",
        "--log-uri",
        &uri,
        BUSYBOX,
        "p1",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.05; done",
    ])
    .ok();
    let pid = task_pid(&d, "p1");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let frozen = || {
        if v2 {
            std::fs::read_to_string(cgroup_file(pid, "", "cgroup.freeze"))
                .unwrap()
                .trim()
                == "1"
        } else {
            std::fs::read_to_string(cgroup_file(pid, "freezer", "freezer.state"))
                .unwrap()
                .trim()
                == "FROZEN"
        }
    };
    wait_for(Duration::from_secs(10), "ticks", || {
        (log_lines(&log).len() >= 3).then_some(())
    });
    assert!(!frozen());
    d.ctr(&["task", "pause", "p1"]).ok();
    assert!(frozen(), "the cgroup is not frozen");
    assert_eq!(
        task_statuses(&d),
        vec![("p1".to_string(), "PAUSED".to_string())]
    );
    let paused_at = log_lines(&log).len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(log_lines(&log).len(), paused_at, "ran while paused");
    d.ctr(&["task", "resume", "p1"]).ok();
    assert!(!frozen(), "the cgroup is still frozen");
    assert_eq!(
        task_statuses(&d),
        vec![("p1".to_string(), "RUNNING".to_string())]
    );
    wait_for(Duration::from_secs(10), "ticks after resume", || {
        (log_lines(&log).len() > paused_at + 2).then_some(())
    });

    let m = d.ctr(&["task", "metrics", "--format", "json", "p1"]);
    m.ok();
    let v: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    let (memory, pids) = if v2 {
        (v.pointer("/memory/usage"), v.pointer("/pids/current"))
    } else {
        (v.pointer("/memory/usage/usage"), v.pointer("/pids/current"))
    };
    assert!(
        memory.and_then(|m| m.as_u64()).is_some_and(|m| m > 0),
        "{m}"
    );
    // sh, and at times its sleep.
    assert!(
        pids.and_then(|p| p.as_u64())
            .is_some_and(|p| (1..=2).contains(&p)),
        "{m}"
    );
    let table = d.ctr(&["task", "metrics", "p1"]);
    table.ok();
    assert!(table.stdout.contains("pids.current"), "{table}");

    // ctr 1.6 has no `task update`: Tasks.Update through the containerd-client crate.
    use containerd_client::services::v1::UpdateTaskRequest;
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::tonic::Request;
    use containerd_client::with_namespace;
    let ns = d.namespace().to_string();
    let limit: u64 = 40 * 1024 * 1024;
    current_thread().block_on(async {
        let ch = containerd_client::connect(d.address()).await.unwrap();
        let resources = serde_json::json!({ "memory": { "limit": limit } });
        TasksClient::new(ch)
            .update(with_namespace!(
                UpdateTaskRequest {
                    container_id: "p1".into(),
                    resources: Some(prost_types::Any {
                        type_url:
                            "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
                                .into(),
                        value: serde_json::to_vec(&resources).unwrap(),
                    }),
                    annotations: Default::default(),
                },
                ns
            ))
            .await
            .unwrap();
    });
    let file = if v2 {
        cgroup_file(pid, "", "memory.max")
    } else {
        cgroup_file(pid, "memory", "memory.limit_in_bytes")
    };
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        limit.to_string()
    );
    d.ctr(&["task", "kill", "-s", "KILL", "p1"]).ok();
    assert_eq!(wait_exit(&d, "p1"), 137);
    d.ctr(&["task", "rm", "p1"]).ok();
    d.ctr(&["containers", "rm", "p1"]).ok();
}

/// One htpasswd line with a bcrypt hash (the only kind docker-registry takes).
fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    format!("{user}:{hash}\n")
}

/// Push (ours) and pull (ctr's and ours) against a registry that wants `user`:`pass`:
/// without them or with a wrong password each fails with a 401, with them it works.
fn push_and_pull_need_credentials(reg: &Registry, user: &str, pass: &str) {
    let d = ContainerdLite::start();
    let src = d.dir().join("src-root");
    let tar = d.dir().join("bb.tar");
    write_docker_archive(&busybox("busybox:latest"), &tar).unwrap();
    d.offline(&src, &["import", "--no-unpack", s(&tar)]).ok();
    let reference = format!("{}/private/busybox:latest", reg.host());
    let good = format!("{user}:{pass}");
    let bad = format!("{user}:not-{pass}");
    let unauthorized = |out: &integration::Output| {
        out.assert_failed();
        assert!(
            ["401", "unauthorized", "not authorized"]
                .iter()
                .any(|w| out.stderr.to_lowercase().contains(w)),
            "no clear refusal:\n{out}"
        );
    };
    let push = |creds: Option<&str>| {
        let mut args = vec!["push", "--plain-http"];
        if let Some(c) = creds {
            args.extend(["--user", c]);
        }
        args.extend(["docker.io/library/busybox:latest", reference.as_str()]);
        d.offline(&src, &args)
    };
    unauthorized(&push(None));
    unauthorized(&push(Some(&bad)));
    push(Some(&good)).ok();

    let pull = |creds: &str| {
        d.ctr(&[
            "images",
            "pull",
            "--plain-http",
            "--user",
            creds,
            &reference,
        ])
    };
    unauthorized(&pull(&bad));
    d.ctr(&["images", "pull", "--plain-http", &reference])
        .assert_failed();
    assert!(first_column(&d.ctr(&["images", "ls"]).stdout).is_empty());
    pull(&good).ok();
    let ls = d.ctr(&["images", "ls"]);
    assert!(first_column(&ls.stdout).contains(&reference), "{ls}");
    let layer = build_busybox_layer().unwrap();
    assert!(
        d.ctr(&["snapshots", "ls"]).stdout.contains(layer.diff_id()),
        "pull unpacked"
    );

    // The library pull (engined's) with the same credentials.
    let lib_root = d.dir().join("lib-root");
    unauthorized(&d.offline(
        &lib_root,
        &["pull", "--plain-http", "--user", &bad, &reference],
    ));
    let ok = d.offline(
        &lib_root,
        &["pull", "--plain-http", "--user", &good, &reference],
    );
    ok.ok();
    assert!(ok.stdout.starts_with(&reference), "{ok}");
}

#[test]
fn ctr_and_library_pull_with_basic_auth() {
    let reg = Registry::start_with_htpasswd(Some(&htpasswd_line("alice", "s3cret")));
    push_and_pull_need_credentials(&reg, "alice", "s3cret");
}

#[test]
fn ctr_and_library_pull_with_token_auth() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = integration::token_auth::TokenServer::start(dir.path(), "bob", "t0ken-pw");
    let reg = Registry::start_with_token(&tokens);
    push_and_pull_need_credentials(&reg, "bob", "t0ken-pw");
    // The registry sent every client to the token server, which turned the wrong
    // passwords away and gave the right ones their tokens.
    assert!(tokens.issued() >= 2, "{} tokens", tokens.issued());
    assert!(tokens.refused() >= 2, "{} refusals", tokens.refused());
}

#[test]
fn export_is_a_docker_save_archive_docker_loads_and_ctr_reimports() {
    use integration::dockerd::Dockerd;
    let d = ContainerdLite::start();
    let root = d.dir().join("offline-root");
    let tar = d.dir().join("bb.tar");
    let image = busybox("busybox:latest");
    write_docker_archive(&image, &tar).unwrap();
    d.offline(&root, &["import", s(&tar)]).ok();
    let out = d.dir().join("export.tar");
    d.offline(&root, &["export", s(&out), BUSYBOX]).ok();
    let entries = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    let entries = String::from_utf8_lossy(&entries.stdout);
    for f in ["manifest.json", "index.json", "oci-layout"] {
        assert!(entries.lines().any(|l| l == f), "no {f} in\n{entries}");
    }

    let docker = Dockerd::start();
    let load = docker.docker(&["load", "-i", s(&out)]);
    load.ok();
    assert!(
        load.stdout.contains("Loaded image: busybox:latest"),
        "{load}"
    );
    let id = docker.docker(&["image", "inspect", "--format", "{{.Id}}", "busybox:latest"]);
    assert_eq!(id.ok().stdout.trim(), image.config.digest, "{id}");
    let run = docker.run(&["--rm", "busybox:latest", "echo", "loaded"]);
    run.ok();
    assert_eq!(run.stdout.trim(), "loaded", "{run}");

    // Back into containerd-lite, through ctr and through our own import, with the
    // manifest digest it had.
    d.ctr(&["images", "import", s(&out)]).ok();
    let ls = d.ctr(&["images", "ls"]);
    ls.ok();
    let line = ls
        .stdout
        .lines()
        .find(|l| l.starts_with(BUSYBOX))
        .unwrap_or_else(|| panic!("{ls}"));
    let other = d.dir().join("other-root");
    let names = d.offline(&other, &["import", s(&out)]);
    names.ok();
    assert_eq!(names.stdout.trim(), BUSYBOX, "{names}");
    let index: serde_json::Value = {
        let x = Command::new("tar")
            .args(["xOf", s(&out), "index.json"])
            .output()
            .unwrap();
        serde_json::from_slice(&x.stdout).unwrap()
    };
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert!(
        line.contains(digest),
        "ctr imported another manifest:\n{ls}"
    );
}
