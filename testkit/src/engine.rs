//! Configuration for the private containerd instances the integration harness and
//! the benchmarks start: everything (root, state, sockets, opt) inside one directory,
//! and the CRI plugin off (it is not used and slows startup).

use std::path::Path;

/// `config.toml` (version 2) for a containerd whose files all live under `dir`; its
/// API socket is `dir/containerd.sock`.
pub fn containerd_config(dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = "{debug}"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = dir.join("containerd.sock").display(),
        debug = dir.join("debug.sock").display(),
        opt = dir.join("opt").display(),
    )
}

/// Where containerd 1.6's runc shim keeps runtime state for a namespace (the
/// runtime's `--root`); it is not configurable.
pub fn runc_shim_root(namespace: &str) -> std::path::PathBuf {
    Path::new("/run/containerd/runc").join(namespace)
}
