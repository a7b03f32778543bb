//! Dockerfile syntax: parser directives, comments, line continuations, the
//! instruction word and its `--flags`, the JSON (exec) form, and the shell-like word
//! processing the builder applies to the instructions that take variables.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("dockerfile parse error line {line}: {msg}")]
    Line { line: usize, msg: String },
    #[error("the Dockerfile (Dockerfile) cannot be empty")]
    Empty,
    #[error("failed to process {word:?}: {msg}")]
    Word { word: String, msg: String },
}

/// One instruction as written (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Upper-cased instruction word (`RUN`).
    pub cmd: String,
    /// `--name=value` flags before the arguments.
    pub flags: Vec<(String, String)>,
    /// The arguments after the flags, as written.
    pub rest: String,
    /// The JSON form, when the arguments are a JSON array of strings.
    pub json: Option<Vec<String>>,
    /// `INSTR args` as the step line shows it.
    pub original: String,
    pub line: usize,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The instructions whose arguments may be a JSON array.
const JSON_FORM: &[&str] = &["RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"];
const KNOWN: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Parses a whole Dockerfile; returns the instructions and the escape character.
pub fn parse(text: &str) -> Result<(Vec<Instruction>, char), ParseError> {
    let mut escape = '\\';
    let mut lines = text.lines().enumerate().peekable();
    // Parser directives: `# key=value` lines before anything else.
    while let Some((_, l)) = lines.peek() {
        let t = l.trim();
        let Some(body) = t.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = body.split_once('=') else {
            break;
        };
        let k = k.trim().to_ascii_lowercase();
        if k.contains(char::is_whitespace) || k.is_empty() {
            break;
        }
        if k == "escape" {
            escape = match v.trim() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::Line {
                        line: 1,
                        msg: format!("invalid ESCAPE '{other}'. Must be ` or \\"),
                    });
                }
            };
        }
        lines.next();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in lines {
        let t = raw.trim_start();
        // Comments and blank lines, also in the middle of a continued instruction.
        if t.starts_with('#') || (t.trim().is_empty() && !cur.is_empty()) {
            continue;
        }
        if t.trim().is_empty() {
            continue;
        }
        if cur.is_empty() {
            start = i + 1;
        }
        let trimmed = raw.trim_end();
        if let Some(body) = trimmed.strip_suffix(escape) {
            cur.push_str(body);
            continue;
        }
        cur.push_str(trimmed);
        out.push(instruction(&cur, start)?);
        cur.clear();
    }
    if !cur.trim().is_empty() {
        out.push(instruction(&cur, start)?);
    }
    if out.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok((out, escape))
}

fn instruction(text: &str, line: usize) -> Result<Instruction, ParseError> {
    let text = text.trim();
    let (word, rest) = text
        .split_once(char::is_whitespace)
        .map_or((text, ""), |(w, r)| (w, r.trim_start()));
    let cmd = word.to_ascii_uppercase();
    if !KNOWN.contains(&cmd.as_str()) {
        return Err(ParseError::Line {
            line,
            msg: format!("unknown instruction: {word}"),
        });
    }
    let mut flags = Vec::new();
    let mut rest = rest;
    if matches!(
        cmd.as_str(),
        "FROM" | "COPY" | "ADD" | "RUN" | "HEALTHCHECK"
    ) {
        while let Some(f) = rest.strip_prefix("--") {
            let (flag, after) = f
                .split_once(char::is_whitespace)
                .map_or((f, ""), |(a, b)| (a, b.trim_start()));
            let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
            flags.push((k.to_string(), v.to_string()));
            rest = after;
        }
    }
    let json = if JSON_FORM.contains(&cmd.as_str()) && rest.starts_with('[') {
        serde_json::from_str::<Vec<String>>(rest).ok()
    } else {
        None
    };
    if rest.is_empty() && !matches!(cmd.as_str(), "CMD" | "ENTRYPOINT" | "RUN") {
        return Err(ParseError::Line {
            line,
            msg: format!("{cmd} requires at least one argument"),
        });
    }
    Ok(Instruction {
        original: if rest.is_empty() {
            word.to_string()
        } else {
            format!("{word} {}", text[word.len()..].trim_start())
        },
        cmd,
        flags,
        rest: rest.to_string(),
        json,
        line,
    })
}

/// Shell-like processing of words: quotes removed, `$VAR`, `${VAR}`,
/// `${VAR:-default}` and `${VAR:+alt}` expanded, split on unquoted whitespace.
pub fn words(
    s: &str,
    env: &HashMap<String, String>,
    escape: char,
) -> Result<Vec<String>, ParseError> {
    Lexer::new(s, env, escape).run(true)
}

/// Like [`words`] but one word (whitespace kept).
pub fn word(s: &str, env: &HashMap<String, String>, escape: char) -> Result<String, ParseError> {
    Ok(Lexer::new(s, env, escape).run(false)?.concat())
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a HashMap<String, String>,
    escape: char,
    src: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str, env: &'a HashMap<String, String>, escape: char) -> Self {
        Self {
            chars: s.chars().collect(),
            pos: 0,
            env,
            escape,
            src: s,
        }
    }

    fn err(&self, msg: &str) -> ParseError {
        ParseError::Word {
            word: self.src.to_string(),
            msg: msg.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(mut self, split: bool) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c.is_whitespace() && split {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                continue;
            }
            in_word = true;
            if c == self.escape {
                match self.peek() {
                    Some(n) => {
                        cur.push(n);
                        self.pos += 1;
                    }
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.peek() {
                        None => return Err(self.err(
                            "unexpected end of statement while looking for matching single-quote",
                        )),
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(n) => {
                            cur.push(n);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '"' {
                loop {
                    match self.peek() {
                        None => return Err(self.err(
                            "unexpected end of statement while looking for matching double-quote",
                        )),
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some('$') => {
                            self.pos += 1;
                            let v = self.dollar()?;
                            cur.push_str(&v);
                        }
                        Some(n) if n == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(m @ ('"' | '$')) => {
                                    cur.push(m);
                                    self.pos += 1;
                                }
                                Some(m) if m == self.escape => {
                                    cur.push(m);
                                    self.pos += 1;
                                }
                                _ => cur.push(n),
                            }
                        }
                        Some(n) => {
                            cur.push(n);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '$' {
                let v = self.dollar()?;
                cur.push_str(&v);
            } else {
                cur.push(c);
            }
        }
        if in_word {
            out.push(cur);
        }
        Ok(out)
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        n
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(self.err("missing variable name"));
                }
                let value = self.env.get(&name).cloned();
                match self.peek() {
                    Some('}') => {
                        self.pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') => {
                        self.pos += 1;
                        let op = self.peek();
                        self.pos += 1;
                        let mut depth = 0;
                        let mut word = String::new();
                        loop {
                            match self.peek() {
                                None => return Err(self.err("missing '}'")),
                                Some('}') if depth == 0 => {
                                    self.pos += 1;
                                    break;
                                }
                                Some(c) => {
                                    if c == '{' {
                                        depth += 1;
                                    } else if c == '}' {
                                        depth -= 1;
                                    }
                                    word.push(c);
                                    self.pos += 1;
                                }
                            }
                        }
                        let alt = word_with(&word, self.env, self.escape)?;
                        let set = value.as_deref().is_some_and(|v| !v.is_empty());
                        match op {
                            Some('-') => Ok(if set { value.unwrap_or_default() } else { alt }),
                            Some('+') => Ok(if set { alt } else { String::new() }),
                            Some('?') if !set => Err(self.err(&format!("{name}: {alt}"))),
                            Some('?') => Ok(value.unwrap_or_default()),
                            _ => Err(self.err("unsupported modifier in substitution")),
                        }
                    }
                    _ => Err(self.err("missing '}'")),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok(self.env.get(&name).cloned().unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }
}

fn word_with(s: &str, env: &HashMap<String, String>, escape: char) -> Result<String, ParseError> {
    word(s, env, escape)
}

/// `KEY=VALUE ...` pairs (ENV, LABEL, ARG); the legacy `ENV KEY VALUE` form too.
pub fn pairs(
    rest: &str,
    env: &HashMap<String, String>,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, ParseError> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if legacy && !first.contains('=') {
        let value = rest[first.len()..].trim();
        return Ok(vec![(first.to_string(), word(value, env, escape)?)]);
    }
    let mut out = Vec::new();
    for w in words(rest, env, escape)? {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return Err(ParseError::Word {
                    word: w,
                    msg: "expected KEY=VALUE".into(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn continuations_comments_and_flags() {
        let (ins, esc) = parse(
            "# syntax=docker/dockerfile:1\nFROM busybox\n# a comment\nRUN echo a \\\n  # inside\n  && echo b\nCOPY --chown=1:2 a b /x/\ncmd [\"sh\", \"-c\", \"x\"]\n",
        )
        .unwrap();
        assert_eq!(esc, '\\');
        assert_eq!(ins.len(), 4);
        assert_eq!(ins[1].cmd, "RUN");
        assert_eq!(ins[1].rest, "echo a   && echo b");
        assert_eq!(ins[2].flag("chown"), Some("1:2"));
        assert_eq!(ins[2].rest, "a b /x/");
        assert_eq!(ins[3].cmd, "CMD");
        assert_eq!(
            ins[3].json.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "x".into()][..])
        );
        assert_eq!(ins[3].original, "cmd [\"sh\", \"-c\", \"x\"]");
        assert!(parse("").is_err());
        assert!(parse("FROM x\nBOGUS y").is_err());
    }

    #[test]
    fn escape_directive() {
        let (ins, esc) = parse("# escape=`\nFROM busybox\nRUN echo c:\\dir `\n  more\n").unwrap();
        assert_eq!(esc, '`');
        assert_eq!(ins[1].rest, "echo c:\\dir   more");
        // Not a directive once an instruction was seen.
        let (_, esc) = parse("FROM busybox\n# escape=`\n").unwrap();
        assert_eq!(esc, '\\');
    }

    #[test]
    fn substitution() {
        let e = env(&[("A", "1"), ("E", ""), ("P", "/p q")]);
        assert_eq!(word("$A-${A}", &e, '\\').unwrap(), "1-1");
        assert_eq!(word("${B:-def}", &e, '\\').unwrap(), "def");
        assert_eq!(word("${E:-def}", &e, '\\').unwrap(), "def");
        assert_eq!(word("${A:-def}", &e, '\\').unwrap(), "1");
        assert_eq!(word("${A:+alt}", &e, '\\').unwrap(), "alt");
        assert_eq!(word("${B:+alt}", &e, '\\').unwrap(), "");
        assert_eq!(word("'$A' \"$A\" \\$A", &e, '\\').unwrap(), "$A 1 $A");
        assert_eq!(
            words("a \"b c\" $P", &e, '\\').unwrap(),
            ["a", "b c", "/p q"]
        );
        assert!(word("${A", &e, '\\').is_err());
        assert!(word("'open", &e, '\\').is_err());
    }

    #[test]
    fn env_pairs() {
        let e = env(&[("A", "1")]);
        assert_eq!(
            pairs("X=$A Y=\"two words\" Z=a\\ b", &e, '\\', true).unwrap(),
            [
                ("X".to_string(), "1".to_string()),
                ("Y".into(), "two words".into()),
                ("Z".into(), "a b".into())
            ]
        );
        assert_eq!(
            pairs("KEY some value", &e, '\\', true).unwrap(),
            [("KEY".to_string(), "some value".to_string())]
        );
        assert!(pairs("KEY some", &e, '\\', false).is_err());
    }
}
