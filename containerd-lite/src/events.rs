//! The event exchange: what services publish and Events.Subscribe streams out.
use containerd_grpc::containerd::services::events::v1::Envelope;
use containerd_grpc::prost::Name;
use tokio::sync::broadcast;

use crate::filters::Adaptor;

/// Subscribers that fall this far behind miss events (and are told so in the log)
/// rather than holding memory for the others.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone)]
pub struct Exchange {
    tx: broadcast::Sender<Envelope>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    pub fn new() -> Exchange {
        let (tx, _) = broadcast::channel(BACKLOG);
        Exchange { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.tx.subscribe()
    }

    pub fn forward(&self, env: Envelope) {
        tracing::debug!(topic = %env.topic, namespace = %env.namespace, "event");
        // No subscriber is not an error.
        let _ = self.tx.send(env);
    }

    /// Publishes `event` under `topic` in namespace `ns`, stamped now.
    pub fn publish<M: Name>(&self, ns: &str, topic: &str, event: &M) {
        self.forward(Envelope {
            timestamp: crate::convert::now(),
            namespace: ns.to_string(),
            topic: topic.to_string(),
            event: Some(containerd_grpc::to_any(event)),
        });
    }
}

impl Adaptor for Envelope {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str)? {
            "topic" if path.len() == 1 => Some(self.topic.clone()),
            "namespace" if path.len() == 1 => Some(self.namespace.clone()),
            // Field paths into the payload would need every event type's schema;
            // only its type is offered.
            "event" if path.len() == 2 && path[1] == "type_url" => {
                self.event.as_ref().map(|e| e.type_url.clone())
            }
            _ => None,
        }
    }
}
