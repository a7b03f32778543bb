//! containerd's filter language, as used by List calls and event subscriptions:
//!
//! ```text
//! filters  := filter ("," filter)*          all must match
//! filter   := fieldpath [op value]          a bare fieldpath tests presence
//! fieldpath:= field ("." field)*            field: [A-Za-z0-9_-]+ or "quoted"
//! op       := "==" | "!=" | "~="            ~= is a regular-expression-free "contains"
//! value    := "quoted" | /quoted/ | run of characters up to ","
//! ```
//!
//! A request's several filter strings are alternatives: an object passes when any
//! one of them matches (or when there are none).

use crate::error::{LiteError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Present,
    Eq,
    NotEq,
    Matches,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
    value: String,
}

/// An object that filters look into. `path` is the field path split on dots;
/// `None` means the field is absent.
pub trait Adaptor {
    fn field(&self, path: &[String]) -> Option<String>;
}

/// Any of several conjunctions.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

impl Filter {
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter> {
        let mut any = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.trim().is_empty() {
                continue;
            }
            any.push(parse(f)?);
        }
        Ok(Filter { any })
    }

    pub fn matches(&self, obj: &impl Adaptor) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(obj)))
    }
}

impl Selector {
    fn matches(&self, obj: &impl Adaptor) -> bool {
        let got = obj.field(&self.path);
        match self.op {
            Op::Present => got.is_some(),
            Op::Eq => got.as_deref() == Some(self.value.as_str()),
            Op::NotEq => got.as_deref() != Some(self.value.as_str()),
            Op::Matches => got.is_some_and(|g| regex_lite_match(&self.value, &g)),
        }
    }
}

/// containerd's `~=` takes a Go regular expression. Clients use it for prefixes and
/// plain substrings; we support `^`, `$` anchors and literal text, which covers them.
fn regex_lite_match(pattern: &str, s: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (anchored_start, anchored_end) {
        (true, true) => s == p,
        (true, false) => s.starts_with(p),
        (false, true) => s.ends_with(p),
        (false, false) => s.contains(p),
    }
}

fn bad(f: &str, why: &str) -> LiteError {
    LiteError::InvalidArgument(format!("filter {f:?}: {why}"))
}

fn parse(f: &str) -> Result<Vec<Selector>> {
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let mut path = Vec::new();
        loop {
            skip_ws(&mut i);
            let field = if i < chars.len() && chars[i] == '"' {
                quoted(&chars, &mut i, '"').ok_or_else(|| bad(f, "unterminated quote"))?
            } else {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                {
                    i += 1;
                }
                if start == i {
                    return Err(bad(f, "expected a field name"));
                }
                chars[start..i].iter().collect()
            };
            path.push(field);
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                continue;
            }
            break;
        }
        skip_ws(&mut i);
        let rest: String = chars[i..].iter().take(2).collect();
        let op = match rest.as_str() {
            "==" => Op::Eq,
            "!=" => Op::NotEq,
            "~=" => Op::Matches,
            _ => Op::Present,
        };
        let mut value = String::new();
        if op != Op::Present {
            i += 2;
            skip_ws(&mut i);
            value = if i < chars.len() && (chars[i] == '"' || chars[i] == '/') {
                let q = chars[i];
                quoted(&chars, &mut i, q).ok_or_else(|| bad(f, "unterminated quote"))?
            } else {
                let start = i;
                while i < chars.len() && chars[i] != ',' {
                    i += 1;
                }
                chars[start..i]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string()
            };
        }
        out.push(Selector { path, op, value });
        skip_ws(&mut i);
        if i == chars.len() {
            return Ok(out);
        }
        if chars[i] != ',' {
            return Err(bad(f, &format!("unexpected {:?}", chars[i])));
        }
        i += 1;
    }
}

/// Reads a string quoted by `q` starting at `chars[*i] == q`, with backslash escapes.
fn quoted(chars: &[char], i: &mut usize, q: char) -> Option<String> {
    *i += 1;
    let mut s = String::new();
    while *i < chars.len() {
        let c = chars[*i];
        *i += 1;
        if c == '\\' && *i < chars.len() {
            s.push(chars[*i]);
            *i += 1;
        } else if c == q {
            return Some(s);
        } else {
            s.push(c);
        }
    }
    None
}

/// Looks up `labels.KEY` (the key may itself contain dots, written quoted or not).
pub fn label_field<'a>(
    path: &[String],
    labels: impl Fn(&str) -> Option<&'a String>,
) -> Option<String> {
    if path.len() < 2 {
        return None;
    }
    labels(&path[1..].join(".")).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Obj(BTreeMap<String, String>);
    impl Adaptor for Obj {
        fn field(&self, path: &[String]) -> Option<String> {
            self.0.get(&path.join(".")).cloned()
        }
    }

    fn obj(kv: &[(&str, &str)]) -> Obj {
        Obj(kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn topic_and_namespace() {
        let o = obj(&[("topic", "/tasks/exit"), ("namespace", "default")]);
        assert!(
            Filter::parse_all(&[r#"topic=="/tasks/exit""#])
                .unwrap()
                .matches(&o)
        );
        assert!(
            !Filter::parse_all(&[r#"topic=="/tasks/start""#])
                .unwrap()
                .matches(&o)
        );
        assert!(
            Filter::parse_all(&[r#"topic~="/tasks/",namespace==default"#])
                .unwrap()
                .matches(&o)
        );
        assert!(
            Filter::parse_all(&[r#"topic=="/x""#, "namespace==default"])
                .unwrap()
                .matches(&o)
        );
        assert!(Filter::parse_all(&["topic"]).unwrap().matches(&o));
        assert!(!Filter::parse_all(&["nope"]).unwrap().matches(&o));
        assert!(Filter::parse_all::<&str>(&[]).unwrap().matches(&o));
        assert!(Filter::parse_all(&["topic=="]).is_ok());
        assert!(Filter::parse_all(&["=="]).is_err());
    }

    #[test]
    fn quoted_label_keys() {
        let o = obj(&[("labels.io.x/y", "1")]);
        assert!(
            Filter::parse_all(&[r#"labels."io.x/y"==1"#])
                .unwrap()
                .matches(&o)
        );
        assert!(
            Filter::parse_all(&[r#"labels."io.x/y"!=2"#])
                .unwrap()
                .matches(&o)
        );
    }
}
