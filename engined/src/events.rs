//! `GET /events`: what happens to containers and images, as dockerd reports it. The
//! daemon calls [`Hub::container`] and [`Hub::image`] where things happen; the hub
//! keeps the last [`RING`] events for `since` and hands each new one to every
//! listener. A listener gets what the ring holds in its window first, then live
//! events, and its stream ends at `until`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use containerd_client::events::TaskOom;
use containerd_client::services::v1::SubscribeRequest;
use containerd_client::types::Envelope;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::daemon::{Daemon, Record};
use crate::error::{ApiError, ApiResult};
use crate::reference;
use crate::server::{Body, channel_body, query};

/// How many past events `since` can reach (dockerd keeps as many).
pub const RING: usize = 256;

/// One event, in the shape of Docker's `events.Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `container`, `image`, ...
    pub typ: String,
    pub action: String,
    /// The actor: a container id, an image id or reference.
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i128,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.typ,
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "local",
            "time": self.time_nano.div_euclid(1_000_000_000) as i64,
            "timeNano": self.time_nano as i64,
        });
        // The pre-1.22 fields, which dockerd still fills for these two types.
        if self.typ == "container" || self.typ == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
        }
        if self.typ == "container"
            && let Some(image) = self.attributes.get("image")
        {
            v["from"] = json!(image);
        }
        v
    }
}

#[derive(Debug)]
pub struct Hub {
    ring: Mutex<VecDeque<Arc<Event>>>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl Hub {
    pub fn new() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            tx: broadcast::channel(1024).0,
        }
    }

    /// Records an event and hands it to the listeners.
    pub fn emit(&self, typ: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        // Times only grow, so that since/until windows over the ring stay ordered.
        let last = ring.back().map_or(0, |e| e.time_nano);
        let ev = Arc::new(Event {
            typ: typ.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano: now_nanos().max(last),
        });
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(ev.clone());
        // Sent under the lock: a new listener sees each event once, from the ring
        // or from the channel.
        let _ = self.tx.send(ev);
    }

    /// A container event: attributes `image`, `name`, the container's labels, and
    /// `extra` (`exitCode`, `signal`, `execID`, ...).
    pub fn container(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = rec
            .config
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        attrs.insert("image".into(), rec.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.emit("container", action, &rec.id, attrs);
    }

    /// An image event; `name` (a reference, familiar form) goes in the `name`
    /// attribute when there is one.
    pub fn image(&self, action: &str, id: &str, name: Option<&str>) {
        let mut attrs = BTreeMap::new();
        if let Some(n) = name {
            attrs.insert("name".into(), reference::familiar(n));
        }
        self.emit("image", action, id, attrs);
    }

    /// The ring's events (oldest first) and a receiver for what comes after them.
    fn subscribe(&self) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        (ring.iter().cloned().collect(), self.tx.subscribe())
    }

    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// `secs[.nanos]` (what the CLI sends for `--since 1m` or a date) in nanoseconds.
pub fn parse_time(s: &str) -> ApiResult<Option<i128>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::BadRequest(format!("invalid timestamp {s:?}"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i128 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Some(secs * 1_000_000_000 + nanos))
}

/// The filters of `/events` (`filters={"type":{"container":true}}`, or the old
/// list form), checked as dockerd checks them.
#[derive(Debug, Default, Clone)]
pub struct Filters(HashMap<String, Vec<String>>);

const KEYS: &[&str] = &[
    "container",
    "event",
    "image",
    "label",
    "type",
    "scope",
    "daemon",
    "volume",
    "network",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];

impl Filters {
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
            return Ok(Self::default());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid filter: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::BadRequest("invalid filter: not an object".into()))?;
        let mut out = HashMap::new();
        for (k, vals) in obj {
            if !KEYS.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!("invalid filter '{k}'")));
            }
            let list: Vec<String> = match vals {
                Value::Object(o) => o
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            };
            out.insert(k.clone(), list);
        }
        Ok(Self(out))
    }

    /// An absent filter matches everything; a present one needs one value to match.
    fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        self.0
            .get(key)
            .is_none_or(|vals| vals.is_empty() || vals.iter().any(|v| f(v)))
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let attr = |k: &str| ev.attributes.get(k).map_or("", String::as_str);
        let strip_tag = |s: &str| reference::split_tag(s).0.to_string();
        // `exec_create` matches `exec_create: sh -c ...` (dockerd's fuzzy events).
        let event_ok = self.any("event", |v| {
            ev.action == v
                || ev
                    .action
                    .strip_prefix(v)
                    .is_some_and(|r| r.starts_with(':'))
        });
        let named = |typ: &str, key: &str| {
            self.any(key, |v| {
                ev.typ == typ && (attr("name") == v || ev.id.starts_with(v) && !v.is_empty())
            })
        };
        let image_ok = self.any("image", |v| {
            let name = if ev.typ == "image" {
                attr("name")
            } else {
                attr("image")
            };
            [ev.id.as_str(), name].iter().any(|s| {
                !s.is_empty()
                    && (*s == v
                        || strip_tag(s) == v
                        || reference::familiar(s) == v
                        || strip_tag(&reference::familiar(s)) == v)
            })
        });
        let label_ok = self.0.get("label").is_none_or(|vals| {
            vals.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => attr(k) == v && ev.attributes.contains_key(k),
                None => ev.attributes.contains_key(l.as_str()),
            })
        });
        event_ok
            && self.any("type", |v| ev.typ == v)
            && self.any("scope", |v| v == "local")
            && named("container", "container")
            && image_ok
            && label_ok
            && [
                "daemon", "volume", "network", "plugin", "node", "service", "secret", "config",
            ]
            .iter()
            .all(|k| named(k, k))
    }
}

fn line(ev: &Event) -> Bytes {
    let mut b = serde_json::to_vec(&ev.to_json()).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// `GET /events?since=&until=&filters=`: the headers go at once (`docker stats`
/// waits for them), then JSON lines; the stream ends at `until`, else stays open.
pub fn serve(d: &Daemon, req: &Request<Incoming>) -> ApiResult<Response<Body>> {
    let q = query(req);
    let since = parse_time(q.get("since").map_or("", String::as_str))?;
    let until = parse_time(q.get("until").map_or("", String::as_str))?;
    let filters = Filters::parse(q.get("filters").map(String::as_str))?;
    let (past, mut live) = d.events.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if since.is_some() || until.is_some() {
            let from = since.unwrap_or(i128::MIN);
            let to = until.unwrap_or(i128::MAX);
            for ev in past
                .iter()
                .filter(|e| e.time_nano >= from && e.time_nano <= to && filters.matches(e))
            {
                if tx.send(line(ev)).await.is_err() {
                    return;
                }
            }
        }
        let deadline = until.map(|u| {
            let left = u - now_nanos();
            tokio::time::Instant::now()
                + Duration::from_nanos(left.clamp(0, u64::MAX as i128) as u64)
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            let got = tokio::select! {
                got = next => got,
                _ = tx.closed() => return,
            };
            match got {
                None => return,
                Some(Ok(ev)) => {
                    if until.is_some_and(|u| ev.time_nano > u) {
                        return;
                    }
                    if filters.matches(&ev) && tx.send(line(&ev)).await.is_err() {
                        return;
                    }
                }
                // A listener that fell behind misses some events rather than all.
                Some(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Some(Err(broadcast::error::RecvError::Closed)) => return,
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Turns containerd's `/tasks/oom` events (published by the shims) into `oom`
/// events of the containers, for as long as engined runs: the subscription is made
/// again whenever containerd goes away and comes back.
pub async fn watch_containerd(d: Arc<Daemon>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let subscribed = d
            .ctrd
            .events()
            .subscribe(d.ctrd.req(SubscribeRequest {
                filters: vec![r#"topic=="/tasks/oom""#.to_string()],
            }))
            .await;
        match subscribed {
            Ok(stream) => {
                delay = Duration::from_millis(100);
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(envelope)) => oom_of(&d, &envelope),
                        Ok(None) => break,
                        Err(s) => {
                            debug!(error = %s.message(), "containerd's event stream ended");
                            break;
                        }
                    }
                }
            }
            Err(s) => debug!(error = %s.message(), "subscribing to containerd's events"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

fn oom_of(d: &Daemon, envelope: &Envelope) {
    if envelope.namespace != d.cfg.containerd_namespace || envelope.topic != "/tasks/oom" {
        return;
    }
    let Some(any) = &envelope.event else {
        return;
    };
    match TaskOom::decode(any.value.as_slice()) {
        Ok(oom) => {
            if let Ok(c) = d.find(&oom.container_id) {
                d.events.container(&c.record(), "oom", &[]);
            }
        }
        Err(e) => debug!(error = %e, "undecodable /tasks/oom event"),
    }
}

/// Image events of `docker tag`: the image's id, the new name.
pub async fn tagged(d: &Daemon, source: &str, target: &str) {
    if let Some(i) = d.images.lookup(source).await {
        d.events
            .image("tag", &i.id, Some(&reference::normalize(target)));
    }
}

/// Image events of `docker rmi`: one `untag` per name gone, `delete` if the image went.
pub fn removed(d: &Daemon, id: &str, items: &[Value]) {
    for item in items {
        if let Some(name) = item["Untagged"].as_str() {
            d.events.image("untag", id, Some(name));
        }
        if let Some(deleted) = item["Deleted"].as_str() {
            d.events.image("delete", deleted, None);
        }
    }
}

/// Image events of `docker load`, from its `Loaded image: NAME` / `Loaded image ID: ID`
/// lines.
pub async fn loaded(d: &Daemon, lines: &[String]) {
    for l in lines {
        let (name, key) = if let Some(id) = l.strip_prefix("Loaded image ID: ") {
            (None, id)
        } else if let Some(n) = l.strip_prefix("Loaded image: ") {
            (Some(n), n)
        } else {
            continue;
        };
        if let Some(i) = d.images.lookup(key.trim()).await {
            d.events.image("load", &i.id, name.map(str::trim));
        }
    }
}

/// Image events of `docker save`.
pub async fn saved(d: &Daemon, names: &[String]) {
    for n in names {
        if let Some(i) = d.images.lookup(n).await {
            d.events.image("save", &i.id, Some(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(typ: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            typ: typ.into(),
            action: action.into(),
            id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nano: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("").unwrap(), None);
        assert_eq!(parse_time("12").unwrap(), Some(12_000_000_000));
        assert_eq!(parse_time("12.5").unwrap(), Some(12_500_000_000));
        assert_eq!(parse_time("1.000000001").unwrap(), Some(1_000_000_001));
        assert!(parse_time("x").is_err());
        assert!(parse_time("1.0000000001").is_err());
    }

    #[test]
    fn shape_is_dockers() {
        let e = ev(
            "container",
            "die",
            "abc",
            &[("image", "busybox"), ("name", "n"), ("exitCode", "3")],
        );
        let v = e.to_json();
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["time"], 1_700_000_000);
        assert_eq!(v["timeNano"], 1_700_000_000_123_456_789i64);
        assert_eq!(v["scope"], "local");
        let i = ev("image", "pull", "busybox:latest", &[("name", "busybox")]).to_json();
        assert!(i.get("from").is_none());
        assert_eq!(i["id"], "busybox:latest");
    }

    #[test]
    fn filters_match_as_dockerd() {
        let c = ev(
            "container",
            "exec_create: sh -c true",
            "abcdef",
            &[("image", "busybox"), ("name", "web"), ("a", "1")],
        );
        let f = |s: &str| Filters::parse(Some(s)).unwrap();
        assert!(f(r#"{"type":{"container":true}}"#).matches(&c));
        assert!(!f(r#"{"type":{"image":true}}"#).matches(&c));
        assert!(f(r#"{"event":{"exec_create":true}}"#).matches(&c));
        assert!(!f(r#"{"event":{"exec":true}}"#).matches(&c));
        assert!(f(r#"{"container":{"web":true}}"#).matches(&c));
        assert!(f(r#"{"container":{"abc":true}}"#).matches(&c));
        assert!(!f(r#"{"container":{"we":true}}"#).matches(&c));
        assert!(f(r#"{"image":{"busybox":true}}"#).matches(&c));
        assert!(f(r#"{"image":{"busybox:latest":false,"busybox":true}}"#).matches(&c));
        assert!(f(r#"{"label":["a=1"]}"#).matches(&c));
        assert!(f(r#"{"label":["a"]}"#).matches(&c));
        assert!(!f(r#"{"label":["a=2"]}"#).matches(&c));
        assert!(!f(r#"{"volume":{"v":true}}"#).matches(&c));
        assert!(Filters::parse(Some(r#"{"bogus":{"x":true}}"#)).is_err());
        let i = ev(
            "image",
            "tag",
            "sha256:1234",
            &[("name", "127.0.0.1:5000/x:v1")],
        );
        assert!(f(r#"{"image":{"127.0.0.1:5000/x":true}}"#).matches(&i));
        assert!(f(r#"{"image":{"sha256:1234":true}}"#).matches(&i));
        assert!(!f(r#"{"container":{"x":true}}"#).matches(&i));
    }

    #[test]
    fn the_ring_keeps_the_last_events_in_order() {
        let hub = Hub::new();
        for i in 0..RING + 10 {
            hub.emit("image", "tag", &format!("{i}"), BTreeMap::new());
        }
        let (past, _rx) = hub.subscribe();
        assert_eq!(past.len(), RING);
        assert_eq!(past[0].id, "10");
        assert!(past.windows(2).all(|w| w[0].time_nano <= w[1].time_nano));
    }
}
