//! Fixtures shared by the integration tests, the demo and the benchmark: a busybox
//! rootfs built from Debian's static `/bin/busybox`, and OCI bundles around it.
#![forbid(unsafe_code)]

pub mod fixtures;

pub use fixtures::{Bundle, busybox_path, default_config, make_busybox_rootfs};
