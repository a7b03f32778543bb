use std::fmt;

/// A container id as runc accepts it: `[A-Za-z0-9_+.-]+`, not `.` or `..`, at most 1024
/// bytes. Validated once at the edge so that an id can be used as a path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid container id {id:?}: {reason}")]
pub struct InvalidId {
    pub id: String,
    pub reason: &'static str,
}

impl ContainerId {
    pub fn new(id: &str) -> Result<Self, InvalidId> {
        let bad = |reason| {
            Err(InvalidId {
                id: id.to_string(),
                reason,
            })
        };
        if id.is_empty() {
            return bad("it is empty");
        }
        if id.len() > 1024 {
            return bad("it is longer than 1024 bytes");
        }
        if id == "." || id == ".." {
            return bad("it is a relative path component");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
        {
            return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
        }
        Ok(Self(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["a", "my-container_1.2+x", "0123456789abcdef"] {
            assert_eq!(ContainerId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_path_like_and_empty_ids() {
        for id in ["", ".", "..", "a/b", "../x", "a b", "x\0y", "é"] {
            assert!(ContainerId::new(id).is_err(), "{id:?} accepted");
        }
        assert!(ContainerId::new(&"a".repeat(1025)).is_err());
    }
}
