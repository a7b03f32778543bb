//! The content-store side of `docker pull` and `docker push`: blobs streamed into
//! containerd's content service as they arrive from a registry, and out of it as
//! they go to one; the image record a pull ends with. The same leases, labels and
//! unpacking into snapshots as `docker load` ([`ImageStore::store_image`]).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::*;

impl ImageStore {
    /// A lease for what a pull writes until its image record refers to it.
    pub(crate) async fn pull_lease(&self) -> ApiResult<String> {
        self.create_lease("pull").await
    }

    pub(crate) async fn end_lease(&self, lease: String) {
        self.delete_lease(lease).await
    }

    pub(crate) async fn has_blob(&self, digest: &str) -> ApiResult<bool> {
        self.exists(digest).await
    }

    /// Small blobs (configs, manifests, indexes) with their labels.
    pub(crate) async fn put_blob(
        &self,
        data: &[u8],
        labels: HashMap<String, String>,
        lease: &str,
    ) -> ApiResult<String> {
        let digest = digest_of(data);
        self.write_bytes(data, &digest, labels, lease).await?;
        Ok(digest)
    }

    /// Writes blob `digest` (`size` bytes) from `chunks` as they come; the content
    /// store checks size and digest at the commit. A chunk error ends the write
    /// without a commit (the ingest is truncated by the next attempt).
    pub(crate) async fn write_stream<S, E>(
        &self,
        digest: &str,
        size: i64,
        labels: HashMap<String, String>,
        lease: &str,
        mut chunks: S,
    ) -> ApiResult<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let r#ref = format!("engined-pull-{digest}");
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(8);
        let write = self.send_write(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            digest,
            lease,
        );
        let feed = async move {
            let mut offset = 0i64;
            // Network reads come a few kB at a time: gathered into messages of
            // WRITE_CHUNK, the content service gets a hundred per 100 MB.
            let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
            loop {
                let next = chunks.next().await;
                if let Some(chunk) = &next {
                    let chunk = chunk
                        .as_ref()
                        .map_err(|e| ApiError::Internal(format!("download {digest}: {e}")))?;
                    buf.extend_from_slice(chunk);
                    if buf.len() < WRITE_CHUNK {
                        continue;
                    }
                }
                if !buf.is_empty() {
                    let data = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
                    let n = data.len() as i64;
                    let req = write_request(&r#ref, digest, size, offset, data, None);
                    if tx.send(req).await.is_err() {
                        // The write ended early; its own error says why.
                        return Ok(());
                    }
                    offset += n;
                }
                if next.is_none() {
                    break;
                }
            }
            let commit = write_request(&r#ref, digest, size, offset, Vec::new(), Some(labels));
            let _ = tx.send(commit).await;
            Ok::<(), ApiError>(())
        };
        let (written, fed) = tokio::join!(write, feed);
        fed?;
        written
    }

    /// Unpacks `layers` (each on its parent), reusing the snapshots that exist.
    pub(crate) async fn unpack_layers(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
        lease: &str,
    ) -> ApiResult<()> {
        self.unpack(layers, diff_ids, lease).await
    }

    /// Names `target` (a pulled manifest or index, already in the store) `name`
    /// and indexes it.
    pub(crate) async fn record_pulled(
        &self,
        name: &str,
        target: Descriptor,
    ) -> ApiResult<ImageInfo> {
        self.put_image(name, target.clone()).await?;
        let info = self
            .describe(&Image {
                name: name.to_string(),
                target: Some(target),
                ..Default::default()
            })
            .await?;
        let id = info.id.clone();
        {
            let mut index = self.index.write().await;
            add_to_index(&mut index, name, info);
        }
        self.drop_dangling(&id).await;
        self.lookup(name)
            .await
            .ok_or_else(|| ApiError::Internal(format!("pulled image {name} is not indexed")))
    }

    /// A blob from the content store, a message at a time.
    pub(crate) async fn blob_chunks(
        &self,
        digest: &str,
    ) -> ApiResult<impl Stream<Item = Result<Bytes, String>> + Send + 'static> {
        let stream = self
            .ctrd
            .content()
            .read(self.ctrd.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .ctx(|| format!("read {digest}"))?
            .into_inner();
        Ok(stream.map(|m| {
            m.map(|r| Bytes::from(r.data))
                .map_err(|s| s.message().to_string())
        }))
    }
}
