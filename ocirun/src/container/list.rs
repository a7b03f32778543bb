use std::path::Path;

use crate::cli::ListFormat;
use crate::container::load;
use crate::container::state::oci_state_json;
use crate::error::{OciError, Result};

/// `ocirun list`: runc's table or its JSON array.
pub fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<String> {
    let mut ids: Vec<String> = match std::fs::read_dir(root) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(OciError::io("read", root, e)),
    };
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        // A container deleted meanwhile, or a stray directory, is not listed.
        let Ok(c) = load(root, &id) else { continue };
        let Some(s) = &c.state else { continue };
        rows.push(oci_state_json(s, c.status));
    }
    if quiet {
        return Ok(rows
            .iter()
            .filter_map(|r| r["id"].as_str())
            .map(|id| format!("{id}\n"))
            .collect());
    }
    match format {
        ListFormat::Json => serde_json::to_string(&rows)
            .map(|s| s + "\n")
            .map_err(|e| OciError::Other(e.to_string())),
        ListFormat::Table => {
            let mut out = format!(
                "{:<12} {:<10} {:<10} {:<40} {:<30} {}\n",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"
            );
            for r in &rows {
                out.push_str(&format!(
                    "{:<12} {:<10} {:<10} {:<40} {:<30} {}\n",
                    r["id"].as_str().unwrap_or(""),
                    r["pid"],
                    r["status"].as_str().unwrap_or(""),
                    r["bundle"].as_str().unwrap_or(""),
                    r["created"].as_str().unwrap_or(""),
                    "root"
                ));
            }
            Ok(out)
        }
    }
}
