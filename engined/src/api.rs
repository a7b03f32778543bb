//! Endpoint handlers: routing of `/containers`, `/images`, `/exec` and system paths.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerConfig, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    ContainerSummary, ContainerSummaryHostConfig, ExecConfig, ExecInspectResponse, ExecStartConfig,
    ImageSummary, SystemVersion, SystemVersionComponents, SystemVersionPlatform,
};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonlog::Stream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use crate::daemon::{Container, CreateBody, Daemon, ReaderGuard};
use crate::error::{ApiError, ApiResult, Context};
use crate::follow::LogTail;
use crate::server::{
    self, Body, channel_body, json, query, read_json, status, truthy, upgraded_response,
    wants_upgrade,
};
use crate::util;

/// One stdcopy frame: `[stream, 0, 0, 0, len_be32]` + payload.
pub fn frame(stream: Stream, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    });
    b.put_bytes(0, 3);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

pub async fn dispatch(
    d: Arc<Daemon>,
    req: Request<Incoming>,
    method: &Method,
    route: &str,
) -> ApiResult<Response<Body>> {
    let parts: Vec<&str> = route.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Ok(ping(method)),
        (&Method::GET, ["version"]) => version(&d).await,
        (&Method::GET, ["info"]) => Ok(json(StatusCode::OK, &info(&d).await)),
        (&Method::GET, ["events"]) => crate::events::serve(&d, &req),
        (&Method::POST, ["auth"]) => crate::distribution::login(&d, req).await,
        (&Method::GET, ["containers", "json"]) => list_containers(&d, &req).await,
        (&Method::POST, ["containers", "create"]) => create_container(&d, req).await,
        (&Method::POST, ["containers", "prune"]) => crate::prune::containers(&d, &req).await,
        (&Method::POST, ["commit"]) => crate::layerdiff::commit(&d, req).await,
        (&Method::POST, ["build"]) => crate::build::build(d.clone(), req).await,
        (&Method::GET, ["system", "df"]) => crate::prune::df(&d).await,
        (_, ["volumes", rest @ ..]) => crate::volumes::route(&d, req, method, rest).await,
        (_, ["containers", id, rest @ ..]) => container_route(d, req, method, id, rest).await,
        (&Method::POST, ["exec", id, "start"]) => exec_start(d, req, id).await,
        (&Method::POST, ["exec", id, "resize"]) => {
            let q = query(&req);
            let e = d.exec(id)?;
            let c = d.find(&e.container_id)?;
            let (h, w) = size(&q)?;
            d.resize(&c, id, h, w).await?;
            Ok(status(StatusCode::OK))
        }
        (&Method::GET, ["exec", id, "json"]) => exec_inspect(&d, id),
        (&Method::GET, ["images", "json"]) => list_images(&d, &req).await,
        (&Method::POST, ["images", "load"]) => load(&d, req).await,
        (&Method::GET, ["images", "get"]) => {
            let names = crate::save::query_values(req.uri().query(), "names");
            crate::events::saved(&d, &names).await;
            crate::save::save(&d, &names).await
        }
        (&Method::POST, ["images", "create"])
            if !crate::save::query_values(req.uri().query(), "fromSrc").is_empty() =>
        {
            crate::import::import(&d, req).await
        }
        (&Method::POST, ["images", "create"]) => crate::distribution::pull(d, req).await,
        (&Method::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            crate::distribution::push(d.clone(), req, &name.join("/")).await
        }
        (&Method::POST, ["images", "prune"]) => crate::prune::images(&d, &req).await,
        (_, ["images", ..]) if parts.len() >= 2 => image_route(&d, req, method, &parts[1..]).await,
        _ => Err(server::method_not_allowed(method, route)),
    }
}

fn ping(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut r = Response::new(server::full(body));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    if method == Method::HEAD {
        h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    r
}

/// Registries reached over plain HTTP, as dockerd lists them: loopback always, then
/// `--insecure-registry` CIDRs, and host names as index configs.
fn registry_config(insecure: &[String]) -> Value {
    let mut cidrs = vec!["127.0.0.0/8".to_string()];
    let mut index = serde_json::Map::new();
    for r in insecure {
        if r.contains('/') {
            cidrs.push(r.clone());
        } else {
            index.insert(
                r.clone(),
                json!({ "Name": r, "Mirrors": [], "Secure": false, "Official": false }),
            );
        }
    }
    index.insert(
        "docker.io".into(),
        json!({ "Name": "docker.io", "Mirrors": [], "Secure": true, "Official": true }),
    );
    json!({ "AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": cidrs, "IndexConfigs": index, "Mirrors": [] })
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn version(d: &Daemon) -> ApiResult<Response<Body>> {
    let ctrd_version = d
        .ctrd
        .version()
        .version(d.ctrd.req(()))
        .await
        .map(|r| r.into_inner())
        .ok();
    let details = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let kv = kernel_version();
    let mut components = vec![SystemVersionComponents {
        name: "Engine".into(),
        version: server::SERVER_VERSION.into(),
        details: Some(details(&[
            ("ApiVersion", server::API_VERSION),
            ("Arch", crate::sysinfo::go_arch()),
            ("BuildTime", ""),
            ("Experimental", "false"),
            ("GitCommit", env!("CARGO_PKG_VERSION")),
            ("GoVersion", "rust"),
            ("KernelVersion", &kv),
            ("MinAPIVersion", server::MIN_API_VERSION),
            ("Os", "linux"),
        ])),
    }];
    if let Some(v) = &ctrd_version {
        components.push(SystemVersionComponents {
            name: "containerd".into(),
            version: v.version.clone(),
            details: Some(details(&[("GitCommit", &v.revision)])),
        });
    }
    let body = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "engined".into(),
        }),
        components: Some(components),
        version: Some(server::SERVER_VERSION.into()),
        api_version: Some(server::API_VERSION.into()),
        min_api_version: Some(server::MIN_API_VERSION.into()),
        git_commit: Some(env!("CARGO_PKG_VERSION").into()),
        go_version: Some("rust".into()),
        os: Some("linux".into()),
        arch: Some(crate::sysinfo::go_arch().into()),
        kernel_version: Some(kv),
        experimental: Some(false),
        build_time: Some(String::new()),
    };
    Ok(json(StatusCode::OK, &body))
}

fn meminfo_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

async fn info(d: &Daemon) -> Value {
    let all = d.all();
    let running = all.iter().filter(|c| c.running()).count();
    let paused = all
        .iter()
        .filter(|c| c.record().state.status == "paused")
        .count();
    let images = d.images.list().await.len();
    let containerd_commit = d
        .ctrd
        .version()
        .version(d.ctrd.req(()))
        .await
        .map(|r| r.into_inner().revision)
        .unwrap_or_default();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let mut runtimes = serde_json::Map::new();
    // ocirun is the shim's own runtime, found next to the shim.
    runtimes.insert("ocirun".into(), json!({ "path": "ocirun" }));
    runtimes.insert("runc".into(), json!({ "path": "runc" }));
    for r in &d.cfg.add_runtime {
        if let Some((n, p)) = r.split_once('=') {
            runtimes.insert(n.into(), json!({ "path": p }));
        }
    }
    // A path given as --default-runtime is a runtime of its own, as clients expect
    // DefaultRuntime to name one of Runtimes.
    if !runtimes.contains_key(&d.cfg.default_runtime) {
        let name = d.cfg.default_runtime.clone();
        runtimes.insert(name.clone(), json!({ "path": name }));
    }
    json!({
        "ID": crate::sysinfo::engine_id(&d.cfg.data_root),
        "Containers": all.len(),
        "ContainersRunning": running - paused,
        "ContainersPaused": paused,
        "ContainersStopped": all.len() - running,
        "Images": images,
        "Driver": d.ctrd.snapshotter,
        "DriverStatus": [],
        "Plugins": { "Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file"] },
        "MemoryLimit": true,
        "SwapLimit": crate::sysinfo::swap_limit(),
        "CpuCfsPeriod": crate::sysinfo::cpu_cfs(),
        "CpuCfsQuota": crate::sysinfo::cpu_cfs(),
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": cgroup_version == "1",
        "IPv4Forwarding": false,
        "Debug": d.cfg.log_level == "debug",
        "NFd": std::fs::read_dir("/proc/self/fd").map(|r| r.count()).unwrap_or(0),
        "NGoroutines": crate::sysinfo::threads(),
        "SystemTime": common::rfc3339_nanos(std::time::SystemTime::now()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version,
        "NEventsListener": d.events.listeners(),
        "KernelVersion": kernel_version(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": meminfo_total(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(&d.cfg.insecure_registries),
        "DockerRootDir": d.cfg.data_root,
        "Name": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": server::SERVER_VERSION,
        "Runtimes": runtimes,
        "DefaultRuntime": d.cfg.default_runtime,
        "LiveRestoreEnabled": d.cfg.live_restore,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": containerd_commit, "Expected": containerd_commit },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": ["name=seccomp,profile=default"],
        "Warnings": []
    })
}

pub(crate) fn status_text(c: &Container) -> (String, String) {
    let r = c.record();
    let s = &r.state;
    let text = match s.status.as_str() {
        "running" => format!(
            "Up {}",
            util::human_duration(util::now_unix() - util::unix_of(&s.started_at))
        ),
        "paused" => format!(
            "Up {} (Paused)",
            util::human_duration(util::now_unix() - util::unix_of(&s.started_at))
        ),
        "exited" => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            util::human_duration(util::now_unix() - util::unix_of(&s.finished_at))
        ),
        "created" => "Created".into(),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            util::human_duration(util::now_unix() - util::unix_of(&s.finished_at))
        ),
        other => other.to_string(),
    };
    (s.status.clone(), text)
}

/// `filters={"status":{"running":true},"name":{"x":true}}` (or the older list form).
fn parse_filters(q: &HashMap<String, String>) -> ApiResult<HashMap<String, Vec<String>>> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::BadRequest(format!("invalid filter: {e}")))?;
    let mut out = HashMap::new();
    if let Some(m) = v.as_object() {
        for (k, vals) in m {
            let list: Vec<String> = match vals {
                Value::Object(o) => o.keys().cloned().collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            };
            out.insert(k.clone(), list);
        }
    }
    Ok(out)
}

fn matches_filters(c: &Container, f: &HashMap<String, Vec<String>>) -> ApiResult<bool> {
    let r = c.record();
    for (k, vals) in f {
        let ok = match k.as_str() {
            "status" => vals.contains(&r.state.status),
            "name" => vals
                .iter()
                .any(|v| r.name.contains(v.trim_start_matches('/'))),
            "id" => vals.iter().any(|v| r.id.starts_with(v)),
            "label" => vals.iter().all(|v| {
                let labels = r.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v),
                }
            }),
            "ancestor" => vals.iter().any(|v| {
                *v == r.image
                    || r.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }),
            "exited" => vals.iter().any(|v| {
                r.state.status == "exited" && v.parse::<i64>().ok() == Some(r.state.exit_code)
            }),
            other => {
                return Err(ApiError::BadRequest(format!("invalid filter '{other}'")));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list_containers(d: &Daemon, req: &Request<Incoming>) -> ApiResult<Response<Body>> {
    let q = query(req);
    let all = truthy(&q, "all");
    let filters = parse_filters(&q)?;
    let with_size = truthy(&q, "size");
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|n| *n > 0);
    let mut list: Vec<Arc<Container>> = d.all();
    list.sort_by_key(|c| std::cmp::Reverse(c.record().created));
    let mut out = Vec::new();
    for c in list {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        let shown = c.running() || c.status() == "restarting";
        if !all && !shown && !filters.contains_key("status") {
            continue;
        }
        if !matches_filters(&c, &filters)? {
            continue;
        }
        let (size_rw, size_root_fs) = if with_size {
            let (rw, root) = d.sizes(&c).await;
            (Some(rw), Some(root))
        } else {
            (None, None)
        };
        let r = c.record();
        let (state, status_text) = status_text(&c);
        let mut command = vec![r.path.clone()];
        command.extend(r.args.iter().cloned());
        out.push(ContainerSummary {
            id: Some(r.id.clone()),
            names: Some(vec![format!("/{}", r.name)]),
            image: Some(r.image.clone()),
            image_id: Some(r.image_id.clone()),
            command: Some(command.join(" ")),
            created: Some(util::unix_of(&r.created)),
            ports: Some(vec![]),
            labels: r.config.labels.clone(),
            state: serde_json::from_value(json!(state)).ok(),
            status: Some(status_text),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: r.host_config.network_mode.clone(),
                ..Default::default()
            }),
            mounts: Some(vec![]),
            size_rw,
            size_root_fs,
            ..Default::default()
        });
    }
    Ok(json(StatusCode::OK, &out))
}

async fn create_container(d: &Daemon, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let body: CreateBody = read_json(req).await?.ok_or_else(|| {
        ApiError::BadRequest("Config cannot be empty in order to create a container".into())
    })?;
    let id = d.create(q.get("name").cloned(), body).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "Id": id, "Warnings": [] }),
    ))
}

fn size(q: &HashMap<String, String>) -> ApiResult<(u32, u32)> {
    let get = |k: &str| -> ApiResult<u32> {
        q.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::BadRequest(format!("invalid or missing {k}")))
    };
    Ok((get("h")?, get("w")?))
}

async fn container_route(
    d: Arc<Daemon>,
    req: Request<Incoming>,
    method: &Method,
    id: &str,
    rest: &[&str],
) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let c = d.find(id)?;
    match (method, rest) {
        (&Method::GET, ["json"]) => Ok(json(StatusCode::OK, &inspect(&d, &c))),
        (&Method::POST, ["start"]) => {
            d.start(&c).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["stop"]) => {
            let t = q.get("t").and_then(|t| t.parse().ok());
            d.stop(&c, t).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["restart"]) => {
            let t = q.get("t").and_then(|t| t.parse().ok());
            d.restart(&c, t).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["kill"]) => {
            d.kill(&c, q.get("signal").map_or("SIGKILL", String::as_str))
                .await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["wait"]) => wait(&c, q.get("condition").map_or("", String::as_str)),
        (&Method::POST, ["resize"]) => {
            let (h, w) = size(&q)?;
            d.resize(&c, "", h, w).await?;
            Ok(status(StatusCode::OK))
        }
        (&Method::POST, ["pause"]) => {
            d.pause(&c).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["unpause"]) => {
            d.unpause(&c).await?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::GET, ["top"]) => {
            if !c.running() {
                return Err(ApiError::Conflict(format!(
                    "Container {} is not running",
                    c.id
                )));
            }
            let pids = d.pids(&c).await?;
            let args = q.get("ps_args").map_or("-ef", String::as_str);
            Ok(json(StatusCode::OK, &crate::top::run(args, &pids).await?))
        }
        (&Method::GET, ["stats"]) => stats(d.clone(), c, &q),
        (&Method::POST, ["rename"]) => {
            d.rename(&c, q.get("name").map_or("", String::as_str))?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::POST, ["attach"]) => attach(d.clone(), req, c, &q),
        (&Method::GET, ["logs"]) => logs(c, &q).await,
        (&Method::POST, ["exec"]) => {
            let cfg: ExecConfig = read_json(req)
                .await?
                .ok_or_else(|| ApiError::BadRequest("exec config cannot be empty".into()))?;
            let id = d.exec_create(&c, cfg)?;
            Ok(json(StatusCode::CREATED, &json!({ "Id": id })))
        }
        (&Method::DELETE, []) => {
            d.remove(&c, truthy(&q, "force")).await?;
            if truthy(&q, "v") {
                crate::volumes::remove_anonymous_of(&d, &c.id);
            }
            Ok(status(StatusCode::NO_CONTENT))
        }
        (&Method::HEAD | &Method::GET | &Method::PUT, ["archive"]) => {
            crate::archive::route(d.clone(), req, c).await
        }
        (&Method::GET, ["export"]) => crate::archive::export(d.clone(), c).await,
        (&Method::GET, ["changes"]) => crate::layerdiff::changes(&d, &c).await,
        _ => Err(server::method_not_allowed(
            method,
            &format!("/containers/{id}/{}", rest.join("/")),
        )),
    }
}

fn inspect(d: &Daemon, c: &Container) -> ContainerInspectResponse {
    let r = c.record();
    let s = &r.state;
    let dir = d.cfg.data_root.join("containers").join(&r.id);
    let status: ContainerStateStatusEnum =
        serde_json::from_value(json!(s.status)).unwrap_or(ContainerStateStatusEnum::EMPTY);
    let config: ContainerConfig = r.config.clone();
    ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: Some(r.created.clone()),
        path: Some(r.path.clone()),
        args: Some(r.args.clone()),
        state: Some(ContainerState {
            status: Some(status),
            running: Some(s.running()),
            paused: Some(s.status == "paused"),
            restarting: Some(false),
            oom_killed: Some(false),
            dead: Some(false),
            pid: Some(s.pid),
            exit_code: Some(s.exit_code),
            error: Some(s.error.clone()),
            started_at: Some(if s.started_at.is_empty() {
                "0001-01-01T00:00:00Z".into()
            } else {
                s.started_at.clone()
            }),
            finished_at: Some(if s.finished_at.is_empty() {
                "0001-01-01T00:00:00Z".into()
            } else {
                s.finished_at.clone()
            }),
            health: None,
        }),
        image: Some(r.image_id.clone()),
        resolv_conf_path: Some(dir.join("resolv.conf").to_string_lossy().into_owned()),
        hostname_path: Some(dir.join("hostname").to_string_lossy().into_owned()),
        hosts_path: Some(dir.join("hosts").to_string_lossy().into_owned()),
        log_path: Some(r.log_path.to_string_lossy().into_owned()),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(r.restart_count),
        driver: Some(d.ctrd.snapshotter.clone()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        host_config: Some(crate::clientcompat::inspect_host_config(
            r.host_config.clone(),
        )),
        mounts: Some(crate::volumes::mount_points(d, &r)),
        config: Some(config),
        ..Default::default()
    }
}

/// Answers at once with the headers (the CLI starts the container only after it
/// has them), then the status line when the condition is met.
fn wait(c: &Arc<Container>, condition: &str) -> ApiResult<Response<Body>> {
    let mut rx = c.subscribe_life();
    let start = *rx.borrow();
    let condition = match condition {
        "" | "not-running" => "not-running",
        "next-exit" | "removed" => condition,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid condition: {other:?}"
            )));
        }
    };
    let (tx, body_rx) = mpsc::channel::<Bytes>(1);
    let c = c.clone();
    let condition = condition.to_string();
    tokio::spawn(async move {
        let done = async {
            match condition.as_str() {
                "not-running" if !start.running => Some(start.exit_code),
                "removed" => rx.wait_for(|l| l.removed).await.ok().map(|l| l.exit_code),
                _ => rx
                    .wait_for(|l| l.exits > start.exits)
                    .await
                    .ok()
                    .map(|l| l.exit_code),
            }
        };
        let code = tokio::select! {
            code = done => code,
            _ = tx.closed() => None,
        };
        drop(c);
        if let Some(code) = code {
            let line = format!("{{\"Error\":null,\"StatusCode\":{code}}}\n");
            let _ = tx.send(Bytes::from(line)).await;
        }
    });
    let mut r = Response::new(channel_body(body_rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// One object (`stream=0`; with `one-shot=1` no second sample for precpu) or one
/// per second until the client goes or the container stops.
fn stats(
    d: Arc<Daemon>,
    c: Arc<Container>,
    q: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    let stream = q
        .get("stream")
        .is_none_or(|v| truthy(q, "stream") || v.is_empty());
    let one_shot = truthy(q, "one-shot");
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let line = |v: &Value| {
            let mut b = serde_json::to_vec(v).unwrap_or_default();
            b.push(b'\n');
            Bytes::from(b)
        };
        let zero_time = "0001-01-01T00:00:00Z".to_string();
        let mut pre: Option<(Value, String)> = None;
        if !stream && !one_shot && c.running() {
            // A first sample, so that precpu_stats gives the CLI a CPU percentage.
            let first = d.stats_sample(&c).await;
            pre = Some((first, common::rfc3339_nanos(std::time::SystemTime::now())));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        loop {
            let now = d.stats_sample(&c).await;
            let read = common::rfc3339_nanos(std::time::SystemTime::now());
            let (pre_v, pre_t) = match &pre {
                Some((v, t)) => (Some(v), t.clone()),
                None => (None, zero_time.clone()),
            };
            let v = crate::stats::compose(&now, pre_v, &read, &pre_t, &c.name(), &c.id);
            if tx.send(line(&v)).await.is_err() || !stream || !c.running() {
                return;
            }
            pre = Some((now, read));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// How log entries go to one client: which streams and times, stdcopy frames
/// (non-tty) or raw bytes (tty), with or without time stamps.
#[derive(Debug, Clone, Copy)]
struct Render {
    tty: bool,
    timestamps: bool,
    stdout: bool,
    stderr: bool,
    since: Option<i128>,
    until: Option<i128>,
}

impl Render {
    fn keep(&self, e: &jsonlog::Entry) -> bool {
        let stream_ok = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if !stream_ok {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let t = e.time_nanos();
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }

    fn bytes(&self, e: &jsonlog::Entry) -> Bytes {
        let mut payload = Vec::with_capacity(e.log.len() + 40);
        if self.timestamps {
            payload.extend_from_slice(e.time.as_bytes());
            payload.push(b' ');
        }
        payload.extend_from_slice(e.log.as_bytes());
        if self.tty {
            Bytes::from(payload)
        } else {
            frame(e.stream, &payload)
        }
    }
}

/// The log's past: every entry of the rotated files and the live one, and the
/// offset in the live file where a follower goes on.
fn read_past(rec: &crate::daemon::Record) -> ApiResult<(Vec<jsonlog::Entry>, u64)> {
    let max_file = rec
        .host_config
        .log_config
        .as_ref()
        .and_then(|l| l.config.as_ref())
        .and_then(|o| o.get("max-file"))
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(1);
    let path = &rec.log_path;
    let mut entries = Vec::new();
    for n in (1..max_file.max(1)).rev() {
        let p = jsonlog::rotated(path, n);
        if p.exists() {
            jsonlog::read_file(&p, 0, &mut entries).ctx(|| "read the log".into())?;
        }
    }
    let offset = if path.exists() {
        jsonlog::read_file(path, 0, &mut entries).ctx(|| "read the log".into())?
    } else {
        0
    };
    Ok((entries, offset))
}

/// Sends what the shim appends to the log until the run that `exits` counts up to
/// has ended (the exit is recorded only once the shim has written its last output)
/// or the client has gone.
async fn follow_log(
    c: Arc<Container>,
    guard: ReaderGuard,
    mut tail: LogTail,
    render: Render,
    exits: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let mut life = c.subscribe_life();
    let mut guard = Some(guard);
    loop {
        let ended = {
            let l = *life.borrow_and_update();
            l.exits > exits || l.removed
        };
        let new = tail.read_new();
        if ended {
            // Read to the end: the log may go now (`--rm`).
            guard.take();
        }
        for e in new {
            if render.keep(&e) && tx.send(render.bytes(&e)).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        tokio::select! {
            _ = tail.changed() => {}
            r = life.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// `detachKeys` (`ctrl-p,ctrl-q` by default): the bytes that end an attach with
/// stdin and leave the container running.
fn detach_keys(spec: Option<&str>) -> ApiResult<Vec<u8>> {
    let spec = spec.filter(|s| !s.is_empty()).unwrap_or("ctrl-p,ctrl-q");
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let b = match c.as_bytes() {
                    [b @ b'a'..=b'z'] => b - b'a' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid detach keys ({spec}) provided"
                        )));
                    }
                };
                Ok(b)
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(ApiError::BadRequest(format!(
                    "Invalid detach keys ({spec}) provided"
                )))
            }
        })
        .collect()
}

/// Finds a detach sequence in stdin. Bytes that might start one are held back
/// until the next ones tell.
#[derive(Debug)]
struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// The bytes to forward, and whether the sequence was typed.
    fn scan(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

fn attach(
    d: Arc<Daemon>,
    mut req: Request<Incoming>,
    c: Arc<Container>,
    q: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    if !wants_upgrade(&req) {
        return Err(ApiError::BadRequest(
            "attach needs a connection upgrade (Upgrade: tcp)".into(),
        ));
    }
    let rec = c.record();
    d.events.container(&rec, "attach", &[]);
    let with_logs = truthy(q, "logs");
    let live = truthy(q, "stream");
    // A created or exited container is attached to for its next run (`docker
    // start -a`); the CLI itself refuses `docker attach` to a stopped one.
    match rec.state.status.as_str() {
        "paused" => {
            return Err(ApiError::Conflict(format!(
                "container {} is paused, unpause the container before attach",
                c.id
            )));
        }
        "restarting" => {
            return Err(ApiError::Conflict(format!(
                "container {} is restarting, wait until the container is running",
                c.id
            )));
        }
        _ => {}
    }
    let tty = rec.config.tty.unwrap_or(false);
    let want_stdin = truthy(q, "stdin") && rec.config.open_stdin.unwrap_or(false);
    let stdin_once = rec.config.stdin_once.unwrap_or(false);
    let render = Render {
        tty,
        timestamps: false,
        stdout: truthy(q, "stdout"),
        stderr: truthy(q, "stderr"),
        since: None,
        until: None,
    };
    let keys = detach_keys(q.get("detachKeys").map(String::as_str))?;
    // Where the stream starts is fixed now, before the start that usually follows.
    let exits = c.life().exits;
    let guard = c.reader();
    let (past, tail) = if with_logs {
        let (entries, offset) = read_past(&rec)?;
        (entries, LogTail::from_offset(&rec.log_path, offset))
    } else {
        (Vec::new(), LogTail::from_end(&rec.log_path))
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "attach upgrade failed");
                return;
            }
        };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
        let c2 = c.clone();
        let mut started = c.subscribe_life();
        // The CLI half-closes its side at once when it has no stdin to send, so EOF
        // here says nothing about the client being gone; failed writes do.
        tokio::spawn(async move {
            // `docker run -i` attaches before the start that opens the container's
            // stdin: leave the input in the socket until then.
            if want_stdin
                && started
                    .wait_for(|l| l.running || l.exits > exits || l.removed)
                    .await
                    .is_err()
            {
                return;
            }
            // As dockerd: detach keys are read on a terminal only.
            let mut scanner = tty.then_some(DetachScanner { keys, matched: 0 });
            let mut buf = vec![0u8; 8192];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if want_stdin => {
                        let (data, detach) = match scanner.as_mut() {
                            Some(s) => s.scan(&buf[..n]),
                            None => (buf[..n].to_vec(), false),
                        };
                        if !data.is_empty() && !c2.write_stdin(&data).await {
                            break;
                        }
                        if detach {
                            let _ = detached_tx.send(());
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
            if want_stdin && stdin_once {
                c2.close_stdin().await;
                d.close_io(&c2.id, "").await;
            }
        });
        for e in past.iter().filter(|e| render.keep(e)) {
            if wr.write_all(&render.bytes(e)).await.is_err() {
                return;
            }
        }
        if live {
            let (tx, mut rx) = mpsc::channel::<Bytes>(64);
            tokio::spawn(follow_log(c.clone(), guard, tail, render, exits, tx));
            // The stdin side ending without a detach (EOF from the client) drops
            // the sender: that is no reason to stop the output.
            let mut stdin_open = true;
            loop {
                tokio::select! {
                    chunk = rx.recv() => match chunk {
                        Some(b) => if wr.write_all(&b).await.is_err() { break },
                        None => break,
                    },
                    r = &mut detached, if stdin_open => {
                        if r.is_ok() {
                            break;
                        }
                        stdin_open = false;
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    Ok(upgraded_response(!tty))
}

async fn logs(c: Arc<Container>, q: &HashMap<String, String>) -> ApiResult<Response<Body>> {
    let rec = c.record();
    let want_out = truthy(q, "stdout");
    let want_err = truthy(q, "stderr");
    if !want_out && !want_err {
        return Err(ApiError::BadRequest(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let follow = truthy(q, "follow");
    let parse_t = |k: &str| -> ApiResult<Option<i128>> {
        match q.get(k).filter(|v| !v.is_empty() && v.as_str() != "0") {
            None => Ok(None),
            Some(v) => {
                let (s, n) = v.split_once('.').unwrap_or((v, "0"));
                let s: i128 = s
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid {k}: {v}")))?;
                let mut n = n.to_string();
                n.truncate(9);
                while n.len() < 9 {
                    n.push('0');
                }
                let n: i128 = n
                    .parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid {k}: {v}")))?;
                Ok(Some(s * 1_000_000_000 + n))
            }
        }
    };
    let render = Render {
        tty: rec.config.tty.unwrap_or(false),
        timestamps: truthy(q, "timestamps"),
        stdout: want_out,
        stderr: want_err,
        since: parse_t("since")?,
        until: parse_t("until")?,
    };
    let tail: Option<usize> = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid tail: {t}")))?
                .max(0) as usize,
        ),
    };
    // The exit count first: a run that ends after this is followed to its end.
    let exits = c.life().exits;
    let running = c.running();
    let (entries, offset) = read_past(&rec)?;
    let mut selected: Vec<&jsonlog::Entry> = entries.iter().filter(|e| render.keep(e)).collect();
    if let Some(t) = tail {
        let skip = selected.len().saturating_sub(t);
        selected.drain(..skip);
    }
    let mut initial = BytesMut::new();
    for e in selected {
        initial.extend_from_slice(&render.bytes(e));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let initial = initial.freeze();
    let follow = follow && running && render.until.is_none();
    let log_path = rec.log_path.clone();
    let guard = follow.then(|| c.reader());
    tokio::spawn(async move {
        if !initial.is_empty() && tx.send(initial).await.is_err() {
            return;
        }
        if let Some(guard) = guard {
            let tail = LogTail::from_offset(&log_path, offset);
            follow_log(c, guard, tail, render, exits, tx).await;
        }
    });
    Ok(Response::new(channel_body(rx)))
}

async fn exec_start(
    d: Arc<Daemon>,
    mut req: Request<Incoming>,
    id: &str,
) -> ApiResult<Response<Body>> {
    let e = d.exec(id)?;
    let upgrade = wants_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let start: ExecStartConfig = read_json(req).await?.unwrap_or_default();
    let tty = e.config.tty.unwrap_or(false);
    let detach = start.detach.unwrap_or(false);
    // Without a terminal the process starts once the connection is hijacked, as
    // dockerd does: output that came with the 101 in one read is lost to clients
    // that read the raw socket after parsing the headers (docker-py's exec_run).
    // A terminal's process starts first, so the client's resize right after the
    // 101 finds it.
    let start_after_upgrade = on_upgrade.is_some() && !detach && !tty;
    let started = if start_after_upgrade {
        let c = d.find(&e.container_id)?;
        if !c.running() {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if e.state().started {
            return Err(ApiError::Conflict(format!(
                "Error: Exec command {} has already run",
                e.id
            )));
        }
        None
    } else {
        Some(d.exec_start(&e).await?)
    };
    if detach || on_upgrade.is_none() {
        let Some((fifos, _)) = started else {
            return Ok(status(StatusCode::OK));
        };
        let crate::daemon::Fifos {
            stdin,
            stdout,
            stderr,
            ..
        } = fifos;
        // Nobody reads the output: drain it so the process never blocks on a pipe.
        drop(stdin);
        for mut rx in std::iter::once(stdout).chain(stderr) {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while matches!(rx.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        return Ok(status(StatusCode::OK));
    }
    let Some(on_upgrade) = on_upgrade else {
        return Ok(status(StatusCode::OK));
    };
    let attach_out = e.config.attach_stdout.unwrap_or(true);
    let attach_err = e.config.attach_stderr.unwrap_or(true);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(err) => {
                debug!(error = %err, "exec upgrade failed");
                return;
            }
        };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        let (fifos, exit) = match started {
            Some(s) => s,
            None => match d.exec_start(&e).await {
                Ok(s) => s,
                Err(err) => {
                    // The 101 is out: the error can only go into the stream, and the
                    // exit code the client asks for next says it did not run.
                    {
                        let mut st = e
                            .state
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        st.exit_code.get_or_insert(126);
                        st.running = false;
                    }
                    let _ = wr
                        .write_all(&frame(Stream::Stderr, format!("{err}\n").as_bytes()))
                        .await;
                    let _ = wr.shutdown().await;
                    return;
                }
            },
        };
        let crate::daemon::Fifos {
            stdin,
            stdout,
            stderr,
            ..
        } = fifos;
        if let Some(mut w) = stdin {
            let (d, cid, eid) = (d.clone(), e.container_id.clone(), e.id.clone());
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut rd, &mut w).await;
                // The client half-closed after its own stdin ended: the process
                // gets its EOF.
                drop(w);
                d.close_io(&cid, &eid).await;
            });
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        for (mut pipe, stream, wanted) in std::iter::once((stdout, Stream::Stdout, attach_out))
            .chain(stderr.map(|e| (e, Stream::Stderr, attach_err)))
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match pipe.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) if wanted => {
                            let b = if tty {
                                Bytes::copy_from_slice(&buf[..n])
                            } else {
                                frame(stream, &buf[..n])
                            };
                            if tx.send(b).await.is_err() {
                                // Keep draining so the process does not block.
                                while matches!(pipe.read(&mut buf).await, Ok(n) if n > 0) {}
                                break;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
        drop(tx);
        let mut alive = true;
        while let Some(b) = rx.recv().await {
            if alive && wr.write_all(&b).await.is_err() {
                alive = false;
            }
        }
        // The exit code must be recorded before the client sees the stream end: it
        // asks for it right after.
        let _ = tokio::time::timeout(Duration::from_secs(10), exit).await;
        let _ = wr.shutdown().await;
    });
    Ok(upgraded_response(!tty))
}

fn exec_inspect(d: &Daemon, id: &str) -> ApiResult<Response<Body>> {
    let e = d.exec(id)?;
    let st = e.state();
    let body = ExecInspectResponse {
        id: Some(e.id.clone()),
        running: Some(st.running),
        exit_code: st.exit_code,
        open_stdin: e.config.attach_stdin,
        open_stdout: e.config.attach_stdout,
        open_stderr: e.config.attach_stderr,
        container_id: Some(e.container_id.clone()),
        pid: Some(st.pid),
        can_remove: Some(false),
        detach_keys: Some(String::new()),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&body).unwrap_or_default();
    // Docker sends `"ExitCode": null` while the process runs.
    if st.exit_code.is_none() {
        v["ExitCode"] = Value::Null;
    }
    v["ProcessConfig"] = json!({
        "tty": e.config.tty.unwrap_or(false),
        "entrypoint": e.config.cmd.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default(),
        "arguments": e.config.cmd.as_ref().map(|c| c[1..].to_vec()).unwrap_or_default(),
        "privileged": e.config.privileged.unwrap_or(false),
        "user": e.config.user.clone().unwrap_or_default(),
    });
    Ok(json(StatusCode::OK, &v))
}

async fn list_images(d: &Daemon, req: &Request<Incoming>) -> ApiResult<Response<Body>> {
    // `docker images -f dangling=true` (and `images prune`'s preview) relies on it.
    let f = crate::filters::Filters::parse(query(req).get("filters").map(String::as_str))?;
    let dangling = f.boolean("dangling")?;
    let mut out = Vec::new();
    for i in d.images.list().await {
        let tags = i.repo_tags();
        if dangling.is_some_and(|want| want != tags.is_empty()) {
            continue;
        }
        out.push(ImageSummary {
            id: i.id.clone(),
            parent_id: String::new(),
            repo_tags: tags,
            repo_digests: vec![],
            created: i.created_unix(),
            size: i.size,
            shared_size: -1,
            labels: HashMap::new(),
            containers: -1,
            ..Default::default()
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.created));
    Ok(json(StatusCode::OK, &out))
}

async fn load(d: &Daemon, req: Request<Incoming>) -> ApiResult<Response<Body>> {
    use http_body_util::BodyExt;
    let q = query(&req);
    let _quiet = truthy(&q, "quiet");
    let tmp = tempfile::NamedTempFile::new_in(d.cfg.data_root.join("tmp"))
        .ctx(|| "create a spool file".into())?;
    let mut file = tokio::fs::File::from_std(tmp.reopen().ctx(|| "open the spool file".into())?);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        if let Some(data) = frame.data_ref() {
            file.write_all(data)
                .await
                .ctx(|| "spool the upload".into())?;
        }
    }
    file.flush().await.ctx(|| "spool the upload".into())?;
    drop(file);
    let loaded = d.images.load(tmp.path()).await;
    let mut out = Vec::new();
    match loaded {
        Ok(names) => {
            crate::events::loaded(d, &names).await;
            for n in names {
                out.extend_from_slice(
                    serde_json::to_string(&json!({ "stream": format!("{n}\n") }))
                        .unwrap_or_default()
                        .as_bytes(),
                );
                out.push(b'\n');
            }
        }
        // Errors after the 200 travel inside the JSON-lines stream.
        Err(e) => {
            let msg = e.to_string();
            out.extend_from_slice(
                json!({ "errorDetail": { "message": msg }, "error": msg })
                    .to_string()
                    .as_bytes(),
            );
            out.push(b'\n');
        }
    }
    let mut r = Response::new(server::full(out));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `/images/{name...}/json|tag|history` and `DELETE /images/{name...}`; names can
/// contain `/` and `:`, so the action is matched as the suffix.
async fn image_route(
    d: &Daemon,
    req: Request<Incoming>,
    method: &Method,
    parts: &[&str],
) -> ApiResult<Response<Body>> {
    let q = query(&req);
    let last = parts.last().copied().unwrap_or("");
    let name_of = |n: usize| parts[..parts.len() - n].join("/");
    match (method, last) {
        (&Method::GET, "json") if parts.len() > 1 => {
            let name = name_of(1);
            let i = d.images.lookup(&name).await.ok_or_else(|| {
                ApiError::NotFound(format!("no such image: {name}: No such image: {name}"))
            })?;
            Ok(json(StatusCode::OK, &image_inspect(&i)))
        }
        (&Method::POST, "tag") if parts.len() > 1 => {
            let name = name_of(1);
            let repo = q.get("repo").cloned().unwrap_or_default();
            let tag = q.get("tag").cloned().filter(|t| !t.is_empty());
            let target = match tag {
                Some(t) => format!("{repo}:{t}"),
                None => repo,
            };
            d.images.tag(&name, &target).await?;
            crate::events::tagged(d, &name, &target).await;
            Ok(status(StatusCode::CREATED))
        }
        (&Method::GET, "history") if parts.len() > 1 => {
            let name = name_of(1);
            let i = d
                .images
                .lookup(&name)
                .await
                .ok_or_else(|| ApiError::NotFound(format!("No such image: {name}")))?;
            Ok(json(StatusCode::OK, &crate::images::history(&i)))
        }
        (&Method::GET, "get") if parts.len() > 1 => {
            crate::events::saved(d, &[name_of(1)]).await;
            crate::save::save(d, &[name_of(1)]).await
        }
        (&Method::DELETE, _) => {
            let name = parts.join("/");
            let force = truthy(&q, "force");
            let id = d.images.lookup(&name).await.map(|i| i.id);
            let items = d.images.remove(&name, force, |id| d.image_user(id)).await?;
            crate::events::removed(d, id.as_deref().unwrap_or(""), &items);
            Ok(json(StatusCode::OK, &items))
        }
        _ => Err(server::method_not_allowed(
            method,
            &format!("/images/{}", parts.join("/")),
        )),
    }
}

fn image_inspect(i: &crate::images::ImageInfo) -> Value {
    let c = &i.config;
    json!({
        "Id": i.id,
        "RepoTags": i.repo_tags(),
        "RepoDigests": [],
        "Parent": "",
        "Comment": c["comment"].as_str().unwrap_or(""),
        "Created": i.created(),
        "Container": "",
        "ContainerConfig": c["container_config"],
        "DockerVersion": c["docker_version"].as_str().unwrap_or(""),
        "Author": c["author"].as_str().unwrap_or(""),
        "Config": c["config"],
        "Architecture": c["architecture"],
        "Os": c["os"],
        "Size": i.size,
        "VirtualSize": i.size,
        "GraphDriver": { "Name": "overlayfs", "Data": null },
        "RootFS": { "Type": "layers", "Layers": c["rootfs"]["diff_ids"] },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_match_across_reads() {
        assert_eq!(detach_keys(None).unwrap(), vec![16, 17]);
        assert_eq!(detach_keys(Some("ctrl-x,a")).unwrap(), vec![24, b'a']);
        assert!(detach_keys(Some("ctrl-1")).is_err());
        assert!(detach_keys(Some("abc")).is_err());
        let mut s = DetachScanner {
            keys: vec![16, 17],
            matched: 0,
        };
        assert_eq!(s.scan(b"ab\x10"), (b"ab".to_vec(), false));
        // A ^P that is not followed by ^Q goes through after all.
        assert_eq!(s.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.scan(b"\x10"), (vec![], false));
        assert_eq!(s.scan(b"\x11rest"), (vec![], true));
    }

    #[test]
    fn frames_like_stdcopy() {
        assert_eq!(
            frame(Stream::Stdout, b"hi\n").as_ref(),
            b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
        );
        assert_eq!(
            frame(Stream::Stderr, b"e\n").as_ref(),
            b"\x02\x00\x00\x00\x00\x00\x00\x02e\n"
        );
    }
}
