//! `.dockerignore`: Go `filepath.Match` patterns per line, `**` for any number of
//! directories, `!` for exceptions; the last pattern that matches a path (or one of
//! its parent directories) decides.

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exception: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` of a relative pattern, without a leading `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

impl Ignore {
    pub fn parse(text: &str) -> Self {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, body) = match l.strip_prefix('!') {
                Some(b) => (true, b.trim()),
                None => (false, l),
            };
            let c = clean(body);
            if c.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                segments: c.split('/').map(str::to_string).collect(),
                exception,
            });
        }
        Self { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a `/`-separated path in the context) is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let mut out = false;
        for p in &self.patterns {
            // The path itself or any directory above it.
            let hit = (1..=parts.len()).any(|n| match_segments(&p.segments, &parts[..n]));
            if hit {
                out = !p.exception;
            }
        }
        out
    }

    /// Whether an exception could match something below the excluded directory
    /// `rel`, so that the walk has to go in.
    pub fn may_include_below(&self, rel: &str) -> bool {
        self.patterns.iter().any(|p| {
            p.exception && {
                let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
                p.segments.iter().any(|s| s.contains("**"))
                    || (p.segments.len() > parts.len()
                        && match_segments(&p.segments[..parts.len()], &parts))
            }
        })
    }
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(s) if s == "**" => {
            (0..=path.len()).any(|skip| match_segments(&pat[1..], &path[skip..]))
        }
        Some(s) => {
            !path.is_empty()
                && glob(s.as_bytes(), path[0].as_bytes())
                && match_segments(&pat[1..], &path[1..])
        }
    }
}

/// `filepath.Match` within one path segment: `*`, `?`, `[...]` (with `^`/`!` and
/// ranges) and `\` escapes.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            let rest = &p[1..];
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'^' | b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != b']' || first) {
                first = false;
                let mut lo = p[i];
                if lo == b'\\' && i + 1 < p.len() {
                    i += 1;
                    lo = p[i];
                }
                let mut hi = lo;
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&b| b != b']') {
                    hi = p[i + 2];
                    i += 2;
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
                i += 1;
            }
            if i >= p.len() {
                // An unterminated class is a bad pattern: it matches nothing.
                return false;
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"*.txt", b"a.txt"));
        assert!(!glob(b"*.txt", b"a.txz"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[^a-c]x", b"bx"));
        assert!(glob(b"\\*", b"*"));
        assert!(!glob(b"[a", b"a"));
    }

    #[test]
    fn patterns_exceptions_and_parents() {
        let i = Ignore::parse(
            "# comment\n*.log\n!keep.log\nsecret/\n/build\n**/*.tmp\ndocs/**/draft\n",
        );
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        // `*.log` is one segment: not in subdirectories.
        assert!(!i.excluded("sub/a.log"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("secret/key"));
        assert!(i.excluded("build/out/x"));
        assert!(i.excluded("x.tmp"));
        assert!(i.excluded("a/b/c/x.tmp"));
        assert!(i.excluded("docs/draft"));
        assert!(i.excluded("docs/a/b/draft/file"));
        assert!(!i.excluded("docs/a/final"));
        assert!(!i.excluded("Dockerfile"));
        let j = Ignore::parse("dir\n!dir/keep\n");
        assert!(j.excluded("dir/other"));
        assert!(!j.excluded("dir/keep"));
        assert!(j.may_include_below("dir"));
    }
}
