//! The Content service over the content store, namespaced through the metadata
//! database: a blob is visible in a namespace when that namespace has a record of it
//! (written there, or adopted by a write of the same digest), as in containerd.
//! Ingest refs are kept per namespace by prefixing the backend ref with it.
use containerd_grpc::containerd::events::ContentDelete;
use containerd_grpc::containerd::services::content::v1::*;
use content::{ContentError, Digest, Store};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{BoxStream, Shared, add_to_lease, blocking, lease_of, ns};
use crate::convert::{to_btree, to_hash, ts};
use crate::filters::{Adaptor, Filter, label_field};
use crate::{Daemon, LiteError};

/// Read responses carry at most this much; ctr writes in 1 MiB pieces too.
const CHUNK: usize = 1 << 20;

#[derive(Debug)]
pub struct ContentService(pub Shared);

fn parse_digest(s: &str) -> Result<Digest, Status> {
    Digest::parse(s).map_err(|e| Status::invalid_argument(format!("{s:?}: {e}")))
}

fn backend_ref(ns: &str, reference: &str) -> String {
    format!("{ns}/{reference}")
}

fn info_to_api(i: content::Info) -> Info {
    Info {
        digest: i.digest.to_string(),
        size: i64::try_from(i.size).unwrap_or(i64::MAX),
        created_at: ts(i.created_at),
        updated_at: ts(i.updated_at),
        labels: to_hash(&i.labels),
    }
}

fn status_to_api(ns: &str, s: content::Status) -> Status_ {
    Status_ {
        started_at: ts(s.started_at),
        updated_at: ts(s.updated_at),
        r#ref: s
            .reference
            .strip_prefix(&format!("{ns}/"))
            .unwrap_or(&s.reference)
            .to_string(),
        offset: s.offset as i64,
        total: s.total as i64,
        expected: String::new(),
    }
}

type Status_ = containerd_grpc::containerd::services::content::v1::Status;

impl Adaptor for Info {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "digest" => Some(self.digest.clone()),
            "size" => Some(self.size.to_string()),
            "labels" => label_field(path, |k| self.labels.get(k)),
            _ => None,
        }
    }
}

impl Adaptor for Status_ {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "ref" => Some(self.r#ref.clone()),
            _ => None,
        }
    }
}

/// The blob's info if namespace `ns` has it.
fn info_in(
    d: &Daemon,
    store: &Store,
    ns: &str,
    digest: &Digest,
) -> Result<content::Info, LiteError> {
    if d.db.get_content(ns, digest.as_str())?.is_none() {
        return Err(ContentError::NotFound(digest.to_string()).into());
    }
    Ok(store.info(digest)?)
}

#[tonic::async_trait]
impl content_server::Content for ContentService {
    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ns = ns(&req)?;
        let digest = parse_digest(&req.into_inner().digest)?;
        let d = self.0.clone();
        let info = blocking(move || info_in(&d, &d.content(&ns)?, &ns, &digest)).await?;
        Ok(Response::new(InfoResponse {
            info: Some(info_to_api(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let ns = ns(&req)?;
        let req = req.into_inner();
        let info = req
            .info
            .ok_or_else(|| Status::invalid_argument("info is required"))?;
        let digest = parse_digest(&info.digest)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let d = self.0.clone();
        let updated = blocking(move || {
            let store = d.content(&ns)?;
            info_in(&d, &store, &ns, &digest)?;
            Ok(store.update(&digest, &to_btree(info.labels), &paths)?)
        })
        .await?;
        Ok(Response::new(UpdateResponse {
            info: Some(info_to_api(updated)),
        }))
    }

    async fn list(
        &self,
        req: Request<ListContentRequest>,
    ) -> Result<Response<BoxStream<ListContentResponse>>, Status> {
        let ns = ns(&req)?;
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        let d = self.0.clone();
        let infos = blocking(move || {
            let store = d.content(&ns)?;
            let mut out = Vec::new();
            for (digest, rec) in d.db.list_content(&ns)? {
                let Ok(dg) = Digest::parse(&digest) else {
                    continue;
                };
                // A record whose blob is gone (a crash between label and rename) is
                // not content.
                let Ok(mut info) = store.info(&dg) else {
                    continue;
                };
                info.labels = rec.labels;
                let api = info_to_api(info);
                if filter.matches(&api) {
                    out.push(api);
                }
            }
            Ok(out)
        })
        .await?;
        let chunks: Vec<Result<ListContentResponse, Status>> = infos
            .chunks(100)
            .map(|c| Ok(ListContentResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn delete(&self, req: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let digest = parse_digest(&req.into_inner().digest)?;
        let d = self.0.clone();
        let (n, dg) = (ns.clone(), digest.clone());
        blocking(move || {
            if d.db.get_content(&n, dg.as_str())?.is_none() {
                return Err(ContentError::NotFound(dg.to_string()).into());
            }
            d.db.remove_content(&n, dg.as_str())?;
            // The file goes when no namespace references it any more.
            d.collect_garbage()?;
            Ok(())
        })
        .await?;
        self.0.events.publish(
            &ns,
            "/content/delete",
            &ContentDelete {
                digest: digest.to_string(),
            },
        );
        Ok(Response::new(()))
    }

    async fn read(
        &self,
        req: Request<ReadContentRequest>,
    ) -> Result<Response<BoxStream<ReadContentResponse>>, Status> {
        let ns = ns(&req)?;
        let req = req.into_inner();
        let digest = parse_digest(&req.digest)?;
        let d = self.0.clone();
        let reader = blocking(move || {
            let store = d.content(&ns)?;
            info_in(&d, &store, &ns, &digest)?;
            Ok(store.reader(&digest)?)
        })
        .await?;
        let size = reader.size();
        let start = u64::try_from(req.offset.max(0)).unwrap_or(0);
        if start > size {
            return Err(Status::out_of_range(format!(
                "offset {start} beyond size {size}"
            )));
        }
        let end = match u64::try_from(req.size) {
            Ok(n) if n > 0 => start.saturating_add(n).min(size),
            _ => size,
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut off = start;
            let mut buf = vec![0u8; CHUNK];
            while off < end {
                let want = usize::try_from(end - off).unwrap_or(CHUNK).min(CHUNK);
                let msg = match reader.read_at(&mut buf[..want], off) {
                    Ok(0) => Err(Status::data_loss("blob shorter than its size")),
                    Ok(n) => {
                        let m = ReadContentResponse {
                            offset: off as i64,
                            data: buf[..n].to_vec(),
                        };
                        off += n as u64;
                        Ok(m)
                    }
                    Err(e) => Err(Status::internal(format!("read: {e}"))),
                };
                let failed = msg.is_err();
                if tx.blocking_send(msg).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let ns = ns(&req)?;
        let reference = req.into_inner().r#ref;
        let d = self.0.clone();
        let st = blocking(move || {
            let store = d.content(&ns)?;
            Ok(status_to_api(
                &ns,
                store.status(&backend_ref(&ns, &reference))?,
            ))
        })
        .await?;
        Ok(Response::new(StatusResponse { status: Some(st) }))
    }

    async fn list_statuses(
        &self,
        req: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let ns = ns(&req)?;
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        let d = self.0.clone();
        let statuses = blocking(move || {
            let store = d.content(&ns)?;
            let prefix = format!("{ns}/");
            Ok(store
                .list_statuses()?
                .into_iter()
                .filter(|s| s.reference.starts_with(&prefix))
                .map(|s| status_to_api(&ns, s))
                .filter(|s| filter.matches(s))
                .collect())
        })
        .await?;
        Ok(Response::new(ListStatusesResponse { statuses }))
    }

    async fn write(
        &self,
        req: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<BoxStream<WriteContentResponse>>, Status> {
        let ns = ns(&req)?;
        let lease = lease_of(&req);
        let mut stream = req.into_inner();
        let (in_tx, in_rx) = mpsc::channel::<WriteContentRequest>(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        // The writer borrows its store and does blocking I/O, so the session lives on
        // one blocking thread fed from the request stream.
        tokio::spawn(async move {
            while let Ok(Some(m)) = stream.message().await {
                if in_tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        let d = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let _span = tracing::debug_span!("content.write", ns).entered();
            if let Err(st) = write_session(&d, &ns, lease.as_deref(), in_rx, &out_tx) {
                tracing::debug!(error = %st.message(), "write failed");
                let _ = out_tx.blocking_send(Err(st));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn abort(&self, req: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let reference = req.into_inner().r#ref;
        let d = self.0.clone();
        blocking(move || Ok(d.content(&ns)?.abort(&backend_ref(&ns, &reference))?)).await?;
        Ok(Response::new(()))
    }
}

fn write_session(
    d: &Daemon,
    ns: &str,
    lease: Option<&str>,
    mut rx: mpsc::Receiver<WriteContentRequest>,
    out: &mpsc::Sender<Result<WriteContentResponse, Status>>,
) -> Result<(), Status> {
    let Some(first) = rx.blocking_recv() else {
        return Ok(());
    };
    let reference = first.r#ref.clone();
    if reference.is_empty() {
        return Err(Status::invalid_argument(
            "first message of a write must carry a ref",
        ));
    }
    let store = d.content(ns)?;
    let mut expected = None;
    if !first.expected.is_empty() {
        let e = parse_digest(&first.expected)?;
        if d.db
            .get_content(ns, e.as_str())
            .map_err(LiteError::from)?
            .is_some()
            && store.exists(&e)
        {
            return Err(Status::already_exists(format!(
                "content {e}: already exists"
            )));
        }
        expected = Some(e);
    }
    let mut total = u64::try_from(first.total).unwrap_or(0);
    let mut w = store
        .writer(&backend_ref(ns, &reference), total)
        .map_err(LiteError::from)?;
    let mut next = Some(first);
    let commit_req = loop {
        let Some(req) = next.take().or_else(|| rx.blocking_recv()) else {
            // The client went away: the ingest stays for a later resume.
            return Ok(());
        };
        if !req.r#ref.is_empty() && req.r#ref != reference {
            return Err(Status::invalid_argument(format!(
                "write stream of ref {reference:?} cannot switch to {:?}",
                req.r#ref
            )));
        }
        if !req.expected.is_empty() {
            expected = Some(parse_digest(&req.expected)?);
        }
        if req.total > 0 {
            total = req.total as u64;
        }
        let action = WriteAction::try_from(req.action).map_err(|_| {
            Status::invalid_argument(format!("unknown write action {}", req.action))
        })?;
        if action == WriteAction::Stat {
            let st = w.status().map_err(LiteError::from)?;
            let resp = WriteContentResponse {
                action: req.action,
                started_at: ts(st.started_at),
                updated_at: ts(st.updated_at),
                offset: w.offset() as i64,
                total: total as i64,
                digest: w.digest().to_string(),
            };
            if out.blocking_send(Ok(resp)).is_err() {
                return Ok(());
            }
            continue;
        }
        let off = u64::try_from(req.offset).unwrap_or(0);
        if off > 0 && off != w.offset() {
            return Err(Status::out_of_range(format!(
                "write @{off} must occur at current offset {}",
                w.offset()
            )));
        }
        if off == 0 && w.offset() > 0 && !req.data.is_empty() {
            // Restarting from the beginning (the one rewind containerd requires).
            w.truncate(0).map_err(LiteError::from)?;
        }
        if !req.data.is_empty() {
            w.write(&req.data).map_err(LiteError::from)?;
        }
        if action == WriteAction::Commit {
            break req;
        }
        let resp = WriteContentResponse {
            action: req.action,
            offset: w.offset() as i64,
            total: total as i64,
            ..Default::default()
        };
        if out.blocking_send(Ok(resp)).is_err() {
            return Ok(());
        }
    };
    let digest = w.digest();
    let offset = w.offset();
    let st = w.status().map_err(LiteError::from)?;
    // Leased before it exists, so a collection cannot take it in between.
    add_to_lease(d, ns, lease, "content", digest.as_str())?;
    let labels = to_btree(commit_req.labels);
    match w.commit(total, expected.as_ref(), &labels) {
        Ok(_) => {}
        Err(ContentError::AlreadyExists(_)) => {
            if d.db
                .get_content(ns, digest.as_str())
                .map_err(LiteError::from)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "content {digest}: already exists"
                )));
            }
            // The blob is there for another namespace: adopt it here.
            d.db.set_content_labels(ns, digest.as_str(), labels)
                .map_err(LiteError::from)?;
        }
        Err(e) => return Err(LiteError::from(e).into()),
    }
    let _ = out.blocking_send(Ok(WriteContentResponse {
        action: commit_req.action,
        started_at: ts(st.started_at),
        updated_at: ts(st.updated_at),
        offset: offset as i64,
        total: total as i64,
        digest: digest.to_string(),
    }));
    Ok(())
}
