//! The instructions, one image each, with the classic builder's cache: a step is
//! reused when a previous build made it from the same parent image with the same
//! `created_by` (which for COPY/ADD carries the checksum of the copied files).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::dockerfile::{self, Instruction};
use super::{Failure, Options, Out, cache_file, context, ignore};
use crate::archive::ExtractOptions;
use crate::daemon::{Container, CreateBody, Daemon};
use crate::error::{ApiError, ApiResult, Context};
use crate::fstree::{self, Kind, Place, TreeTar};
use crate::images::{ImageInfo, digest_of};
use crate::rootfs::{View, on_thread};

/// ARGs usable without a declaration (and left out of the history).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

static CACHE_LOCK: Mutex<()> = Mutex::new(());

fn cache_get(path: &Path, key: &str) -> Option<String> {
    let _g = CACHE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let text = std::fs::read_to_string(path).ok()?;
    let map: HashMap<String, String> = serde_json::from_str(&text).ok()?;
    map.get(key).cloned()
}

fn cache_put(path: &Path, key: &str, id: &str) {
    let _g = CACHE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let mut map: HashMap<String, String> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    map.insert(key.to_string(), id.to_string());
    let tmp = path.with_extension("json.tmp");
    // Written aside and renamed: a crash leaves the old index, never half of one.
    if let Ok(bytes) = serde_json::to_vec(&map)
        && std::fs::write(&tmp, bytes).is_ok()
    {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Go's `%q` of a string slice, as the builder's history comments show them.
fn go_list(items: &[String]) -> String {
    let q: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", q.join(" "))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A path in the image, `/`-rooted and cleaned.
fn clean_image_path(p: &str) -> String {
    fstree::clean_abs(p).to_string_lossy().into_owned()
}

/// One COPY/ADD source, resolved inside the context.
#[derive(Debug)]
struct Source {
    fd: OwnedFd,
    name: String,
    kind: Kind,
}

pub struct Builder {
    d: Arc<Daemon>,
    opts: Options,
    ctx: PathBuf,
    escape: char,
    out: Out,
    image: Option<ImageInfo>,
    started: bool,
    config: Map<String, Value>,
    shell: Vec<String>,
    /// Declared ARGs of the stage with their values.
    args: Vec<(String, Option<String>)>,
    /// ARGs before the first FROM.
    meta_args: HashMap<String, String>,
    used: HashSet<String>,
    cmd_set: bool,
    stage: Option<String>,
    stages: HashMap<String, ImageInfo>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("image", &self.image.as_ref().map(|i| &i.id))
            .finish()
    }
}

impl Builder {
    pub fn new(d: Arc<Daemon>, opts: &Options, ctx: PathBuf, escape: char, out: Out) -> Self {
        Self {
            d,
            opts: opts.clone(),
            ctx,
            escape,
            out,
            image: None,
            started: false,
            config: Map::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            args: Vec::new(),
            meta_args: HashMap::new(),
            used: HashSet::new(),
            cmd_set: false,
            stage: None,
            stages: HashMap::new(),
        }
    }

    /// Whether the stage that just ended is the `--target` one.
    pub fn stage_done(&self, target: &str) -> bool {
        !target.is_empty()
            && self
                .stage
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(target))
    }

    pub fn unused_args(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn arg_value(&self, name: &str, default: Option<String>) -> Option<String> {
        match self.opts.build_args.get(name) {
            Some(Some(v)) => Some(v.clone()),
            _ => default,
        }
    }

    fn cfg(&self, key: &str) -> &Value {
        self.config.get(key).unwrap_or(&Value::Null)
    }

    fn env_list(&self) -> Vec<String> {
        strings(self.cfg("Env"))
    }

    /// Variables for substitution: the stage's ARGs, then ENV over them.
    fn vars(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if !self.started {
            return self.meta_args.clone();
        }
        for (k, v) in &self.args {
            if let Some(v) = v {
                m.insert(k.clone(), v.clone());
            }
        }
        for e in self.env_list() {
            if let Some((k, v)) = e.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    fn word(&self, s: &str) -> Result<String, Failure> {
        Ok(dockerfile::word(s, &self.vars(), self.escape)?)
    }

    fn words(&self, s: &str) -> Result<Vec<String>, Failure> {
        Ok(dockerfile::words(s, &self.vars(), self.escape)?)
    }

    fn parent_id(&self) -> String {
        self.image
            .as_ref()
            .map_or_else(|| "scratch".to_string(), |i| i.id.clone())
    }

    fn cache_key(&self, created_by: &str) -> String {
        digest_of(format!("{}\n{}", self.parent_id(), created_by).as_bytes())
    }

    /// The cached image for this step, made current.
    async fn probe_cache(&mut self, created_by: &str) -> Option<String> {
        if self.opts.nocache {
            return None;
        }
        let id = cache_get(&cache_file(&self.d), &self.cache_key(created_by))?;
        let img = self.d.images.lookup(&id).await?;
        self.out.stream(" ---> Using cache\n").await;
        self.adopt(img);
        Some(id)
    }

    fn adopt(&mut self, img: ImageInfo) {
        self.config = img.config["config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        self.image = Some(img);
    }

    pub async fn step(&mut self, ins: &Instruction) -> Result<String, Failure> {
        if ins.cmd != "FROM" && ins.cmd != "ARG" && !self.started {
            return Err(ApiError::BadRequest(
                "Please provide a source image with `from` prior to commit".into(),
            )
            .into());
        }
        match ins.cmd.as_str() {
            "FROM" => self.from(ins).await,
            "RUN" => self.run(ins).await,
            "COPY" | "ADD" => self.copy(ins).await,
            "WORKDIR" => self.workdir(ins).await,
            _ => self.meta(ins).await,
        }
    }

    async fn from(&mut self, ins: &Instruction) -> Result<String, Failure> {
        if let (Some(name), Some(img)) = (self.stage.take(), self.image.clone()) {
            self.stages.insert(name.to_ascii_lowercase(), img);
        }
        let w = self.words(&ins.rest)?;
        let name = w.first().cloned().unwrap_or_default();
        self.stage = match (w.get(1), w.get(2)) {
            (Some(a), Some(n)) if a.eq_ignore_ascii_case("as") => Some(n.clone()),
            _ => None,
        };
        self.started = true;
        self.args.clear();
        self.cmd_set = false;
        if name.eq_ignore_ascii_case("scratch") {
            self.image = None;
            self.config = Map::new();
            self.shell = vec!["/bin/sh".into(), "-c".into()];
            return Ok(String::new());
        }
        let img = match self.stages.get(&name.to_ascii_lowercase()) {
            Some(i) => Some(i.clone()),
            None => self.d.images.lookup(&name).await,
        };
        // As dockerd's builder: an image that is not here is pulled.
        let img = match img {
            Some(i) => i,
            None => {
                let auth = self.opts.registry_auth(&name);
                crate::distribution::pull_for_build(&self.d, &name, &auth, self.out.progress())
                    .await
                    .map_err(|e| match e {
                        ApiError::NotFound(m) => ApiError::NotFound(m),
                        other => ApiError::Internal(format!("pulling {name}: {other}")),
                    })?;
                self.d.images.lookup(&name).await.ok_or_else(|| {
                    ApiError::NotFound(format!("No such image: {name} after its pull"))
                })?
            }
        };
        self.adopt(img.clone());
        let shell = strings(self.cfg("Shell"));
        self.shell = if shell.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            shell
        };
        Ok(img.id)
    }

    /// An instruction that changes the config only.
    async fn meta(&mut self, ins: &Instruction) -> Result<String, Failure> {
        let comment = match ins.cmd.as_str() {
            "ENV" => {
                let pairs = dockerfile::pairs(&ins.rest, &self.vars(), self.escape, true)?;
                let mut env = self.env_list();
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                    shown.push(format!("{k}={v}"));
                }
                self.config.insert("Env".into(), json!(env));
                format!("ENV {}", shown.join(" "))
            }
            "LABEL" => {
                let pairs = dockerfile::pairs(&ins.rest, &self.vars(), self.escape, true)?;
                let mut labels = self.cfg("Labels").as_object().cloned().unwrap_or_default();
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    shown.push(format!("{k}={v}"));
                    labels.insert(k, json!(v));
                }
                self.config.insert("Labels".into(), Value::Object(labels));
                format!("LABEL {}", shown.join(" "))
            }
            "ARG" => {
                let mut shown = Vec::new();
                for w in self.words(&ins.rest)? {
                    let (k, default) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    shown.push(w.clone());
                    self.used.insert(k.clone());
                    let value = self.arg_value(&k, default);
                    if !self.started {
                        if let Some(v) = value {
                            self.meta_args.insert(k, v);
                        }
                        continue;
                    }
                    self.args.retain(|(n, _)| *n != k);
                    self.args.push((k, value));
                }
                if !self.started {
                    // Before FROM: nothing to commit.
                    return Ok(String::new());
                }
                format!("ARG {}", shown.join(" "))
            }
            "USER" => {
                let u = self.word(&ins.rest)?;
                self.config.insert("User".into(), json!(u));
                format!("USER {u}")
            }
            "CMD" | "ENTRYPOINT" => {
                let v = match &ins.json {
                    Some(j) => j.clone(),
                    None if ins.rest.is_empty() => Vec::new(),
                    None => {
                        let mut s = self.shell.clone();
                        s.push(ins.rest.clone());
                        s
                    }
                };
                let key = if ins.cmd == "CMD" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                self.config.insert(key.into(), json!(v));
                if ins.cmd == "CMD" {
                    self.cmd_set = true;
                } else if !self.cmd_set {
                    // A new entrypoint drops the base image's CMD, as dockerd does.
                    self.config.insert("Cmd".into(), Value::Null);
                }
                format!("{} {}", ins.cmd, go_list(&v))
            }
            "EXPOSE" => {
                let mut ports = self
                    .cfg("ExposedPorts")
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let mut shown = Vec::new();
                for p in self.words(&ins.rest)? {
                    let p = if p.contains('/') {
                        p.to_ascii_lowercase()
                    } else {
                        format!("{p}/tcp")
                    };
                    let num = p.split('/').next().unwrap_or("");
                    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '-') {
                        return Err(
                            ApiError::BadRequest(format!("Invalid containerPort: {p}")).into()
                        );
                    }
                    shown.push(p.clone());
                    ports.insert(p, json!({}));
                }
                self.config
                    .insert("ExposedPorts".into(), Value::Object(ports));
                format!("EXPOSE {}", shown.join(" "))
            }
            "VOLUME" => {
                let list = match &ins.json {
                    Some(j) => j.clone(),
                    None => self.words(&ins.rest)?,
                };
                let mut vols = self.cfg("Volumes").as_object().cloned().unwrap_or_default();
                for v in &list {
                    if v.trim().is_empty() {
                        return Err(ApiError::BadRequest(
                            "VOLUME specified can not be an empty string".into(),
                        )
                        .into());
                    }
                    vols.insert(v.clone(), json!({}));
                }
                self.config.insert("Volumes".into(), Value::Object(vols));
                format!("VOLUME {}", go_list(&list))
            }
            "STOPSIGNAL" => {
                let s = self.word(&ins.rest)?;
                crate::daemon::parse_signal(&s)?;
                self.config.insert("StopSignal".into(), json!(s));
                format!("STOPSIGNAL {s}")
            }
            "SHELL" => {
                let Some(j) = ins.json.clone().filter(|j| !j.is_empty()) else {
                    return Err(ApiError::BadRequest(
                        "SHELL requires the arguments to be in JSON form".into(),
                    )
                    .into());
                };
                self.shell = j.clone();
                self.config.insert("Shell".into(), json!(j));
                format!("SHELL {}", go_list(&j))
            }
            "ONBUILD" => {
                let (word, rest) = ins
                    .rest
                    .split_once(char::is_whitespace)
                    .unwrap_or((&ins.rest, ""));
                let up = word.to_ascii_uppercase();
                if matches!(up.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(ApiError::BadRequest(format!(
                        "{up} isn't allowed as an ONBUILD trigger"
                    ))
                    .into());
                }
                let trigger = format!("{up} {}", rest.trim_start()).trim().to_string();
                let mut list = strings(self.cfg("OnBuild"));
                list.push(trigger.clone());
                self.config.insert("OnBuild".into(), json!(list));
                format!("ONBUILD {trigger}")
            }
            "MAINTAINER" => format!("MAINTAINER {}", ins.rest),
            "HEALTHCHECK" => {
                let hc = healthcheck(ins, &self.shell)?;
                self.config.insert("Healthcheck".into(), hc);
                format!("HEALTHCHECK {}", ins.rest)
            }
            other => {
                return Err(ApiError::BadRequest(format!("unknown instruction: {other}")).into());
            }
        };
        let created_by = format!("{} #(nop)  {comment}", self.shell.join(" "));
        if let Some(id) = self.probe_cache(&created_by).await {
            return Ok(id);
        }
        let author = (ins.cmd == "MAINTAINER").then(|| ins.rest.clone());
        let mut cmd = self.shell.clone();
        cmd.push(format!("#(nop) {comment}"));
        let img = self.store(&created_by, cmd, None, None, author).await?;
        Ok(img.id)
    }

    /// Makes the next image from the current one (and a layer), caches and adopts it.
    async fn store(
        &mut self,
        created_by: &str,
        container_cmd: Vec<String>,
        layer: Option<(&Path, &str, i64)>,
        container: Option<&str>,
        author: Option<String>,
    ) -> ApiResult<ImageInfo> {
        let created = common::rfc3339_nanos(std::time::SystemTime::now());
        let (mut ic, parents) = match &self.image {
            Some(i) => (i.config.clone(), i.layers.clone()),
            None => (
                json!({
                    "architecture": crate::import::go_arch(), "os": "linux",
                    "rootfs": { "type": "layers", "diff_ids": [] }, "history": [],
                }),
                Vec::new(),
            ),
        };
        let mut history = ic["history"].as_array().cloned().unwrap_or_default();
        let mut h = json!({ "created": created, "created_by": created_by });
        if layer.is_none() {
            h["empty_layer"] = json!(true);
        }
        history.push(h);
        let mut diff_ids = ic["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some((_, digest, _)) = layer {
            diff_ids.push(json!(digest));
        }
        let mut cc = self.config.clone();
        cc.insert("Cmd".into(), json!(container_cmd));
        ic["config"] = Value::Object(self.config.clone());
        ic["container_config"] = Value::Object(cc);
        ic["container"] = json!(container.unwrap_or(""));
        ic["created"] = json!(created);
        ic["docker_version"] = json!(crate::server::SERVER_VERSION);
        ic["history"] = json!(history);
        ic["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
        if let Some(a) = author {
            ic["author"] = json!(a);
        }
        if let Some(o) = ic.as_object_mut() {
            o.remove("id");
            o.remove("parent");
        }
        let bytes = serde_json::to_vec(&ic)
            .map_err(|e| ApiError::Internal(format!("encode the image config: {e}")))?;
        let made = self
            .d
            .images
            .commit(&bytes, ic, &parents, layer, &[])
            .await?;
        cache_put(&cache_file(&self.d), &self.cache_key(created_by), &made.id);
        self.adopt(made.clone());
        Ok(made)
    }

    /// Commits the upper directory of `c` as the next image.
    async fn commit_container(
        &mut self,
        c: &Arc<Container>,
        created_by: &str,
        container_cmd: Vec<String>,
    ) -> ApiResult<ImageInfo> {
        let l = crate::layerdiff::layers(&self.d, &c.id).await?;
        let tmp = tempfile::NamedTempFile::new_in(self.d.cfg.data_root.join("tmp"))
            .ctx(|| "create a layer file".into())?;
        let out = tmp.path().to_path_buf();
        let (digest, size, entries) = on_thread("build-commit", move || {
            crate::layerdiff::write_layer(&l.upper, &out)
        })
        .await??;
        let layer = (entries > 0).then_some((tmp.path(), digest.as_str(), size));
        let made = self
            .store(created_by, container_cmd, layer, Some(&c.id), None)
            .await?;
        self.d
            .events
            .container(&c.record(), "commit", &[("comment", String::new())]);
        Ok(made)
    }

    /// A container of the current image (created, not started).
    async fn container(&self, cmd: Vec<String>, env: Vec<String>) -> ApiResult<Arc<Container>> {
        let image = self
            .image
            .as_ref()
            .ok_or_else(|| ApiError::BadRequest("no image to run on (FROM scratch)".into()))?;
        let config = ContainerConfig {
            image: Some(image.id.clone()),
            cmd: Some(cmd),
            entrypoint: Some(vec![String::new()]),
            env: Some(env),
            ..Default::default()
        };
        // engined's default network (a namespace of its own): `host` would be
        // closer to a bridge's reach, but engined's spec gives it a hostname
        // without a UTS namespace, which the runtime refuses.
        let host = HostConfig::default();
        let id = self
            .d
            .create(
                None,
                CreateBody {
                    config,
                    host_config: Some(host),
                },
            )
            .await?;
        self.d.find(&id)
    }

    async fn remove(&self, c: &Arc<Container>, shown: bool) {
        if shown {
            self.out
                .stream(format!("Removing intermediate container {}\n", &c.id[..12]))
                .await;
        }
        if let Err(e) = self.d.remove(c, true).await {
            tracing::warn!(container_id = %c.id, error = %e, "remove a build container");
        }
    }

    /// ARGs in effect for RUN: `K=V` (not overridden by ENV), declared order.
    fn run_args(&self) -> Vec<String> {
        let env: HashSet<String> = self
            .env_list()
            .iter()
            .filter_map(|e| e.split('=').next().map(str::to_string))
            .collect();
        let mut v: Vec<String> = self
            .args
            .iter()
            .filter(|(k, _)| !env.contains(k))
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        for p in PREDEFINED_ARGS {
            if let Some(Some(val)) = self.opts.build_args.get(*p) {
                v.push(format!("{p}={val}"));
            }
        }
        v
    }

    async fn run(&mut self, ins: &Instruction) -> Result<String, Failure> {
        let cmd = match &ins.json {
            Some(j) => j.clone(),
            None => {
                let mut s = self.shell.clone();
                s.push(ins.rest.clone());
                s
            }
        };
        let args = self.run_args();
        // History and the cache key carry the ARGs (not the predefined proxies).
        let shown_args: Vec<&String> = args
            .iter()
            .filter(|a| !PREDEFINED_ARGS.contains(&a.split('=').next().unwrap_or("")))
            .collect();
        let created_by = if shown_args.is_empty() {
            cmd.join(" ")
        } else {
            let list: Vec<&str> = shown_args.iter().map(|s| s.as_str()).collect();
            format!("|{} {} {}", list.len(), list.join(" "), cmd.join(" "))
        };
        if let Some(id) = self.probe_cache(&created_by).await {
            return Ok(id);
        }
        let c = self.container(cmd.clone(), args).await?;
        self.out
            .stream(format!(" ---> Running in {}\n", &c.id[..12]))
            .await;
        let code = self.start_and_relay(&c).await?;
        if code != 0 {
            if self.opts.forcerm {
                self.remove(&c, true).await;
            }
            return Err(Failure::Exit(
                format!(
                    "The command '{}' returned a non-zero code: {code}",
                    cmd.join(" ")
                ),
                code,
            ));
        }
        let made = self.commit_container(&c, &created_by, cmd).await;
        if self.opts.rm || self.opts.forcerm {
            self.remove(&c, true).await;
        }
        Ok(made?.id)
    }

    /// Starts `c`, relays its log as stream lines until it exits; its exit code.
    async fn start_and_relay(&self, c: &Arc<Container>) -> ApiResult<i64> {
        let log = c.record().log_path;
        let mut tail = crate::follow::LogTail::from_offset(&log, 0);
        let mut life = c.subscribe_life();
        let before = life.borrow().exits;
        self.d.start(c).await?;
        loop {
            for e in tail.read_new() {
                self.out.stream(e.log).await;
            }
            if life.borrow().exits > before {
                break;
            }
            tokio::select! {
                _ = tail.changed() => {}
                r = life.changed() => if r.is_err() { break },
            }
        }
        // What the shim wrote just before the exit was reported.
        for _ in 0..3 {
            let rest = tail.read_new();
            if rest.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                continue;
            }
            for e in rest {
                self.out.stream(e.log).await;
            }
        }
        Ok(life.borrow().exit_code)
    }

    fn workdir_of(&self) -> String {
        self.cfg("WorkingDir")
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    async fn workdir(&mut self, ins: &Instruction) -> Result<String, Failure> {
        let w = self.word(&ins.rest)?;
        let dir = if w.starts_with('/') {
            clean_image_path(&w)
        } else {
            clean_image_path(&format!("{}/{w}", self.workdir_of()))
        };
        self.config.insert("WorkingDir".into(), json!(dir));
        let comment = format!("WORKDIR {dir}");
        let created_by = format!("{} #(nop)  {comment}", self.shell.join(" "));
        if let Some(id) = self.probe_cache(&created_by).await {
            return Ok(id);
        }
        let mut cmd = self.shell.clone();
        cmd.push(format!("#(nop) {comment}"));
        if self.image.is_none() {
            return Ok(self.store(&created_by, cmd, None, None, None).await?.id);
        }
        let c = self.container(cmd.clone(), Vec::new()).await?;
        self.out
            .stream(format!(" ---> Running in {}\n", &c.id[..12]))
            .await;
        let target = PathBuf::from(&dir);
        let cid = c.id.clone();
        let made = async {
            crate::rootfs::with_view(&self.d, &c, false, move |v: &View| {
                rootpath::resolve_in_root(v.root(), &target, rootpath::Create::Dir)
                    .map(drop)
                    .map_err(|e| {
                        crate::rootfs::resolve_error(e, &target.display().to_string(), &cid)
                    })
            })
            .await??;
            self.commit_container(&c, &created_by, cmd).await
        }
        .await;
        self.remove(&c, true).await;
        Ok(made?.id)
    }

    async fn copy(&mut self, ins: &Instruction) -> Result<String, Failure> {
        let add = ins.cmd == "ADD";
        if ins.flag("from").is_some() {
            return Err(ApiError::BadRequest(
                "COPY --from is not supported by engined's builder yet".into(),
            )
            .into());
        }
        let chown = match ins.flag("chown") {
            Some(c) => Some(self.word(c)?),
            None => None,
        };
        let mut list = match &ins.json {
            Some(j) => j.clone(),
            None => self.words(&ins.rest)?,
        };
        if list.len() < 2 {
            return Err(ApiError::BadRequest(format!(
                "{} requires at least two arguments",
                ins.cmd
            ))
            .into());
        }
        let dest_raw = list.pop().unwrap_or_default();
        let dir_syntax = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest = if dest_raw.starts_with('/') {
            clean_image_path(&dest_raw)
        } else {
            clean_image_path(&format!("{}/{dest_raw}", self.workdir_of()))
        };
        for s in &list {
            if add && (s.starts_with("http://") || s.starts_with("https://")) {
                return Err(ApiError::BadRequest(format!(
                    "ADD from a URL ({s}) is not supported by engined's builder: download it into the context and ADD or COPY the file"
                ))
                .into());
            }
            if s.starts_with("git@") {
                return Err(ApiError::BadRequest(format!(
                    "ADD from git ({s}) is not supported by engined's builder"
                ))
                .into());
            }
        }
        let ctx = self.ctx.clone();
        let srcs = list.clone();
        let (sources, sum) =
            on_thread("build-sources", move || resolve_sources(&ctx, &srcs)).await??;
        let many = sources.len() > 1;
        let kind = if many {
            "multi"
        } else if sources.first().is_some_and(|s| s.kind == Kind::Dir) {
            "dir"
        } else {
            "file"
        };
        let mut created_by = format!(
            "{} #(nop) {} {kind}:{sum} in {dest_raw} ",
            self.shell.join(" "),
            ins.cmd
        );
        if let Some(c) = &chown {
            created_by.push_str(&format!("(chown {c}) "));
        }
        if let Some(id) = self.probe_cache(&created_by).await {
            return Ok(id);
        }
        let mut cmd = self.shell.clone();
        cmd.push(format!("#(nop) {} {kind}:{sum} in {dest_raw} ", ins.cmd));
        if self.image.is_none() {
            // Nothing to run a container on: the layer is the sources at their place.
            if chown.is_some() {
                return Err(ApiError::BadRequest(format!(
                    "{} --chown on FROM scratch is not supported by engined's builder",
                    ins.cmd
                ))
                .into());
            }
            let tmp = tempfile::NamedTempFile::new_in(self.d.cfg.data_root.join("tmp"))
                .ctx(|| "create a layer file".into())?;
            let path = tmp.path().to_path_buf();
            let (dest2, into_dir) = (dest.clone(), dir_syntax || many);
            let (digest, size) = on_thread("build-scratch", move || {
                scratch_layer(&sources, &dest2, into_dir, &path)
            })
            .await??;
            let img = self
                .store(
                    &created_by,
                    cmd,
                    Some((tmp.path(), &digest, size)),
                    None,
                    None,
                )
                .await?;
            return Ok(img.id);
        }
        let c = self.container(cmd.clone(), Vec::new()).await?;
        let tmp = self.d.cfg.data_root.join("tmp");
        let cid = c.id.clone();
        let plan = CopyPlan {
            sources,
            dest,
            dir_syntax,
            add,
            opts: ExtractOptions {
                no_overwrite_dir_non_dir: false,
                copy_uid_gid: chown.is_some(),
                user: chown.unwrap_or_default(),
            },
            tmp,
        };
        let made = async {
            crate::rootfs::with_view(&self.d, &c, false, move |v: &View| plan.apply(v, &cid))
                .await??;
            self.commit_container(&c, &created_by, cmd).await
        }
        .await;
        self.remove(&c, false).await;
        Ok(made?.id)
    }
}

fn healthcheck(ins: &Instruction, shell: &[String]) -> ApiResult<Value> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(json!({ "Test": ["NONE"] }));
    }
    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !word.eq_ignore_ascii_case("cmd") {
        return Err(ApiError::BadRequest(format!(
            "Unknown type {word:?} in HEALTHCHECK (try CMD)"
        )));
    }
    let cmd = cmd.trim();
    let test = match serde_json::from_str::<Vec<String>>(cmd) {
        Ok(j) if cmd.starts_with('[') => {
            let mut t = vec!["CMD".to_string()];
            t.extend(j);
            t
        }
        _ => {
            let _ = shell;
            vec!["CMD-SHELL".to_string(), cmd.to_string()]
        }
    };
    let mut hc = json!({ "Test": test });
    for (k, field) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
    ] {
        if let Some(v) = ins.flag(k) {
            hc[field] = json!(go_duration(v).ok_or_else(|| {
                ApiError::BadRequest(format!("invalid --{k} duration {v:?}"))
            })?);
        }
    }
    if let Some(r) = ins.flag("retries") {
        hc["Retries"] = json!(
            r.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid --retries {r:?}")))?
        );
    }
    Ok(hc)
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
fn go_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(total as i64)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The sources of a COPY/ADD resolved inside the context (links followed only
/// within it), and the checksum of what they hold.
fn resolve_sources(ctx: &Path, srcs: &[String]) -> ApiResult<(Vec<Source>, String)> {
    let root = std::fs::File::open(ctx).ctx(|| "open the context".into())?;
    let mut out = Vec::new();
    for s in srcs {
        // A `..` that climbs above the context's top is refused, as dockerd does.
        let mut depth: i64 = 0;
        for c in Path::new(s).components() {
            match c {
                std::path::Component::ParentDir => depth -= 1,
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return Err(ApiError::BadRequest(format!(
                    "forbidden path outside the build context: {s} ()"
                )));
            }
        }
        let rel = context::clean_rel(Path::new(s));
        let not_found = || {
            ApiError::BadRequest(format!(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
            ))
        };
        let name_of = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let last = name_of(&rel);
        if has_glob(&last) {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let dir = rootpath::resolve_in_root(root.as_fd(), parent, rootpath::Create::Nothing)
                .map_err(|_| not_found())?;
            let dir = fstree::reopen_dir(dir.as_fd())
                .map_err(|e| ApiError::Internal(format!("open {s}: {e}")))?;
            let mut found = 0;
            for n in fstree::list(dir.as_fd()).unwrap_or_default() {
                let ns = n.to_string_lossy().into_owned();
                if !ignore::glob(last.as_bytes(), ns.as_bytes()) {
                    continue;
                }
                let fd = rootpath::resolve_in_root(
                    root.as_fd(),
                    &parent.join(&n),
                    rootpath::Create::Nothing,
                )
                .map_err(|_| not_found())?;
                let st = nix::sys::stat::fstat(fd.as_fd())
                    .map_err(|e| ApiError::Internal(format!("stat {ns}: {e}")))?;
                out.push(Source {
                    fd,
                    name: ns,
                    kind: Kind::of(&st),
                });
                found += 1;
            }
            if found == 0 {
                return Err(ApiError::BadRequest(
                    "COPY failed: no source files were specified".to_string(),
                ));
            }
            continue;
        }
        let fd = rootpath::resolve_in_root(root.as_fd(), &rel, rootpath::Create::Nothing)
            .map_err(|_| not_found())?;
        let st = nix::sys::stat::fstat(fd.as_fd())
            .map_err(|e| ApiError::Internal(format!("stat {s}: {e}")))?;
        out.push(Source {
            fd,
            name: last,
            kind: Kind::of(&st),
        });
    }
    let mut h = Sha256::new();
    for s in &out {
        h.update(s.name.as_bytes());
        h.update([0]);
        hash_tree(&s.fd, s.kind, &mut h)?;
    }
    let sum: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((out, sum))
}

/// Feeds names, types, modes, link targets and contents (not times) to `h`.
fn hash_tree(fd: &OwnedFd, kind: Kind, h: &mut Sha256) -> ApiResult<()> {
    let mut tmp = tempfile::tempfile().ctx(|| "create a checksum file".into())?;
    write_source_tar(fd, kind, "f", &mut tmp)?;
    tmp.rewind().ctx(|| "rewind".into())?;
    let mut ar = tar::Archive::new(tmp);
    let bad = |e: std::io::Error| ApiError::Internal(format!("checksum the sources: {e}"));
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let hd = e.header().clone();
        h.update(e.path_bytes());
        h.update([0, hd.entry_type().as_byte()]);
        h.update(hd.mode().unwrap_or(0).to_le_bytes());
        if let Some(l) = e.link_name_bytes() {
            h.update(&l);
        }
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(bad)?;
        h.update(Sha256::digest(&buf));
    }
    Ok(())
}

/// A tar of a source: a directory's contents (relative names), or one file named `name`.
fn write_source_tar(
    fd: &OwnedFd,
    kind: Kind,
    name: &str,
    out: &mut std::fs::File,
) -> ApiResult<()> {
    let io = |e: std::io::Error| ApiError::Internal(format!("read the sources: {e}"));
    let mut t = TreeTar::new(out, None, fstree::MountPolicy::RootOnly);
    if kind == Kind::Dir {
        let dir = fstree::reopen_dir(fd.as_fd()).map_err(|e| io(e.into()))?;
        let st = nix::sys::stat::fstat(dir.as_fd()).map_err(|e| io(e.into()))?;
        t.append_dir(
            dir.as_fd(),
            Path::new(""),
            Place {
                dev: st.st_dev,
                mount: 0,
            },
        )
        .map_err(io)?;
    } else {
        // Read through the fd's own path: the resolved file, never a link beyond it.
        let mut f = std::fs::File::open(rootpath::fd_path(fd)).map_err(io)?;
        let st = nix::sys::stat::fstat(f.as_fd()).map_err(|e| io(e.into()))?;
        let mut hd = tar::Header::new_gnu();
        hd.set_entry_type(tar::EntryType::Regular);
        hd.set_mode(st.st_mode & 0o7777);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        hd.set_size(u64::try_from(st.st_size).unwrap_or(0));
        t.builder.append_data(&mut hd, name, &mut f).map_err(io)?;
    }
    t.finish().map_err(io)?.flush().map_err(io)?;
    Ok(())
}

/// The layer of a COPY on `FROM scratch`: the directories down to `dest`, then
/// the sources in it; (digest, size).
fn scratch_layer(
    sources: &[Source],
    dest: &str,
    into_dir: bool,
    out: &Path,
) -> ApiResult<(String, i64)> {
    let io = |e: std::io::Error| ApiError::Internal(format!("write the layer: {e}"));
    let dest = PathBuf::from(dest.trim_start_matches('/'));
    let mut f = std::fs::File::create(out).map_err(io)?;
    let mut t = TreeTar::new(&mut f, None, fstree::MountPolicy::RootOnly);
    let mut dirs_done = HashSet::new();
    let mut dirs = |t: &mut TreeTar<'_, &mut std::fs::File>, upto: &Path| -> ApiResult<()> {
        let mut cur = PathBuf::new();
        for c in upto.components() {
            cur.push(c);
            if dirs_done.insert(cur.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(0);
                let name = format!("{}/", cur.display());
                t.builder
                    .append_data(&mut h, name, std::io::empty())
                    .map_err(io)?;
            }
        }
        Ok(())
    };
    for s in sources {
        if s.kind == Kind::Dir {
            dirs(&mut t, &dest)?;
            let dir = fstree::reopen_dir(s.fd.as_fd()).map_err(|e| io(e.into()))?;
            let st = nix::sys::stat::fstat(dir.as_fd()).map_err(|e| io(e.into()))?;
            for child in fstree::list(dir.as_fd()).map_err(|e| io(e.into()))? {
                t.append(
                    dir.as_fd(),
                    &child,
                    &dest.join(&child),
                    Place {
                        dev: st.st_dev,
                        mount: 0,
                    },
                )
                .map_err(io)?;
            }
            continue;
        }
        let (dir, name) = if into_dir || dest.as_os_str().is_empty() {
            (dest.clone(), PathBuf::from(&s.name))
        } else {
            (
                dest.parent().unwrap_or(Path::new("")).to_path_buf(),
                PathBuf::from(dest.file_name().unwrap_or_default()),
            )
        };
        dirs(&mut t, &dir)?;
        let mut file = std::fs::File::open(rootpath::fd_path(&s.fd)).map_err(io)?;
        let st = nix::sys::stat::fstat(file.as_fd()).map_err(|e| io(e.into()))?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(u64::try_from(st.st_size).unwrap_or(0));
        t.builder
            .append_data(&mut h, dir.join(name), &mut file)
            .map_err(io)?;
    }
    t.finish().map_err(io)?.flush().map_err(io)?;
    drop(f);
    let bytes = std::fs::read(out).map_err(io)?;
    Ok((digest_of(&bytes), bytes.len() as i64))
}

/// Where the sources of a COPY/ADD go.
struct CopyPlan {
    sources: Vec<Source>,
    dest: String,
    dir_syntax: bool,
    add: bool,
    opts: ExtractOptions,
    tmp: PathBuf,
}

/// Whether a file is a tar ADD unpacks: gzip'd, or `ustar` at offset 257.
fn archive_kind(f: &mut std::fs::File) -> Option<bool> {
    let mut head = [0u8; 512];
    let n = f.read(&mut head).ok()?;
    let _ = f.rewind();
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        return Some(true);
    }
    (n >= 262 && &head[257..262] == b"ustar").then_some(false)
}

impl CopyPlan {
    fn apply(self, v: &View, container: &str) -> ApiResult<()> {
        let dest = PathBuf::from(&self.dest);
        let existing_dir = rootpath::resolve_in_root(v.root(), &dest, rootpath::Create::Nothing)
            .ok()
            .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
            .is_some_and(|st| Kind::of(&st) == Kind::Dir);
        let many = self.sources.len() > 1;
        if many && !self.dir_syntax && !existing_dir {
            return Err(ApiError::BadRequest(
                "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
            ));
        }
        let mkdir = |p: &Path| -> ApiResult<()> {
            rootpath::resolve_in_root(v.root(), p, rootpath::Create::Dir)
                .map(drop)
                .map_err(|e| crate::rootfs::resolve_error(e, &p.display().to_string(), container))
        };
        let shown = |p: &Path| p.to_string_lossy().into_owned();
        for s in &self.sources {
            let mut tar = tempfile::tempfile_in(&self.tmp).ctx(|| "create a copy file".into())?;
            if s.kind == Kind::Dir {
                mkdir(&dest)?;
                write_source_tar(&s.fd, s.kind, "", &mut tar)?;
                tar.rewind().ctx(|| "rewind".into())?;
                crate::archive::extract(v, tar, &self.dest, container, &self.opts)?;
                continue;
            }
            if self.add && s.kind == Kind::File {
                let mut f = std::fs::File::open(rootpath::fd_path(&s.fd))
                    .ctx(|| format!("open {}", s.name))?;
                if let Some(gz) = archive_kind(&mut f) {
                    mkdir(&dest)?;
                    let input: Box<dyn Read> = if gz {
                        Box::new(flate2::read::GzDecoder::new(f))
                    } else {
                        Box::new(f)
                    };
                    crate::archive::extract(v, input, &self.dest, container, &self.opts)?;
                    continue;
                }
            }
            let (dir, name) = if self.dir_syntax || existing_dir || many {
                (dest.clone(), s.name.clone())
            } else {
                (
                    dest.parent().unwrap_or(Path::new("/")).to_path_buf(),
                    dest.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| s.name.clone()),
                )
            };
            mkdir(&dir)?;
            write_source_tar(&s.fd, s.kind, &name, &mut tar)?;
            tar.rewind().ctx(|| "rewind".into())?;
            crate::archive::extract(v, tar, &shown(&dir), container, &self.opts)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_lists() {
        assert_eq!(go_duration("30s"), Some(30_000_000_000));
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("500ms"), Some(500_000_000));
        assert_eq!(go_duration("5"), None);
        assert_eq!(
            go_list(&["sh".into(), "-c".into(), "echo \"x\"".into()]),
            "[\"sh\" \"-c\" \"echo \\\"x\\\"\"]"
        );
    }

    #[test]
    fn sources_stay_in_the_context() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let ctx = t.path().join("ctx");
        std::fs::create_dir_all(ctx.join("d")).unwrap();
        std::fs::write(ctx.join("a.txt"), "a").unwrap();
        std::fs::write(ctx.join("d/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink(&secret, ctx.join("abs")).unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("rel")).unwrap();
        let (s, sum1) = resolve_sources(&ctx, &["a.txt".into(), "d".into()]).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, Kind::Dir);
        let (s, _) = resolve_sources(&ctx, &["*.txt".into()]).unwrap();
        assert_eq!(s.len(), 1);
        assert!(resolve_sources(&ctx, &["../secret".into()]).is_err());
        // Links resolve inside the context, where there is no such file.
        assert!(resolve_sources(&ctx, &["abs".into()]).is_err());
        assert!(resolve_sources(&ctx, &["rel".into()]).is_err());
        std::fs::write(ctx.join("a.txt"), "changed").unwrap();
        let (_, sum2) = resolve_sources(&ctx, &["a.txt".into(), "d".into()]).unwrap();
        assert_ne!(sum1, sum2);
        let (_, sum3) = resolve_sources(&ctx, &["a.txt".into(), "d".into()]).unwrap();
        assert_eq!(sum2, sum3);
    }
}
