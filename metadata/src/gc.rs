//! Mark and sweep over the metadata, following containerd's conventions:
//!
//! - roots: image targets, container snapshots, lease resources, and content or
//!   snapshots labelled `containerd.io/gc.root`;
//! - edges: `containerd.io/gc.ref.content[.*]` labels (on content and snapshots) point
//!   at blobs, `containerd.io/gc.ref.snapshot.<snapshotter>[/*]` at snapshots, and a
//!   snapshot holds its parent.
//!
//! Records are dropped in one transaction; blob files are removed after it commits,
//! so a crash in between leaves only unreferenced files that the next run removes.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    CONTAINERS, CONTENT, Container, ContentRecord, Db, IMAGES, Image, LEASES, Labels, Lease,
    MetaError, Result, SNAPSHOTS, Snapshot, tscan,
};

const GC_ROOT: &str = "containerd.io/gc.root";
const REF_CONTENT: &str = "containerd.io/gc.ref.content";
const REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";

/// A snapshot record removed by a collection; its snapshotter removes the directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotRef {
    pub snapshotter: String,
    pub namespace: String,
    pub key: String,
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct GcReport {
    /// Blobs whose files were removed.
    pub content: Vec<String>,
    pub snapshots: Vec<SnapshotRef>,
    /// Namespaced content records removed (labels of blobs no longer reachable there).
    pub content_records: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Content {
        ns: String,
        digest: String,
    },
    Snapshot {
        snapshotter: String,
        ns: String,
        key: String,
    },
}

fn label_edges(ns: &str, labels: &Labels, out: &mut Vec<Node>) {
    for (k, v) in labels {
        if k.starts_with(REF_CONTENT) {
            out.push(Node::Content {
                ns: ns.to_string(),
                digest: v.clone(),
            });
        } else if let Some(rest) = k.strip_prefix(REF_SNAPSHOT) {
            let snapshotter = rest.split('/').next().unwrap_or(rest);
            out.push(Node::Snapshot {
                snapshotter: snapshotter.to_string(),
                ns: ns.to_string(),
                key: v.clone(),
            });
        }
    }
}

fn split2(k: &str) -> Option<(&str, &str)> {
    k.split_once('\0')
}

impl Db {
    /// Removes everything unreachable. With `store`, unreferenced blob files are
    /// deleted too; snapshot directories are left to each snapshotter's `cleanup`.
    pub fn garbage_collect(&self, store: Option<&content::Store>) -> Result<GcReport> {
        let _span = tracing::info_span!("gc").entered();
        let mut report = GcReport::default();
        let marked_digests = self.update(|tx| {
            let images: Vec<(String, Image)> = tscan(&tx.open_table(IMAGES)?, "")?;
            let containers: Vec<(String, Container)> = tscan(&tx.open_table(CONTAINERS)?, "")?;
            let leases: Vec<(String, Lease)> = tscan(&tx.open_table(LEASES)?, "")?;
            let content: Vec<(String, ContentRecord)> = tscan(&tx.open_table(CONTENT)?, "")?;
            let snapshots: Vec<(String, Snapshot)> = tscan(&tx.open_table(SNAPSHOTS)?, "")?;

            let mut content_labels: BTreeMap<(String, String), &Labels> = BTreeMap::new();
            let mut roots = Vec::new();
            for (k, rec) in &content {
                let Some((ns, digest)) = split2(k) else {
                    continue;
                };
                content_labels.insert((ns.to_string(), digest.to_string()), &rec.labels);
                if rec.labels.contains_key(GC_ROOT) {
                    roots.push(Node::Content {
                        ns: ns.into(),
                        digest: digest.into(),
                    });
                }
            }
            let mut snap_map: BTreeMap<(String, String, String), &Snapshot> = BTreeMap::new();
            for (k, s) in &snapshots {
                let mut parts = k.splitn(3, '\0');
                let (Some(sn), Some(ns), Some(key)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                snap_map.insert((sn.into(), ns.into(), key.into()), s);
                if s.labels.contains_key(GC_ROOT) {
                    roots.push(Node::Snapshot {
                        snapshotter: sn.into(),
                        ns: ns.into(),
                        key: key.into(),
                    });
                }
            }
            for (k, img) in &images {
                let Some((ns, _)) = split2(k) else { continue };
                roots.push(Node::Content {
                    ns: ns.into(),
                    digest: img.target.digest.clone(),
                });
            }
            for (k, c) in &containers {
                let Some((ns, _)) = split2(k) else { continue };
                if !c.snapshotter.is_empty() && !c.snapshot_key.is_empty() {
                    roots.push(Node::Snapshot {
                        snapshotter: c.snapshotter.clone(),
                        ns: ns.into(),
                        key: c.snapshot_key.clone(),
                    });
                }
                label_edges(ns, &c.labels, &mut roots);
            }
            for (k, lease) in &leases {
                let Some((ns, _)) = split2(k) else { continue };
                for r in &lease.resources {
                    if r.kind == "content" {
                        roots.push(Node::Content {
                            ns: ns.into(),
                            digest: r.id.clone(),
                        });
                    } else if let Some(sn) = r.kind.strip_prefix("snapshots/") {
                        roots.push(Node::Snapshot {
                            snapshotter: sn.into(),
                            ns: ns.into(),
                            key: r.id.clone(),
                        });
                    }
                }
            }

            let mut marked: BTreeSet<Node> = BTreeSet::new();
            let mut work = roots;
            while let Some(node) = work.pop() {
                if marked.contains(&node) {
                    continue;
                }
                match &node {
                    Node::Content { ns, digest } => {
                        if let Some(labels) = content_labels.get(&(ns.clone(), digest.clone())) {
                            label_edges(ns, labels, &mut work);
                        }
                    }
                    Node::Snapshot {
                        snapshotter,
                        ns,
                        key,
                    } => {
                        if let Some(s) =
                            snap_map.get(&(snapshotter.clone(), ns.clone(), key.clone()))
                        {
                            if let Some(p) = &s.parent {
                                work.push(Node::Snapshot {
                                    snapshotter: snapshotter.clone(),
                                    ns: ns.clone(),
                                    key: p.clone(),
                                });
                            }
                            label_edges(ns, &s.labels, &mut work);
                        }
                    }
                }
                marked.insert(node);
            }

            let mut content_table = tx.open_table(CONTENT)?;
            for (k, _) in &content {
                let Some((ns, digest)) = split2(k) else {
                    continue;
                };
                let node = Node::Content {
                    ns: ns.into(),
                    digest: digest.into(),
                };
                if !marked.contains(&node) {
                    content_table.remove(k.as_str())?;
                    report.content_records += 1;
                }
            }
            drop(content_table);
            let mut snap_table = tx.open_table(SNAPSHOTS)?;
            for ((sn, ns, key), s) in &snap_map {
                let node = Node::Snapshot {
                    snapshotter: sn.clone(),
                    ns: ns.clone(),
                    key: key.clone(),
                };
                if !marked.contains(&node) {
                    snap_table.remove(crate::key(&[sn, ns, key]).as_str())?;
                    report.snapshots.push(SnapshotRef {
                        snapshotter: sn.clone(),
                        namespace: ns.clone(),
                        key: key.clone(),
                        id: s.id,
                    });
                }
            }
            let digests: BTreeSet<String> = marked
                .into_iter()
                .filter_map(|n| match n {
                    Node::Content { digest, .. } => Some(digest),
                    Node::Snapshot { .. } => None,
                })
                .collect();
            Ok(digests)
        })?;

        if let Some(store) = store {
            let dir = store.root().join("blobs/sha256");
            let entries = std::fs::read_dir(&dir).map_err(|source| MetaError::Io {
                context: dir.display().to_string(),
                source,
            })?;
            for entry in entries.flatten() {
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
                if !marked_digests.contains(&digest) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => report.content.push(digest),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(MetaError::Io {
                                context: entry.path().display().to_string(),
                                source,
                            });
                        }
                    }
                }
            }
            report.content.sort();
        }
        tracing::info!(
            blobs = report.content.len(),
            snapshots = report.snapshots.len(),
            records = report.content_records,
            "garbage collected"
        );
        Ok(report)
    }
}
