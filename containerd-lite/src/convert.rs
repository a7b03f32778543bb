//! Conversions between the API's messages and the storage crates' records.
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use containerd_grpc::containerd::types as api;
use containerd_grpc::prost_types::{Any, Timestamp};

pub fn ts(t: SystemTime) -> Option<Timestamp> {
    Some(Timestamp::from(t))
}

pub fn now() -> Option<Timestamp> {
    ts(SystemTime::now())
}

pub fn to_hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn to_btree(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

pub fn descriptor_to_api(d: &metadata::Descriptor) -> api::Descriptor {
    api::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: to_hash(&d.annotations),
    }
}

pub fn descriptor_from_api(d: api::Descriptor) -> metadata::Descriptor {
    metadata::Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
        annotations: to_btree(d.annotations),
    }
}

pub fn any_to_api(a: &metadata::Any) -> Any {
    Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
    }
}

pub fn any_from_api(a: Any) -> metadata::Any {
    metadata::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

pub fn mount_to_api(m: &snapshots::Mount) -> api::Mount {
    api::Mount {
        r#type: m.kind.clone(),
        source: m.source.clone(),
        target: String::new(),
        options: m.options.clone(),
    }
}

pub fn mount_from_api(m: &api::Mount) -> snapshots::Mount {
    snapshots::Mount {
        kind: m.r#type.clone(),
        source: m.source.clone(),
        options: m.options.clone(),
    }
}

/// Applies containerd's field-path update rules to a label map: no paths replaces
/// everything, `labels` replaces the map, `labels.KEY` sets or (when absent from
/// `new`) removes one key. Other paths are returned for the caller to handle.
pub fn update_labels(
    current: &mut BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    paths: &[String],
) -> Vec<String> {
    let mut rest = Vec::new();
    if paths.is_empty() {
        *current = new.clone();
        return rest;
    }
    for p in paths {
        if p == "labels" {
            *current = new.clone();
        } else if let Some(key) = p.strip_prefix("labels.") {
            match new.get(key) {
                Some(v) => {
                    current.insert(key.to_string(), v.clone());
                }
                None => {
                    current.remove(key);
                }
            }
        } else {
            rest.push(p.clone());
        }
    }
    rest
}
