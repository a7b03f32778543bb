//! Path resolution inside the rootfs lives in the shared `rootpath` crate (the image
//! unpacker needs the same walk); re-exported here so `rootfs::resolve::*` keeps working.
pub use rootpath::{Create, ResolveError, fd_path, resolve_in_root};
