//! `GET /containers/{id}/top`: the host's `ps` output, cut down to the
//! container's processes (their pids come from containerd), as dockerd does it.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Top {
    #[serde(rename = "Titles")]
    pub titles: Vec<String>,
    #[serde(rename = "Processes")]
    pub processes: Vec<Vec<String>>,
}

/// Runs `ps ARGS` and keeps the rows whose PID column is one of `pids`.
pub async fn run(ps_args: &str, pids: &HashSet<u32>) -> ApiResult<Top> {
    let args: Vec<&str> = ps_args.split_whitespace().collect();
    let out = tokio::process::Command::new("ps")
        .args(&args)
        .output()
        .await
        .map_err(|e| ApiError::Internal(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::Internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout), pids)
}

/// The header names the columns; the last one (the command) takes the rest of
/// the line, spaces and all.
pub fn parse(output: &str, pids: &HashSet<u32>) -> ApiResult<Top> {
    let mut lines = output.lines();
    let header = lines
        .next()
        .ok_or_else(|| ApiError::Internal("ps printed nothing".into()))?;
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ApiError::BadRequest("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<u32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len() - 1;
        let mut row: Vec<String> = fields[..last].iter().map(|f| f.to_string()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_containers_rows_and_whole_commands() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                   root        4242    4200  0 10:01 ?        00:00:00 sleep 1000\n\
                   root        4243    4242  0 10:01 ?        00:00:00 sh -c echo a  b\n";
        let top = parse(out, &HashSet::from([4242, 4243])).unwrap();
        assert_eq!(top.titles.len(), 8);
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[0][7], "sleep 1000");
        assert_eq!(top.processes[1][7], "sh -c echo a b");
    }

    #[test]
    fn ps_without_a_pid_column_is_refused() {
        assert!(parse("USER COMMAND\nroot x\n", &HashSet::new()).is_err());
    }
}
