//! Fixtures shared by the integration tests, the demo and the benchmark: a busybox
//! rootfs built from Debian's static `/bin/busybox`, OCI bundles around it, and
//! `busybox:latest` images (docker archive / OCI layout) for containerd and dockerd.
#![forbid(unsafe_code)]

pub mod engine;
pub mod fixtures;
pub mod image;

pub use fixtures::{Bundle, busybox_path, default_config, make_busybox_rootfs};
