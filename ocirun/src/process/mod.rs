//! The processes a container is made of while it is being created: the bootstrap
//! process (joins and creates namespaces) and the container's init (builds the
//! rootfs, drops privileges, waits for start, execs the user's process).
pub mod bootstrap;
pub mod channel;
pub mod fdpass;
pub mod init;
pub mod namespaces;
pub mod tenant;
pub mod tty;
