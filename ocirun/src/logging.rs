//! Logs in runc's formats: JSON lines `{"level","msg","time"}` (what containerd's
//! go-runc reads back from `--log` to show why a runtime call failed) or logrus-style
//! text. One line per event, appended, so processes forked after setup can share the file.
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

struct RuncLog {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
}

#[derive(Default)]
struct Message {
    msg: String,
    fields: Vec<(String, String)>,
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for RuncLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message::default();
        event.record(&mut m);
        let mut msg = m.msg;
        for (k, v) in &m.fields {
            msg.push_str(&format!(" {k}={v}"));
        }
        let time = common::rfc3339_nanos(SystemTime::now());
        let level = level_name(event.metadata().level());
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Installs the global subscriber. Errors opening the log file fall back to stderr,
/// since a runtime that cannot log must still run.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) {
    let out: Box<dyn Write + Send> = match log {
        Some(p) => match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Box::new(f),
            Err(_) => Box::new(std::io::stderr()),
        },
        None => Box::new(std::io::stderr()),
    };
    let min = if debug { Level::DEBUG } else { Level::WARN };
    let layer = RuncLog {
        out: Mutex::new(out),
        json: format == LogFormat::Json,
    }
    .with_filter(tracing_subscriber::filter::LevelFilter::from_level(min));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Logs the final error at error level (to --log, where containerd looks for it).
pub fn log_error(msg: &str) {
    tracing::error!("{msg}");
}
