//! `ps`: the container's processes are the pids in its cgroup; the table is ps(1)'s
//! own output, kept to the lines of those pids, as runc does.
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use tracing::instrument;

use crate::cli::ListFormat;
use crate::container::load;
use crate::error::{OciError, Result};

#[instrument(skip(root, ps_args))]
pub fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<String> {
    let c = load(root, id)?;
    let pids = match c.state.as_ref().and_then(|s| s.cgroup.clone()) {
        Some(paths) => cgroups::Cgroup::from_paths(paths).procs()?,
        None => Vec::new(),
    };
    match format {
        ListFormat::Json => serde_json::to_string(&pids)
            .map(|s| s + "\n")
            .map_err(|e| OciError::Other(e.to_string())),
        ListFormat::Table => {
            let default = ["-ef".to_string()];
            let args = if ps_args.is_empty() {
                &default[..]
            } else {
                ps_args
            };
            let out = Command::new("ps")
                .args(args)
                .output()
                .map_err(|e| OciError::io("run", "ps", e))?;
            if !out.status.success() {
                return Err(OciError::Other(format!(
                    "ps {}: {}: {}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            filter_table(&String::from_utf8_lossy(&out.stdout), &pids)
        }
    }
}

/// The header and the lines whose PID column is one of `pids`.
fn filter_table(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|f| f == "PID")
        .ok_or_else(|| OciError::Other("couldn't find PID field in ps output".into()))?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut out = format!("{header}\n");
    for line in lines {
        let Some(field) = line.split_whitespace().nth(col) else {
            continue;
        };
        let pid = field
            .parse::<i32>()
            .map_err(|e| OciError::Other(format!("unexpected pid {field:?} in ps output: {e}")))?;
        if wanted.contains(&pid) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_container_lines() {
        let t = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep 10\nroot 43 1 sh\n";
        assert_eq!(
            filter_table(t, &[42]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sleep 10\n"
        );
        assert!(filter_table("UID CMD\nroot x\n", &[1]).is_err());
    }
}
