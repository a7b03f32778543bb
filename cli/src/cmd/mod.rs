//! One module per group of commands; helpers they share.

pub mod build;
pub mod container;
pub mod cp;
pub mod exec;
pub mod images;
pub mod login;
pub mod logs;
pub mod ps;
pub mod run;
pub mod stats;
pub mod system;
pub mod volume;

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, Result};

/// A typed API answer as JSON, keyed as the API names its fields.
pub fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The string at a JSON pointer ("" when missing).
pub fn str_at(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

pub fn i64_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr)
        .and_then(|x| x.as_i64().or_else(|| x.as_f64().map(|f| f as i64)))
        .unwrap_or(0)
}

pub fn print(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

pub fn println(s: &str) {
    print(&format!("{s}\n"));
}

/// Runs `f` for each name as docker's multi-container commands do: the name on
/// success, the error on stderr, and status 1 at the end if any failed.
pub async fn each<F, Fut>(names: &[String], mut f: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(Some(line)) => println(&line),
            Ok(None) => {}
            Err(CliError::Connect { host }) => return Err(CliError::Connect { host }),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Docker's `--filter key=value` flags as the API's `filters` map.
pub fn filters(flags: &[String]) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
    for f in flags {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("bad format of filter (expected name=value): {f}"))
        })?;
        m.entry(k.trim().to_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(m)
}

/// Asks before a prune, as docker does, unless `--force`; false when declined.
pub fn confirm(force: bool, warning: &str) -> bool {
    if force {
        return true;
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}
