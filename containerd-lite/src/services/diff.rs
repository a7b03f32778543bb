//! Diff.Apply: applies a layer blob onto the filesystem described by mounts (what
//! clients unpack images with). Diff.Diff (creating layers) is not implemented.
use std::path::PathBuf;

use containerd_grpc::containerd::services::diff::v1::*;
use containerd_grpc::containerd::types::Descriptor;
use content::Digest;
use snapshots::{Mount, MountGuard, Whiteouts};
use tonic::{Request, Response, Status};
use unpack::{ApplyOptions, apply_layer};

use super::{Shared, blocking, ns};
use crate::convert::mount_from_api;
use crate::error::io_err;
use crate::{Daemon, LiteError};

#[derive(Debug)]
pub struct DiffService(pub Shared);

/// The directory, its whiteout style, and what keeps a temporary mount alive.
type Target = (PathBuf, Whiteouts, Option<(MountGuard, tempfile::TempDir)>);

/// Where to write the layer and how deletions must look there. Snapshotter mounts of
/// the two shapes ours produce are written straight into their directory (an
/// overlay's upperdir takes overlay whiteouts); anything else is mounted on a
/// temporary directory first.
fn target(d: &Daemon, mounts: &[Mount]) -> Result<Target, LiteError> {
    if let [m] = mounts {
        let ro = m.options.iter().any(|o| o == "ro");
        if m.kind == "bind" && !ro {
            return Ok((PathBuf::from(&m.source), Whiteouts::Delete, None));
        }
        if m.kind == "overlay"
            && let Some(upper) = m.options.iter().find_map(|o| o.strip_prefix("upperdir="))
        {
            return Ok((PathBuf::from(upper), Whiteouts::Overlay, None));
        }
    }
    if mounts.is_empty() {
        return Err(LiteError::InvalidArgument(
            "apply needs at least one mount".into(),
        ));
    }
    let base = d.state.join("tmpmounts");
    std::fs::create_dir_all(&base).map_err(io_err(base.display().to_string()))?;
    let tmp = tempfile::Builder::new()
        .prefix("apply-")
        .tempdir_in(&base)
        .map_err(io_err(base.display().to_string()))?;
    let guard = MountGuard::new(mounts, tmp.path())?;
    Ok((
        tmp.path().to_path_buf(),
        Whiteouts::Delete,
        Some((guard, tmp)),
    ))
}

#[tonic::async_trait]
impl diff_server::Diff for DiffService {
    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        let desc = r
            .diff
            .ok_or_else(|| Status::invalid_argument("diff descriptor is required"))?;
        let digest = Digest::parse(&desc.digest)
            .map_err(|e| Status::invalid_argument(format!("{:?}: {e}", desc.digest)))?;
        let mounts: Vec<Mount> = r.mounts.iter().map(mount_from_api).collect();
        let d = self.0.clone();
        let applied = blocking(move || {
            let _span = tracing::info_span!("diff.apply", ns, layer = %digest).entered();
            let store = d.content(&ns)?;
            if d.db.get_content(&ns, digest.as_str())?.is_none() {
                return Err(content::ContentError::NotFound(digest.to_string()).into());
            }
            let reader = store.reader(&digest)?;
            let (dir, whiteouts, _mounted) = target(&d, &mounts)?;
            Ok(apply_layer(
                reader.into_file(),
                &dir,
                ApplyOptions::new(whiteouts),
            )?)
        })
        .await?;
        Ok(Response::new(ApplyResponse {
            applied: Some(Descriptor {
                media_type: unpack::oci::OCI_LAYER.to_string(),
                digest: applied.diff_id.to_string(),
                size: i64::try_from(applied.size).unwrap_or(i64::MAX),
                annotations: Default::default(),
            }),
        }))
    }

    async fn diff(&self, _req: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        Err(Status::unimplemented(
            "containerd-lite: Diff.Diff (creating a layer from two mounts) is not implemented; only Diff.Apply is",
        ))
    }
}
