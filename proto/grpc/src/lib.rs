//! containerd 1.6's gRPC API as tonic servers and clients.
//!
//! The `.proto` files under `protos/` restate containerd's public API definitions:
//! the same packages, service and method names, messages and field numbers, so real
//! containerd clients (`ctr`, the `containerd-client` crate) talk to our server. Module
//! paths follow the proto packages, e.g. `containerd::services::content::v1`.
#![allow(clippy::all, missing_debug_implementations, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/containerd_api.rs"));

/// Builds an `Any` the way containerd's typeurl does for protobuf events: the type
/// URL is the message's full proto name, without a `type.googleapis.com/` prefix.
pub fn to_any<M: prost::Name>(m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: M::full_name(),
        value: prost::Message::encode_to_vec(m),
    }
}

pub use prost;
pub use prost_types;
pub use tonic;
