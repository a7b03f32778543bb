//! Generates the containerd API with tonic. Needs `protoc` (Debian's
//! protobuf-compiler, installed by `make deps`): the containerd-client crate the tests
//! use needs it too, so one compiler serves both.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "protos/google/rpc/status.proto",
    "protos/containerd/types/descriptor.proto",
    "protos/containerd/types/mount.proto",
    "protos/containerd/types/platform.proto",
    "protos/containerd/types/metrics.proto",
    "protos/containerd/types/task/task.proto",
    "protos/containerd/events/events.proto",
    "protos/containerd/services/version.proto",
    "protos/containerd/services/namespaces.proto",
    "protos/containerd/services/containers.proto",
    "protos/containerd/services/content.proto",
    "protos/containerd/services/images.proto",
    "protos/containerd/services/snapshots.proto",
    "protos/containerd/services/leases.proto",
    "protos/containerd/services/diff.proto",
    "protos/containerd/services/introspection.proto",
    "protos/containerd/services/events.proto",
    "protos/containerd/services/tasks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    // prost::Name, so events can be packed into Any with containerd's type URLs.
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Services we only partly implement (Tasks until the shim lands) answer
        // Unimplemented for the rest.
        .generate_default_stubs(true)
        .include_file(out.join("containerd_api.rs"))
        .compile_with_config(config, PROTOS, &["protos"])?;
    Ok(())
}
