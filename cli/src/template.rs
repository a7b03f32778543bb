//! The part of Go's text/template that `--format` strings use: `{{.Field.Sub}}`,
//! pipelines (`{{.Names | upper}}`), `range`/`if`/`with` with `else` and `end`,
//! `{{-`/`-}}` trimming, and the functions docker adds (`json`, `join`, `split`,
//! `upper`, `lower`, `title`, `truncate`, `pad`) plus Go's `index`, `len`, `print`,
//! `printf`, `println`, `eq`, `ne`, `not`, `and`, `or`. Data is JSON: field
//! access reads object keys by their exact name, as Go reads struct fields.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: executing: {0}")]
    Exec(String),
}

type Result<T> = std::result::Result<T, TemplateError>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
struct Command {
    args: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `.A.B` (empty for `.`), from the dot.
    Field(Vec<String>),
    /// `$` or `$.A.B`, from the root.
    Root(Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Pipeline, Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Self> {
        let tokens = lex(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
        if let Some(e) = end {
            return Err(TemplateError::Parse(format!("unexpected {{{{{e}}}}}")));
        }
        Ok(Self { nodes })
    }

    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        exec_nodes(&self.nodes, data, data, &mut out)?;
        Ok(out)
    }

    /// The `.Field` names the template reads from the dot at the top level, in
    /// order (for table headers).
    pub fn top_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if let Node::Action(p) = n {
                for c in p {
                    for a in &c.args {
                        if let Operand::Field(f) = a
                            && let Some(first) = f.first()
                        {
                            out.push(first.clone());
                        }
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next_text = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next_text {
            text = text.trim_start().to_string();
        }
        let after = &rest[start + 2..];
        let (trim_left, after) = match after.strip_prefix("- ") {
            Some(a) => (true, a),
            None => (false, after),
        };
        if trim_left {
            text = text.trim_end().to_string();
        }
        if !text.is_empty() {
            out.push(Tok::Text(text));
        }
        let end =
            find_close(after).ok_or_else(|| TemplateError::Parse("unclosed action".into()))?;
        let mut inner = &after[..end];
        trim_next_text = false;
        if let Some(i) = inner.strip_suffix(" -") {
            inner = i;
            trim_next_text = true;
        }
        out.push(Tok::Action(inner.trim().to_string()));
        rest = &after[end + 2..];
    }
    let mut text = rest.to_string();
    if trim_next_text {
        text = text.trim_start().to_string();
    }
    if !text.is_empty() {
        out.push(Tok::Text(text));
    }
    Ok(out)
}

/// The `}}` that closes an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Parses nodes until `{{end}}` or `{{else}}` (returned as the terminator).
fn parse_nodes(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s.clone())),
            Tok::Action(a) => {
                let word = a.split_whitespace().next().unwrap_or("");
                match word {
                    "end" | "else" => return Ok((nodes, Some(a.clone()))),
                    "range" | "if" | "with" => {
                        let pipe = parse_pipeline(a[word.len()..].trim())?;
                        let (body, end) = parse_nodes(toks, pos)?;
                        let (alt, end) = match end.as_deref() {
                            Some("else") => parse_nodes(toks, pos)?,
                            _ => (vec![], end),
                        };
                        if end.as_deref() != Some("end") {
                            return Err(TemplateError::Parse(format!("{word} without end")));
                        }
                        nodes.push(match word {
                            "range" => Node::Range(pipe, body, alt),
                            "if" => Node::If(pipe, body, alt),
                            _ => Node::With(pipe, body, alt),
                        });
                    }
                    _ if a.starts_with("/*") => {}
                    _ => nodes.push(Node::Action(parse_pipeline(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipeline(s: &str) -> Result<Pipeline> {
    let words = split_words(s)?;
    let mut pipe = Vec::new();
    let mut cur = Vec::new();
    for w in words {
        if w == "|" {
            if cur.is_empty() {
                return Err(TemplateError::Parse(format!("missing command in {s:?}")));
            }
            pipe.push(Command {
                args: std::mem::take(&mut cur),
            });
        } else {
            cur.push(parse_operand(&w)?);
        }
    }
    if cur.is_empty() {
        return Err(TemplateError::Parse(format!("missing value in {s:?}")));
    }
    pipe.push(Command { args: cur });
    Ok(pipe)
}

/// Splits an action into words: string literals, parenthesised groups, `|`, and
/// bare words.
fn split_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            out.push("|".into());
            i += 1;
        } else if c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(TemplateError::Parse("unterminated string".into()));
            }
            i += 1;
            out.push(chars[start..i].iter().collect());
        } else if c == '(' {
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                match chars[i] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(TemplateError::Parse("unclosed parenthesis".into()));
            }
            i += 1;
            // A field chain may follow the group: `(index .X 0).Name`.
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '|' {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '|' {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn field_chain(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_operand(w: &str) -> Result<Operand> {
    if let Some(rest) = w.strip_prefix('(') {
        let close = rest
            .rfind(')')
            .ok_or_else(|| TemplateError::Parse(format!("bad group {w:?}")))?;
        return Ok(Operand::Sub(
            parse_pipeline(&rest[..close])?,
            field_chain(&rest[close + 1..]),
        ));
    }
    if w.starts_with('.') {
        return Ok(Operand::Field(field_chain(w)));
    }
    if let Some(rest) = w.strip_prefix('$') {
        return Ok(Operand::Root(field_chain(rest)));
    }
    if let Some(s) = w.strip_prefix('"') {
        let s = s.strip_suffix('"').unwrap_or(s);
        return Ok(Operand::Lit(Value::String(unescape(s))));
    }
    if let Some(s) = w.strip_prefix('`') {
        return Ok(Operand::Lit(Value::String(
            s.strip_suffix('`').unwrap_or(s).to_string(),
        )));
    }
    match w {
        "true" => return Ok(Operand::Lit(Value::Bool(true))),
        "false" => return Ok(Operand::Lit(Value::Bool(false))),
        "nil" => return Ok(Operand::Lit(Value::Null)),
        _ => {}
    }
    if let Ok(n) = w.parse::<i64>() {
        return Ok(Operand::Lit(Value::from(n)));
    }
    if let Ok(f) = w.parse::<f64>() {
        return Ok(Operand::Lit(Value::from(f)));
    }
    if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Ok(Operand::Func(w.to_string()));
    }
    Err(TemplateError::Parse(format!("unexpected {w:?}")))
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

/// A value during execution: `Missing` is a key the data does not have (Go prints
/// `<no value>` for it).
#[derive(Debug, Clone, PartialEq)]
enum Val {
    V(Value),
    Missing,
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Missing => false,
            Val::V(v) => match v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
            },
        }
    }

    fn value(&self) -> Value {
        match self {
            Val::V(v) => v.clone(),
            Val::Missing => Value::Null,
        }
    }
}

fn walk(mut v: Val, chain: &[String]) -> Val {
    for key in chain {
        v = match v {
            Val::V(Value::Object(o)) => o.get(key).cloned().map_or(Val::Missing, Val::V),
            _ => Val::Missing,
        };
    }
    v
}

fn exec_nodes(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipeline(p, dot, root)?;
                out.push_str(&display(&v));
            }
            Node::If(p, body, alt) => {
                let v = eval_pipeline(p, dot, root)?;
                exec_nodes(if v.truthy() { body } else { alt }, dot, root, out)?;
            }
            Node::With(p, body, alt) => {
                let v = eval_pipeline(p, dot, root)?;
                if v.truthy() {
                    exec_nodes(body, &v.value(), root, out)?;
                } else {
                    exec_nodes(alt, dot, root, out)?;
                }
            }
            Node::Range(p, body, alt) => {
                let items: Vec<Value> = match eval_pipeline(p, dot, root)?.value() {
                    Value::Array(a) => a,
                    // Go ranges over a map's values in key order.
                    Value::Object(o) => o.into_iter().map(|(_, v)| v).collect(),
                    Value::Null => vec![],
                    other => {
                        return Err(TemplateError::Exec(format!(
                            "range can't iterate over {other}"
                        )));
                    }
                };
                if items.is_empty() {
                    exec_nodes(alt, dot, root, out)?;
                }
                for item in &items {
                    exec_nodes(body, item, root, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: &Value, root: &Value) -> Result<Val> {
    let mut prev: Option<Val> = None;
    for c in p {
        prev = Some(eval_command(c, dot, root, prev.take())?);
    }
    Ok(prev.unwrap_or(Val::Missing))
}

fn eval_operand(o: &Operand, dot: &Value, root: &Value) -> Result<Val> {
    Ok(match o {
        Operand::Field(chain) => walk(Val::V(dot.clone()), chain),
        Operand::Root(chain) => walk(Val::V(root.clone()), chain),
        Operand::Lit(v) => Val::V(v.clone()),
        Operand::Sub(p, chain) => walk(eval_pipeline(p, dot, root)?, chain),
        Operand::Func(f) => call(f, vec![])?,
    })
}

fn eval_command(c: &Command, dot: &Value, root: &Value, piped: Option<Val>) -> Result<Val> {
    let (first, rest) = c
        .args
        .split_first()
        .ok_or_else(|| TemplateError::Exec("empty command".into()))?;
    let mut args = Vec::new();
    for a in rest {
        args.push(eval_operand(a, dot, root)?);
    }
    if let Some(p) = piped {
        args.push(p);
    }
    match first {
        Operand::Func(f) => call(f, args),
        // `.Label "key"` is a method of docker's ps and images rows.
        Operand::Field(chain) if chain.len() == 1 && chain[0] == "Label" && !args.is_empty() => {
            let key = display(&args[0]);
            // docker's Label method answers "" for a label the object lacks.
            Ok(match walk(Val::V(dot.clone()), &["_labels".into(), key]) {
                Val::Missing => Val::V(Value::String(String::new())),
                v => v,
            })
        }
        other if args.is_empty() => eval_operand(other, dot, root),
        _ => Err(TemplateError::Exec(format!(
            "can't give argument to non-function {first:?}"
        ))),
    }
}

fn arg_str(args: &[Val], i: usize) -> String {
    args.get(i).map(display).unwrap_or_default()
}

fn call(f: &str, args: Vec<Val>) -> Result<Val> {
    let need = |n: usize| -> Result<()> {
        if args.len() < n {
            Err(TemplateError::Exec(format!(
                "wrong number of args for {f}: want {n} got {}",
                args.len()
            )))
        } else {
            Ok(())
        }
    };
    let s = |v: String| Ok(Val::V(Value::String(v)));
    match f {
        "json" => {
            need(1)?;
            s(go_json(&args[0].value()))
        }
        "upper" => {
            need(1)?;
            s(arg_str(&args, 0).to_uppercase())
        }
        "lower" => {
            need(1)?;
            s(arg_str(&args, 0).to_lowercase())
        }
        "title" => {
            need(1)?;
            s(arg_str(&args, 0)
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" "))
        }
        "join" => {
            need(2)?;
            let sep = arg_str(&args, 1);
            match args[0].value() {
                Value::Array(a) => s(a.iter().map(display_value).collect::<Vec<_>>().join(&sep)),
                other => s(display_value(&other)),
            }
        }
        "split" => {
            need(2)?;
            let sep = arg_str(&args, 1);
            Ok(Val::V(Value::Array(
                arg_str(&args, 0)
                    .split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )))
        }
        "truncate" => {
            need(2)?;
            let n = args[1].value().as_u64().unwrap_or(0) as usize;
            s(arg_str(&args, 0).chars().take(n).collect())
        }
        "pad" => {
            need(3)?;
            let l = args[1].value().as_u64().unwrap_or(0) as usize;
            let r = args[2].value().as_u64().unwrap_or(0) as usize;
            s(format!(
                "{}{}{}",
                " ".repeat(l),
                arg_str(&args, 0),
                " ".repeat(r)
            ))
        }
        "len" => {
            need(1)?;
            let n = match args[0].value() {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(st) => st.len(),
                _ => 0,
            };
            Ok(Val::V(Value::from(n)))
        }
        "index" => {
            need(2)?;
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (v.value(), k.value()) {
                    (Value::Array(a), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| a.get(i as usize).cloned())
                        .map_or(Val::Missing, Val::V),
                    (Value::Object(o), Value::String(key)) => {
                        o.get(&key).cloned().map_or(Val::Missing, Val::V)
                    }
                    _ => Val::Missing,
                };
            }
            Ok(v)
        }
        "print" => s(args.iter().map(display).collect::<Vec<_>>().join("")),
        "println" => s(args.iter().map(display).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            need(1)?;
            s(printf(&arg_str(&args, 0), &args[1..]))
        }
        "eq" | "ne" => {
            need(2)?;
            let first = args[0].value();
            let eq = args[1..].iter().any(|a| a.value() == first);
            Ok(Val::V(Value::Bool(if f == "eq" { eq } else { !eq })))
        }
        "not" => {
            need(1)?;
            Ok(Val::V(Value::Bool(!args[0].truthy())))
        }
        "and" => {
            need(1)?;
            Ok(args
                .iter()
                .find(|a| !a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Val::Missing))
        }
        "or" => {
            need(1)?;
            Ok(args
                .iter()
                .find(|a| a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Val::Missing))
        }
        _ => Err(TemplateError::Exec(format!("function {f:?} not defined"))),
    }
}

fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut i = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('q') => {
                out.push_str(&serde_json::to_string(&arg_str(args, i)).unwrap_or_default());
                i += 1;
            }
            Some(_) => {
                out.push_str(&arg_str(args, i));
                i += 1;
            }
            None => out.push('%'),
        }
    }
    out
}

fn display(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".into(),
        Val::V(v) => display_value(v),
    }
}

/// Go's `%v` of the value a struct field would hold.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{}", f as i64)
                } else {
                    f.to_string()
                }
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(display_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", display_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// `json.Marshal`: compact, with `<`, `>` and `&` escaped as Go does.
pub fn go_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_pipelines_and_functions() {
        let v = json!({"Names": "web", "State": {"Status": "running", "Pid": 42},
                       "Env": ["A=1", "B=2"], "Labels": {"a": "b"}, "_labels": {"k": "v"}});
        assert_eq!(r("{{.Names}}", &v), "web");
        assert_eq!(r("{{.State.Status}} {{.State.Pid}}", &v), "running 42");
        assert_eq!(r("{{.Names | upper}}", &v), "WEB");
        assert_eq!(r("{{join .Env \",\"}}", &v), "A=1,B=2");
        assert_eq!(r("{{json .Labels}}", &v), "{\"a\":\"b\"}");
        assert_eq!(r("{{index .Labels \"a\"}}", &v), "b");
        assert_eq!(r("{{index .Env 1}}", &v), "B=2");
        assert_eq!(r("{{.Nope}}", &v), "<no value>");
        assert_eq!(r("{{.Label \"k\"}}", &v), "v");
        assert_eq!(r("{{len .Env}}", &v), "2");
        assert_eq!(r("{{.Env}}", &v), "[A=1 B=2]");
        assert_eq!(r("{{printf \"%s-%d\" .Names .State.Pid}}", &v), "web-42");
        assert_eq!(r("{{(index .Env 0) | lower}}", &v), "a=1");
    }

    #[test]
    fn control_flow_and_trimming() {
        let v = json!({"Env": ["A=1", "B=2"], "On": true, "Empty": [], "M": {"x": {"y": 1}}});
        assert_eq!(r("{{range .Env}}[{{.}}]{{end}}", &v), "[A=1][B=2]");
        assert_eq!(r("{{range .Empty}}x{{else}}none{{end}}", &v), "none");
        assert_eq!(r("{{if .On}}yes{{else}}no{{end}}", &v), "yes");
        assert_eq!(r("{{if .Off}}yes{{else}}no{{end}}", &v), "no");
        assert_eq!(r("{{with .M.x}}{{.y}}{{end}}", &v), "1");
        assert_eq!(r("a  {{- \"b\" -}}  c", &v), "abc");
        assert_eq!(r("{{if eq .On true}}t{{end}}", &v), "t");
        assert_eq!(r("{{range $.Env}}{{$.On}}{{end}}", &v), "truetrue");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let t = Template::parse("{{nosuch .A}}").unwrap();
        assert!(t.render(&json!({})).is_err());
    }

    #[test]
    fn top_fields_for_headers() {
        let t = Template::parse("{{.ID}}\t{{.Names | upper}}\t{{json .Labels}}").unwrap();
        assert_eq!(t.top_fields(), vec!["ID", "Names", "Labels"]);
    }
}
