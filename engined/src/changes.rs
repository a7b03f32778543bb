//! `--change` instructions (`docker import`, `docker commit`): Dockerfile lines applied
//! to an image's `config`, with the Dockerfile's own syntax: exec (JSON) or shell
//! form for CMD and ENTRYPOINT, `k=v` pairs (quoted, escaped) or the legacy `k v` form
//! for ENV and LABEL, `$VAR`/`${VAR}` expansion from the image's environment where
//! the Dockerfile expands, and the instruction set dockerd accepts in a change.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    #[error("{0} is not a valid change command")]
    NotAllowed(String),
    #[error("{0} requires at least one argument")]
    MissingArgument(String),
    #[error("{instruction}: {message}")]
    Syntax {
        instruction: String,
        message: String,
    },
}

fn syntax(instruction: &str, message: impl Into<String>) -> ChangeError {
    ChangeError::Syntax {
        instruction: instruction.to_string(),
        message: message.into(),
    }
}

/// An image config's `config` as dockerd writes it for a new image: every field
/// present, the unset ones null.
pub fn empty_config() -> Map<String, Value> {
    let v = json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Applies the changes in order, as the lines of one Dockerfile.
pub fn apply(config: &mut Map<String, Value>, changes: &[String]) -> Result<(), ChangeError> {
    let mut cmd_set = false;
    for change in changes {
        for line in logical_lines(change) {
            apply_line(config, &line, &mut cmd_set)?;
        }
    }
    Ok(())
}

/// Splits on newlines, joining a line that ends in `\` with the next; drops blank
/// lines and comments.
fn logical_lines(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in s.lines() {
        if let Some(stripped) = raw.trim_end().strip_suffix('\\') {
            cur.push_str(stripped);
            continue;
        }
        cur.push_str(raw);
        let line = std::mem::take(&mut cur);
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    let t = cur.trim();
    if !t.is_empty() && !t.starts_with('#') {
        out.push(t.to_string());
    }
    out
}

fn apply_line(
    config: &mut Map<String, Value>,
    line: &str,
    cmd_set: &mut bool,
) -> Result<(), ChangeError> {
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(w, r)| (w, r.trim()));
    let instruction = word.to_ascii_uppercase();
    let needs_arg = |rest: &str| {
        if rest.is_empty() {
            Err(ChangeError::MissingArgument(instruction.clone()))
        } else {
            Ok(())
        }
    };
    let env = env_map(config);
    match instruction.as_str() {
        "CMD" => {
            needs_arg(rest)?;
            config.insert("Cmd".into(), json!(command(rest)));
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            needs_arg(rest)?;
            config.insert("Entrypoint".into(), json!(command(rest)));
            // As in a Dockerfile: a new entrypoint drops an inherited CMD.
            if !*cmd_set {
                config.insert("Cmd".into(), Value::Null);
            }
        }
        "ENV" => {
            needs_arg(rest)?;
            let pairs = pairs(&instruction, rest, &env)?;
            let mut list: Vec<String> = strings(config.get("Env"));
            for (k, v) in pairs {
                list.retain(|e| e.split('=').next() != Some(k.as_str()));
                list.push(format!("{k}={v}"));
            }
            config.insert("Env".into(), json!(list));
        }
        "LABEL" => {
            needs_arg(rest)?;
            let pairs = pairs(&instruction, rest, &env)?;
            let labels = config
                .entry("Labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            if let Some(m) = labels.as_object_mut() {
                for (k, v) in pairs {
                    m.insert(k, Value::String(v));
                }
            }
        }
        "WORKDIR" => {
            needs_arg(rest)?;
            let requested = word_value(&instruction, rest, &env)?;
            let current = config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let joined = if requested.starts_with('/') {
                requested
            } else {
                format!("/{current}/{requested}")
            };
            config.insert("WorkingDir".into(), Value::String(clean_path(&joined)));
        }
        "USER" => {
            needs_arg(rest)?;
            let user = word_value(&instruction, rest, &env)?;
            config.insert("User".into(), Value::String(user));
        }
        "EXPOSE" => {
            needs_arg(rest)?;
            let ports = config
                .entry("ExposedPorts")
                .or_insert_with(|| Value::Object(Map::new()));
            if !ports.is_object() {
                *ports = Value::Object(Map::new());
            }
            for raw in split_words(&instruction, rest)? {
                let spec = process_word(&instruction, &raw, &env)?;
                for p in port_specs(&instruction, &spec)? {
                    if let Some(m) = ports.as_object_mut() {
                        m.insert(p, json!({}));
                    }
                }
            }
        }
        "VOLUME" => {
            needs_arg(rest)?;
            let paths: Vec<String> = match json_strings(rest) {
                Some(list) => list,
                None => split_words(&instruction, rest)?
                    .iter()
                    .map(|w| process_word(&instruction, w, &env))
                    .collect::<Result<_, _>>()?,
            };
            let volumes = config
                .entry("Volumes")
                .or_insert_with(|| Value::Object(Map::new()));
            if !volumes.is_object() {
                *volumes = Value::Object(Map::new());
            }
            for p in paths {
                if p.trim().is_empty() {
                    return Err(syntax(
                        &instruction,
                        "VOLUME specified can not be an empty string",
                    ));
                }
                if let Some(m) = volumes.as_object_mut() {
                    m.insert(p, json!({}));
                }
            }
        }
        "ONBUILD" => {
            needs_arg(rest)?;
            let trigger = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(trigger.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(syntax(
                    &instruction,
                    format!("{trigger} isn't allowed as an ONBUILD trigger"),
                ));
            }
            let mut list = strings(config.get("OnBuild"));
            list.push(rest.to_string());
            config.insert("OnBuild".into(), json!(list));
        }
        _ => return Err(ChangeError::NotAllowed(word.to_string())),
    }
    Ok(())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn env_map(config: &Map<String, Value>) -> BTreeMap<String, String> {
    strings(config.get("Env"))
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect()
}

/// A JSON array of strings, if the text is one.
fn json_strings(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// CMD/ENTRYPOINT: exec form when the argument is a JSON string array, otherwise
/// shell form, run by `/bin/sh -c` with the text as written (no expansion).
fn command(rest: &str) -> Vec<String> {
    json_strings(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

/// Splits on whitespace outside quotes, keeping each word's quotes and escapes for
/// [`process_word`].
fn split_words(instruction: &str, s: &str) -> Result<Vec<String>, ChangeError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None | Some('"'), '\\') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(syntax(instruction, unterminated(q)));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

fn unterminated(q: char) -> String {
    let which = if q == '"' { "double" } else { "single" };
    format!("unexpected end of statement while looking for matching {which}-quote")
}

/// The shell-word processing the Dockerfile applies: quotes removed, backslash
/// escapes, `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` expanded
/// from `env` (nothing is expanded inside single quotes). Whitespace is kept.
fn process_word(
    instruction: &str,
    s: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, ChangeError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '\\') => {
                if let Some(&n) = chars.get(i + 1) {
                    out.push(n);
                    i += 1;
                }
            }
            (Some('"'), '\\') => match chars.get(i + 1) {
                Some(&n) if matches!(n, '"' | '$' | '\\') => {
                    out.push(n);
                    i += 1;
                }
                _ => out.push('\\'),
            },
            (None | Some('"'), '$') => {
                let (value, used) = expand(instruction, &chars[i + 1..], env)?;
                out.push_str(&value);
                i += used;
            }
            (_, c) => out.push(c),
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(syntax(instruction, unterminated(q)));
    }
    Ok(out)
}

/// Expands the variable reference after a `$`; returns its value and how many
/// characters it took. A `$` not followed by a name stays a `$`.
fn expand(
    instruction: &str,
    after: &[char],
    env: &BTreeMap<String, String>,
) -> Result<(String, usize), ChangeError> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if after.first() == Some(&'{') {
        let close = after
            .iter()
            .position(|&c| c == '}')
            .ok_or_else(|| syntax(instruction, "missing '}' in variable reference"))?;
        let inner: String = after[1..close].iter().collect();
        let value = match inner.split_once(':') {
            None => env.get(&inner).cloned().unwrap_or_default(),
            Some((name, modifier)) => {
                let set = env.get(name).filter(|v| !v.is_empty());
                match modifier.chars().next() {
                    Some('-') => set.cloned().unwrap_or_else(|| modifier[1..].to_string()),
                    Some('+') => set.map(|_| modifier[1..].to_string()).unwrap_or_default(),
                    _ => {
                        return Err(syntax(
                            instruction,
                            format!("unsupported modifier in ${{{inner}}}"),
                        ));
                    }
                }
            }
        };
        if inner.is_empty() || !inner.split(':').next().unwrap_or("").chars().all(is_name) {
            return Err(syntax(
                instruction,
                format!("bad substitution ${{{inner}}}"),
            ));
        }
        return Ok((value, close + 1));
    }
    let len = after.iter().take_while(|&&c| is_name(c)).count();
    if len == 0 {
        return Ok(("$".into(), 0));
    }
    let name: String = after[..len].iter().collect();
    Ok((env.get(&name).cloned().unwrap_or_default(), len))
}

/// The whole argument as one word (WORKDIR, USER, and legacy `ENV k v` values).
fn word_value(
    instruction: &str,
    rest: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, ChangeError> {
    process_word(instruction, rest, env)
}

/// ENV and LABEL arguments: `k=v k2="v 2"`, or the legacy `k the value`.
fn pairs(
    instruction: &str,
    rest: &str,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ChangeError> {
    let words = split_words(instruction, rest)?;
    let first = words.first().map(String::as_str).unwrap_or("");
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .map(|(k, v)| (k, v.trim_start()))
            .ok_or_else(|| {
                syntax(
                    instruction,
                    format!("{instruction} must have two arguments"),
                )
            })?;
        return Ok(vec![(
            process_word(instruction, key, env)?,
            process_word(instruction, value, env)?,
        )]);
    }
    words
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').ok_or_else(|| {
                syntax(
                    instruction,
                    format!(
                        "syntax error - can't find = in {w:?}. Must be of the form: name=value"
                    ),
                )
            })?;
            let key = process_word(instruction, k, env)?;
            if key.is_empty() {
                return Err(syntax(instruction, format!("empty name in {w:?}")));
            }
            Ok((key, process_word(instruction, v, env)?))
        })
        .collect()
}

/// `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`, ... as ExposedPorts keys.
fn port_specs(instruction: &str, spec: &str) -> Result<Vec<String>, ChangeError> {
    let bad = || syntax(instruction, format!("invalid port {spec:?}"));
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if lo == 0 || hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Lexical cleanup of an absolute path: no `.`, `..` or repeated slashes.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Map<String, Value> {
        let mut c = empty_config();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply(&mut c, &changes).unwrap();
        c
    }

    fn error(changes: &[&str]) -> String {
        let mut c = empty_config();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply(&mut c, &changes).unwrap_err().to_string()
    }

    #[test]
    fn cmd_and_entrypoint_in_both_forms() {
        let c = applied(&[r#"CMD ["/bin/sh","-c","echo imported"]"#]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo imported"]));
        let c = applied(&["cmd echo $HOME  'x'"]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $HOME  'x'"]));
        // A malformed JSON array is shell form, as in a Dockerfile.
        let c = applied(&["CMD [not json"]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "[not json"]));
        let c = applied(&[r#"ENTRYPOINT ["/bin/app"]"#]);
        assert_eq!(c["Entrypoint"], json!(["/bin/app"]));
        assert_eq!(c["Cmd"], Value::Null);
        // CMD before ENTRYPOINT survives it; ENTRYPOINT alone clears CMD.
        let c = applied(&[r#"CMD ["x"]"#, "ENTRYPOINT top -b"]);
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(c["Cmd"], json!(["x"]));
        assert_eq!(error(&["CMD"]), "CMD requires at least one argument");
    }

    #[test]
    fn env_pairs_quotes_legacy_form_and_expansion() {
        let c = applied(&[
            r#"ENV A=1 B="two words" C=a\ b"#,
            "ENV D the rest of it",
            "ENV E=$A-${B} F=${NOPE:-dflt} G=${A:+alt} H='$A' I=\"$A\"",
            "ENV A=replaced",
        ]);
        assert_eq!(
            c["Env"],
            json!([
                "B=two words",
                "C=a b",
                "D=the rest of it",
                "E=1-two words",
                "F=dflt",
                "G=alt",
                "H=$A",
                "I=1",
                "A=replaced"
            ])
        );
        assert!(error(&["ENV A=\"open"]).contains("matching double-quote"));
        assert!(error(&["ENV lonely"]).contains("two arguments"));
    }

    #[test]
    fn labels_workdir_user_expose_volume() {
        let c = applied(&[
            r#"LABEL "com.example.vendor"="ACME Inc" version=1.0"#,
            "LABEL legacy value here",
            "ENV BASE=/srv",
            "WORKDIR $BASE",
            "WORKDIR app/../data",
            "USER nobody:nogroup",
            "EXPOSE 80 53/udp 8000-8001",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache $BASE/vol",
        ]);
        assert_eq!(
            c["Labels"],
            json!({"com.example.vendor": "ACME Inc", "version": "1.0", "legacy": "value here"})
        );
        assert_eq!(c["WorkingDir"], "/srv/data");
        assert_eq!(c["User"], "nobody:nogroup");
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}, "/srv/vol": {}})
        );
        let c = applied(&["WORKDIR relative"]);
        assert_eq!(c["WorkingDir"], "/relative");
        assert!(error(&["EXPOSE 80/icmp"]).contains("invalid port"));
        assert!(error(&["EXPOSE 0"]).contains("invalid port"));
    }

    #[test]
    fn refuses_what_dockerd_refuses() {
        assert_eq!(error(&["RUN echo hi"]), "RUN is not a valid change command");
        assert_eq!(
            error(&["FROM busybox"]),
            "FROM is not a valid change command"
        );
        assert!(error(&["ONBUILD FROM x"]).contains("isn't allowed"));
        let c = applied(&["ONBUILD RUN make"]);
        assert_eq!(c["OnBuild"], json!(["RUN make"]));
    }

    #[test]
    fn lines_comments_and_continuations() {
        let c = applied(&["# a comment\nENV A=1 \\\n B=2\n\nUSER u"]);
        assert_eq!(c["Env"], json!(["A=1", "B=2"]));
        assert_eq!(c["User"], "u");
        // Nothing is set that was not asked for.
        let c = applied(&[]);
        assert_eq!(c, empty_config());
    }
}
