//! Output of lists as docker prints them: `table ...` formats through a tab
//! writer (minimum cell width 10, padding 3, as docker's formatter sets Go's
//! tabwriter), `json` as one object per line, or any Go-like template per row.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::CliError;
use crate::template::{Template, go_json};

/// A parsed `--format` value.
#[derive(Debug)]
pub enum Format {
    /// `table TEMPLATE`: a header row, then one row per item, aligned.
    Table(Template),
    /// `json`: each item as compact JSON on its own line.
    Json,
    /// A bare template: one rendering per item, each followed by a newline.
    Raw(Template),
}

/// Turns the `\t` and `\n` a user types into a shell into tabs and newlines, as
/// docker's formatter does.
fn unescape_format(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

impl Format {
    /// `default` is the command's `table ...` format, used when `--format` is
    /// empty or `table`.
    pub fn parse(user: Option<&str>, default: &str) -> Result<Self, CliError> {
        let f = user.unwrap_or("").trim_end_matches('\n');
        let f = if f.is_empty() || f == "table" {
            default
        } else {
            f
        };
        if f == "json" {
            return Ok(Format::Json);
        }
        if let Some(t) = f.strip_prefix("table") {
            let t = t.strip_prefix(' ').unwrap_or(t);
            return Ok(Format::Table(parse_template(t)?));
        }
        Ok(Format::Raw(parse_template(f)?))
    }
}

pub fn parse_template(s: &str) -> Result<Template, CliError> {
    Template::parse(&unescape_format(s)).map_err(|e| CliError::Usage(e.to_string()))
}

/// Renders `rows` (objects) with `format`; `headers` names the column of each
/// field for table headers (docker's `CONTAINER ID` for `.ID` and so on).
pub fn render(
    format: &Format,
    headers: &[(&str, &str)],
    rows: &[Value],
) -> Result<String, CliError> {
    let exec = |t: &Template, v: &Value| t.render(v).map_err(|e| CliError::Usage(e.to_string()));
    match format {
        Format::Json => Ok(rows
            .iter()
            .map(|r| go_json(&strip_hidden(r)) + "\n")
            .collect()),
        Format::Raw(t) => {
            let mut out = String::new();
            for r in rows {
                out.push_str(&exec(t, r)?);
                out.push('\n');
            }
            Ok(out)
        }
        Format::Table(t) => {
            let header: BTreeMap<String, Value> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect();
            let header = Value::Object(header.into_iter().collect());
            let mut text = exec(t, &header)?;
            text.push('\n');
            for r in rows {
                text.push_str(&exec(t, r)?);
                text.push('\n');
            }
            Ok(tabwrite(&text))
        }
    }
}

/// Keys starting with `_` carry data for template methods (`.Label "k"`) only.
fn strip_hidden(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Go's tabwriter with docker's settings: every tab-terminated cell of a column
/// is padded to the column's widest cell plus 3 (at least 10); the text after a
/// line's last tab is not a cell and is printed as it is. A column runs over
/// consecutive lines that have a cell at that position.
pub fn tabwrite(text: &str) -> String {
    tabwrite_with(text, MIN_WIDTH, PADDING)
}

/// [`tabwrite`] with other settings (`top` uses a minimum width of 20).
pub fn tabwrite_with(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|c| vec![0; c.len()]).collect();
    // For column j, blocks of consecutive lines having a cell j (not the last).
    let max_cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    for j in 0..max_cols {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= j + 1 {
                i += 1;
                continue;
            }
            let start = i;
            let mut w = 0;
            while i < lines.len() && lines[i].len() > j + 1 {
                w = w.max(width(lines[i][j]) + padding);
                i += 1;
            }
            let w = w.max(min_width);
            for row in widths.iter_mut().take(i).skip(start) {
                row[j] = w;
            }
        }
    }
    let mut out = String::new();
    for (i, cells) in lines.iter().enumerate() {
        let n = cells.len();
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j + 1 < n {
                out.push_str(&" ".repeat(widths[i][j].saturating_sub(width(c))));
            }
        }
        if i + 1 < lines.len() || text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tabwriter_pads_like_go() {
        let t = tabwrite("CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tweb\n");
        assert_eq!(
            t,
            "CONTAINER ID   IMAGE     NAMES\nabc            busybox   web\n"
        );
    }

    #[test]
    fn table_json_and_raw() {
        let rows = vec![json!({"ID": "abc", "Names": "web", "_labels": {}})];
        let headers = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        let f = Format::parse(None, "table {{.ID}}\\t{{.Names}}").unwrap();
        assert_eq!(
            render(&f, &headers, &rows).unwrap(),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        let f = Format::parse(Some("json"), "table {{.ID}}").unwrap();
        assert_eq!(
            render(&f, &headers, &rows).unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        let f = Format::parse(Some("{{.Names}}"), "table {{.ID}}").unwrap();
        assert_eq!(render(&f, &headers, &rows).unwrap(), "web\n");
        let f = Format::parse(Some("table {{.Names}}"), "").unwrap();
        assert_eq!(render(&f, &headers, &rows).unwrap(), "NAMES\nweb\n");
    }
}
