use containerd_grpc::containerd::services::events::v1::*;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::{BoxStream, Shared, ns, validate_namespace};
use crate::convert::now;
use crate::filters::Filter;

#[derive(Debug)]
pub struct EventsService(pub Shared);

fn check_topic(topic: &str) -> Result<(), Status> {
    if !topic.starts_with('/') || topic.len() < 2 {
        return Err(Status::invalid_argument(format!(
            "topic {topic:?} must start with '/' and name something"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl events_server::Events for EventsService {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<()>, Status> {
        let ns = ns(&req)?;
        let r = req.into_inner();
        check_topic(&r.topic)?;
        self.0.events.forward(Envelope {
            timestamp: now(),
            namespace: ns,
            topic: r.topic,
            event: r.event,
        });
        Ok(Response::new(()))
    }

    async fn forward(&self, req: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        let env = req
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("envelope is required"))?;
        check_topic(&env.topic)?;
        validate_namespace(&env.namespace)?;
        self.0.events.forward(env);
        Ok(Response::new(()))
    }

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<BoxStream<Envelope>>, Status> {
        let filter = Filter::parse_all(&req.into_inner().filters)?;
        let mut rx = self.0.events.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    // The client went away while nothing was published.
                    _ = tx.closed() => return,
                    got = rx.recv() => got,
                };
                match got {
                    Ok(env) => {
                        if filter.matches(&env) && tx.send(Ok(env)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event subscriber too slow");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }
}
