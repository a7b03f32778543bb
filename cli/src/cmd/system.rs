//! `info`, `version`, `events`, `system df` and `system prune`.

use bollard::query_parameters::{PruneContainersOptions, PruneImagesOptions, PruneVolumesOptions};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Value, json};

use super::{filters, i64_at, print, println, str_at, to_value};
use crate::client::{Engine, query};
use crate::error::{CliError, Result};
use crate::streams::JsonLines;
use crate::table::{Format, parse_template, render};
use crate::template::go_json;
use crate::units::{
    ago, bytes_size, human_size, human_size4, parse_timestamp, rfc3339_nanos, short_id,
};

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show docker disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
    /// Display system-wide information
    Info(FormatArg),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Debug, Args)]
pub struct FormatArg {
    /// Format output using a custom template ('json', or a Go template)
    #[arg(short = 'f', long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json', or a Go template)
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

pub async fn system(e: &Engine, c: SystemCommand) -> Result<i32> {
    match c {
        SystemCommand::Df(a) => df(e, a).await,
        SystemCommand::Prune(a) => prune(e, a).await,
        SystemCommand::Info(a) => info(e, a).await,
        SystemCommand::Events(a) => events(e, a).await,
    }
}

fn format_one(format: &str, v: &Value) -> Result<String> {
    if format == "json" {
        return Ok(go_json(v) + "\n");
    }
    let t = parse_template(format)?;
    let mut s = t.render(v).map_err(|e| CliError::Usage(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

pub async fn info(e: &Engine, a: FormatArg) -> Result<i32> {
    let v = to_value(&e.docker.info().await?);
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        print(&format_one(f, &v)?);
        return Ok(0);
    }
    let s = |p: &str| str_at(&v, p);
    let n = |p: &str| i64_at(&v, p);
    let mut out = String::new();
    out.push_str("Client:\n");
    out.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    out.push_str(&format!(" Context:    {}\n", e.endpoint()));
    out.push_str("\nServer:\n");
    out.push_str(&format!(" Containers: {}\n", n("/Containers")));
    out.push_str(&format!("  Running: {}\n", n("/ContainersRunning")));
    out.push_str(&format!("  Paused: {}\n", n("/ContainersPaused")));
    out.push_str(&format!("  Stopped: {}\n", n("/ContainersStopped")));
    out.push_str(&format!(" Images: {}\n", n("/Images")));
    out.push_str(&format!(" Server Version: {}\n", s("/ServerVersion")));
    out.push_str(&format!(" Storage Driver: {}\n", s("/Driver")));
    out.push_str(&format!(" Logging Driver: {}\n", s("/LoggingDriver")));
    out.push_str(&format!(" Cgroup Driver: {}\n", s("/CgroupDriver")));
    out.push_str(&format!(" Cgroup Version: {}\n", s("/CgroupVersion")));
    if let Some(r) = v.get("Runtimes").and_then(Value::as_object) {
        out.push_str(&format!(
            " Runtimes: {}\n",
            r.keys().cloned().collect::<Vec<_>>().join(" ")
        ));
    }
    out.push_str(&format!(" Default Runtime: {}\n", s("/DefaultRuntime")));
    if let Some(so) = v.get("SecurityOptions").and_then(Value::as_array) {
        out.push_str(" Security Options:\n");
        for o in so.iter().filter_map(Value::as_str) {
            for (i, part) in o.split(',').enumerate() {
                let part = part.strip_prefix("name=").unwrap_or(part);
                let (k, val) = part.split_once('=').unwrap_or((part, ""));
                if i == 0 {
                    out.push_str(&format!("  {k}\n"));
                } else {
                    out.push_str(&format!("   {}: {val}\n", title(k)));
                }
            }
        }
    }
    out.push_str(&format!(" Kernel Version: {}\n", s("/KernelVersion")));
    out.push_str(&format!(" Operating System: {}\n", s("/OperatingSystem")));
    out.push_str(&format!(" OSType: {}\n", s("/OSType")));
    out.push_str(&format!(" Architecture: {}\n", s("/Architecture")));
    out.push_str(&format!(" CPUs: {}\n", n("/NCPU")));
    out.push_str(&format!(
        " Total Memory: {}\n",
        bytes_size(n("/MemTotal") as f64)
    ));
    out.push_str(&format!(" Name: {}\n", s("/Name")));
    out.push_str(&format!(" ID: {}\n", s("/ID")));
    out.push_str(&format!(" Docker Root Dir: {}\n", s("/DockerRootDir")));
    out.push_str(&format!(
        " Debug Mode: {}\n",
        v.get("Debug").and_then(Value::as_bool).unwrap_or(false)
    ));
    out.push_str(&format!(
        " Experimental: {}\n",
        v.get("ExperimentalBuild")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    ));
    out.push_str(&format!(
        " Live Restore Enabled: {}\n",
        v.get("LiveRestoreEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    ));
    if let Some(w) = v.get("Warnings").and_then(Value::as_array) {
        for w in w.iter().filter_map(Value::as_str) {
            out.push_str(&format!("{w}\n"));
        }
    }
    print(&out);
    Ok(0)
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `version`: the client's part always; the server's when the daemon answers.
pub async fn version(e: Result<Engine>, a: FormatArg) -> Result<i32> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": e.as_ref().map(Engine::api_version).unwrap_or_default(),
        "DefaultAPIVersion": format!("{}.{}", bollard::API_DEFAULT_VERSION.major_version, bollard::API_DEFAULT_VERSION.minor_version),
        "GoVersion": "",
        "GitCommit": "",
        "BuildTime": "",
        "Os": std::env::consts::OS,
        "Arch": crate::cmd::system::go_arch(),
        "Context": e.as_ref().map(Engine::endpoint).unwrap_or_default(),
    });
    let server = match &e {
        Ok(e) => Some(e.docker.version().await.map(|v| to_value(&v))?),
        Err(_) => None,
    };
    // Go field names, as docker's template sees them (`.Server.APIVersion`).
    let server_v = server.as_ref().map(|s| {
        json!({
            "Platform": s.get("Platform").cloned().unwrap_or(json!({"Name": ""})),
            "Components": s.get("Components").cloned().unwrap_or(json!([])),
            "Version": str_at(s, "/Version"),
            "APIVersion": str_at(s, "/ApiVersion"),
            "MinAPIVersion": str_at(s, "/MinAPIVersion"),
            "GitCommit": str_at(s, "/GitCommit"),
            "GoVersion": str_at(s, "/GoVersion"),
            "Os": str_at(s, "/Os"),
            "Arch": str_at(s, "/Arch"),
            "KernelVersion": str_at(s, "/KernelVersion"),
            "Experimental": s.get("Experimental").cloned().unwrap_or(Value::Bool(false)),
            "BuildTime": str_at(s, "/BuildTime"),
        })
    });
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let v = json!({"Client": client, "Server": server_v.clone().unwrap_or(Value::Null)});
        print(&format_one(f, &v)?);
        return e.map(|_| 0);
    }
    let mut out = String::new();
    out.push_str("Client:\n");
    out.push_str(&format!(
        " Version:           {}\n",
        str_at(&client, "/Version")
    ));
    let api = str_at(&client, "/APIVersion");
    let default_api = str_at(&client, "/DefaultAPIVersion");
    if !api.is_empty() && api != default_api {
        out.push_str(&format!(
            " API version:       {api} (downgraded from {default_api})\n"
        ));
    } else {
        out.push_str(&format!(" API version:       {default_api}\n"));
    }
    out.push_str(&format!(
        " OS/Arch:           {}/{}\n",
        str_at(&client, "/Os"),
        str_at(&client, "/Arch")
    ));
    out.push_str(&format!(
        " Context:           {}\n",
        str_at(&client, "/Context")
    ));
    if let Some(s) = &server_v {
        out.push_str(&format!("\nServer: {}\n", str_at(s, "/Platform/Name")));
        let components = s
            .get("Components")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &components {
            out.push_str(&format!(" {}:\n", str_at(c, "/Name")));
            out.push_str(&format!("  Version:          {}\n", str_at(c, "/Version")));
            if str_at(c, "/Name") == "Engine" {
                out.push_str(&format!(
                    "  API version:      {} (minimum version {})\n",
                    str_at(s, "/APIVersion"),
                    str_at(s, "/MinAPIVersion")
                ));
                out.push_str(&format!(
                    "  OS/Arch:          {}/{}\n",
                    str_at(s, "/Os"),
                    str_at(s, "/Arch")
                ));
                out.push_str(&format!(
                    "  Experimental:     {}\n",
                    str_at(s, "/Experimental")
                ));
            } else if let Some(d) = c.get("Details").and_then(Value::as_object) {
                for (k, v) in d {
                    out.push_str(&format!(
                        "  {:<17} {}\n",
                        format!("{k}:"),
                        v.as_str().unwrap_or("")
                    ));
                }
            }
        }
        if components.is_empty() {
            out.push_str(" Engine:\n");
            out.push_str(&format!("  Version:          {}\n", str_at(s, "/Version")));
            out.push_str(&format!(
                "  API version:      {} (minimum version {})\n",
                str_at(s, "/APIVersion"),
                str_at(s, "/MinAPIVersion")
            ));
        }
    }
    print(&out);
    e.map(|_| 0)
}

pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

pub async fn events(e: &Engine, a: EventsArgs) -> Result<i32> {
    let ts = |s: &Option<String>, what: &str| -> Result<Option<String>> {
        s.as_deref()
            .map(|v| {
                parse_timestamp(v)
                    .ok_or_else(|| CliError::Usage(format!("invalid value for {what}: {v}")))
            })
            .transpose()
    };
    let since = ts(&a.since, "since")?;
    let until = ts(&a.until, "until")?;
    let f = filters(&a.filter)?;
    // {"type":{"container":true}}, as docker encodes filters.
    let fjson = (!f.is_empty()).then(|| {
        let m: serde_json::Map<String, Value> = f
            .iter()
            .map(|(k, vs)| {
                (
                    k.clone(),
                    Value::Object(vs.iter().map(|v| (v.clone(), Value::Bool(true))).collect()),
                )
            })
            .collect();
        Value::Object(m).to_string()
    });
    let mut q: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = since.as_deref() {
        q.push(("since", s));
    }
    if let Some(u) = until.as_deref() {
        q.push(("until", u));
    }
    if let Some(fj) = fjson.as_deref() {
        q.push(("filters", fj));
    }
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(t) => Some(parse_template(t)?),
    };
    let json_out = a.format.as_deref() == Some("json");
    let res = e
        .request_json(Method::GET, &format!("/events{}", query(&q)), None)
        .await?;
    let mut lines = JsonLines::new(res.into_body());
    while let Some(ev) = lines.next().await? {
        let line = if json_out {
            go_json(&ev)
        } else if let Some(t) = &template {
            t.render(&ev).map_err(|e| CliError::Usage(e.to_string()))?
        } else {
            event_line(&ev)
        };
        println(&line);
    }
    Ok(0)
}

/// `2026-11-23T18:45:36.468073951Z container create <id> (image=busybox, name=x)`.
pub fn event_line(ev: &Value) -> String {
    let nanos = ev
        .get("timeNano")
        .and_then(Value::as_i64)
        .map(i128::from)
        .unwrap_or_else(|| i128::from(i64_at(ev, "/time")) * 1_000_000_000);
    let typ = ev.get("Type").and_then(Value::as_str).unwrap_or("");
    let action = ev.get("Action").and_then(Value::as_str).unwrap_or("");
    let id = str_at(ev, "/Actor/ID");
    let mut line = format!("{} {typ} {action} {id}", rfc3339_nanos(nanos));
    if let Some(attrs) = ev.pointer("/Actor/Attributes").and_then(Value::as_object)
        && !attrs.is_empty()
    {
        let parts: Vec<String> = attrs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        line.push_str(&format!(" ({})", parts.join(", ")));
    }
    line
}

/// The 1.41 `/system/df` answer (`LayersSize`, `Images`, `Containers`,
/// `Volumes`, `BuildCache`), read as JSON: bollard's models have the 1.52 shape.
async fn df_raw(e: &Engine) -> Result<Value> {
    let res = e.request_json(Method::GET, "/system/df", None).await?;
    let body = crate::streams::read_all(res.into_body()).await?;
    serde_json::from_slice(&body)
        .map_err(|err| CliError::Other(format!("bad /system/df answer: {err}")))
}

fn arr<'a>(v: &'a Value, k: &str) -> Vec<&'a Value> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn with_pct(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            human_size4(reclaimable as f64),
            reclaimable * 100 / total
        )
    } else {
        human_size4(reclaimable as f64)
    }
}

/// The four summary rows of `system df`, with docker's arithmetic.
pub fn df_rows(d: &Value) -> Vec<Value> {
    let images = arr(d, "Images");
    let layers = i64_at(d, "/LayersSize");
    let used: i64 = images
        .iter()
        .filter(|i| {
            i64_at(i, "/Containers") != 0
                && i64_at(i, "/Size") != -1
                && i64_at(i, "/SharedSize") != -1
        })
        .map(|i| i64_at(i, "/Size") - i64_at(i, "/SharedSize"))
        .sum();
    let containers = arr(d, "Containers");
    let csize: i64 = containers.iter().map(|c| i64_at(c, "/SizeRw")).sum();
    let creclaim: i64 = containers
        .iter()
        .filter(|c| str_at(c, "/State") != "running")
        .map(|c| i64_at(c, "/SizeRw"))
        .sum();
    let volumes = arr(d, "Volumes");
    let vsize: i64 = volumes
        .iter()
        .map(|v| i64_at(v, "/UsageData/Size"))
        .filter(|s| *s > 0)
        .sum();
    let vreclaim: i64 = volumes
        .iter()
        .filter(|v| i64_at(v, "/UsageData/RefCount") == 0)
        .map(|v| i64_at(v, "/UsageData/Size"))
        .filter(|s| *s > 0)
        .sum();
    let cache = arr(d, "BuildCache");
    let bsize: i64 = cache.iter().map(|b| i64_at(b, "/Size")).sum();
    let breclaim: i64 = cache
        .iter()
        .filter(|b| {
            b.get("InUse") != Some(&Value::Bool(true))
                && b.get("Shared") != Some(&Value::Bool(true))
        })
        .map(|b| i64_at(b, "/Size"))
        .sum();
    vec![
        json!({"Type": "Images", "TotalCount": images.len().to_string(),
               "Active": images.iter().filter(|i| i64_at(i, "/Containers") > 0).count().to_string(),
               "Size": human_size4(layers as f64), "Reclaimable": with_pct(layers - used, layers)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(),
               "Active": containers.iter().filter(|c| str_at(c, "/State") == "running").count().to_string(),
               "Size": human_size4(csize as f64), "Reclaimable": with_pct(creclaim, csize)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(),
               "Active": volumes.iter().filter(|v| i64_at(v, "/UsageData/RefCount") > 0).count().to_string(),
               "Size": human_size4(vsize as f64), "Reclaimable": with_pct(vreclaim, vsize)}),
        json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(),
               "Active": cache.iter().filter(|b| b.get("InUse") == Some(&Value::Bool(true))).count().to_string(),
               "Size": human_size4(bsize as f64), "Reclaimable": human_size4(breclaim as f64)}),
    ]
}

const DF_HEADERS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

pub async fn df(e: &Engine, a: DfArgs) -> Result<i32> {
    let d = df_raw(e).await?;
    if !a.verbose {
        let format = Format::parse(
            a.format.as_deref(),
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        )?;
        print(&render(&format, DF_HEADERS, &df_rows(&d))?);
        return Ok(0);
    }
    let mut out = String::from("Images space usage:\n\n");
    let img_rows: Vec<Value> = arr(&d, "Images")
        .into_iter()
        .flat_map(|i| {
            super::images::image_rows(i, true)
                .into_iter()
                .map(move |mut r| {
                    r["SharedSize"] = json!(human_size4(i64_at(i, "/SharedSize").max(0) as f64));
                    r["UniqueSize"] = json!(human_size4(
                        (i64_at(i, "/Size") - i64_at(i, "/SharedSize").max(0)) as f64
                    ));
                    r["Containers"] = json!(i64_at(i, "/Containers").to_string());
                    r
                })
        })
        .collect();
    let f = Format::parse(
        None,
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
    )?;
    out.push_str(&render(
        &f,
        &[
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
            ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("Containers", "CONTAINERS"),
        ],
        &img_rows,
    )?);
    out.push_str("\nContainers space usage:\n\n");
    let c_rows: Vec<Value> = arr(&d, "Containers")
        .into_iter()
        .map(|c| {
            let mut r = super::ps::row(c, true);
            r["Size"] = json!(human_size(i64_at(c, "/SizeRw") as f64));
            r["RunningFor"] = json!(ago(i64_at(c, "/Created")));
            r
        })
        .collect();
    let f = Format::parse(
        None,
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
    )?;
    out.push_str(&render(&f, super::ps::HEADERS, &c_rows)?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    let v_rows: Vec<Value> = arr(&d, "Volumes")
        .into_iter()
        .map(super::volume::row)
        .collect();
    let f = Format::parse(None, "table {{.Name}}\t{{.Links}}\t{{.Size}}")?;
    out.push_str(&render(
        &f,
        &[
            ("Name", "VOLUME NAME"),
            ("Links", "LINKS"),
            ("Size", "SIZE"),
        ],
        &v_rows,
    )?);
    let cache = arr(&d, "BuildCache");
    let bsize: i64 = cache.iter().map(|b| i64_at(b, "/Size")).sum();
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size4(bsize as f64)
    ));
    let b_rows: Vec<Value> = cache
        .iter()
        .map(|b| {
            json!({"ID": short_id(&str_at(b, "/ID")), "CacheType": str_at(b, "/Type"),
                   "Size": human_size(i64_at(b, "/Size") as f64), "CreatedSince": str_at(b, "/CreatedAt"),
                   "LastUsedSince": str_at(b, "/LastUsedAt"), "UsageCount": i64_at(b, "/UsageCount").to_string(),
                   "Shared": b.get("Shared").and_then(Value::as_bool).unwrap_or(false).to_string()})
        })
        .collect();
    let f = Format::parse(
        None,
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
    )?;
    out.push_str(&render(
        &f,
        &[
            ("ID", "CACHE ID"),
            ("CacheType", "CACHE TYPE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("LastUsedSince", "LAST USED"),
            ("UsageCount", "USAGE"),
            ("Shared", "SHARED"),
        ],
        &b_rows,
    )?);
    print(&out);
    Ok(0)
}

pub async fn prune(e: &Engine, a: PruneArgs) -> Result<i32> {
    let mut warning = String::from("WARNING! This will remove:\n  - all stopped containers\n");
    if a.volumes {
        warning.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    warning.push_str(if a.all {
        "  - all images without at least one container associated to them\n  - all build cache\n"
    } else {
        "  - all dangling images\n  - unused build cache\n"
    });
    if !super::confirm(a.force, warning.trim_end()) {
        return Ok(0);
    }
    let f = filters(&a.filter)?;
    let mut reclaimed = 0i64;
    let mut out = String::new();
    let c = e
        .docker
        .prune_containers(Some(PruneContainersOptions {
            filters: (!f.is_empty()).then(|| f.clone()),
        }))
        .await?;
    reclaimed += c.space_reclaimed.unwrap_or(0);
    let deleted = c.containers_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Containers:\n");
        for d in deleted {
            out.push_str(&format!("{d}\n"));
        }
        out.push('\n');
    }
    if a.volumes {
        let v = e
            .docker
            .prune_volumes(Some(PruneVolumesOptions {
                filters: (!f.is_empty()).then(|| f.clone()),
            }))
            .await?;
        reclaimed += v.space_reclaimed.unwrap_or(0);
        let deleted = v.volumes_deleted.unwrap_or_default();
        if !deleted.is_empty() {
            out.push_str("Deleted Volumes:\n");
            for d in deleted {
                out.push_str(&format!("{d}\n"));
            }
            out.push('\n');
        }
    }
    let mut imgf = f.clone();
    imgf.insert("dangling".into(), vec![(!a.all).to_string()]);
    let i = e
        .docker
        .prune_images(Some(PruneImagesOptions {
            filters: Some(imgf),
        }))
        .await?;
    reclaimed += i.space_reclaimed.unwrap_or(0);
    let deleted = i.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for d in deleted {
            if let Some(u) = d.untagged {
                out.push_str(&format!("untagged: {u}\n"));
            }
            if let Some(x) = d.deleted {
                out.push_str(&format!("deleted: {x}\n"));
            }
        }
        out.push('\n');
    }
    // The build cache is the builder's; a daemon without one answers 404.
    match e
        .docker
        .prune_build(Some(bollard::query_parameters::PruneBuildOptions {
            all: Some(a.all),
            ..Default::default()
        }))
        .await
    {
        Ok(b) => {
            reclaimed += b.space_reclaimed.unwrap_or(0);
            let deleted = b.caches_deleted.unwrap_or_default();
            if !deleted.is_empty() {
                out.push_str("Deleted build cache objects:\n");
                for d in deleted {
                    out.push_str(&format!("{d}\n"));
                }
                out.push('\n');
            }
        }
        Err(err) => {
            let err = CliError::from(err);
            if !matches!(err.status(), Some(404) | Some(405) | Some(501)) {
                return Err(err);
            }
        }
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size4(reclaimed as f64)
    ));
    print(&out);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_read_like_docker() {
        let ev = json!({"Type": "container", "Action": "create", "Actor": {"ID": "abc",
                        "Attributes": {"name": "x", "image": "busybox"}}, "timeNano": 1_500_000_000i64});
        assert_eq!(
            event_line(&ev),
            "1970-01-01T00:00:01.500000000Z container create abc (image=busybox, name=x)"
        );
    }

    #[test]
    fn df_summary() {
        let d = json!({"LayersSize": 1000,
            "Images": [{"Containers": 1, "Size": 1000, "SharedSize": 0}],
            "Containers": [{"State": "exited", "SizeRw": 10}, {"State": "running", "SizeRw": 5}],
            "Volumes": [], "BuildCache": null});
        let rows = df_rows(&d);
        assert_eq!(rows[0]["Reclaimable"], "0B (0%)");
        assert_eq!(rows[1]["Active"], "1");
        assert_eq!(rows[1]["Reclaimable"], "10B (66%)");
        assert_eq!(rows[2]["Size"], "0B");
    }
}
