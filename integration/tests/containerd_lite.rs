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
    std::thread::sleep(Duration::from_secs(3));
    d.spawn();
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
