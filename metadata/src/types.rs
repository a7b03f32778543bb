use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub type Labels = BTreeMap<String, String>;

/// An OCI descriptor as containerd's `types.Descriptor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    pub annotations: BTreeMap<String, String>,
}

/// A protobuf `Any`, kept as opaque bytes: the server stores what clients send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Any {
    pub type_url: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub labels: Labels,
    pub target: Descriptor,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Runtime {
    pub name: String,
    pub options: Option<Any>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub labels: Labels,
    pub image: String,
    pub runtime: Runtime,
    pub spec: Option<Any>,
    pub snapshotter: String,
    pub snapshot_key: String,
    pub sandbox: String,
    pub extensions: BTreeMap<String, Any>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    View,
    Active,
    Committed,
}

/// A snapshot as the snapshotters record it. `id` names its directory on disk;
/// `parent` is the key of a committed snapshot in the same namespace and snapshotter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub key: String,
    pub id: u64,
    pub parent: Option<String>,
    pub kind: SnapshotKind,
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// Disk usage measured at commit; `None` while active (measured on demand).
    pub size: Option<u64>,
    pub inodes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseResource {
    pub id: String,
    /// `content`, `ingests` or `snapshots/<snapshotter>`, as containerd names them.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub labels: Labels,
    pub created_at: SystemTime,
    pub resources: Vec<LeaseResource>,
}

/// A blob's presence in a namespace, with its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}
