//! Image references as the docker CLI splits and normalises them before it asks
//! the daemon to pull, push or tag: `busybox` is `docker.io/library/busybox` with
//! tag `latest`; `127.0.0.1:5055/x:v1` keeps its registry.

/// A reference split into its repository (normalised) and tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io/library/busybox`, `127.0.0.1:5055/busybox`.
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!("invalid reference format: {s:?}"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (s, None),
        };
        // A tag is the part after the last ':' that comes after the last '/'.
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], Some(name[slash + i + 1..].to_string())),
            None => (name, None),
        };
        if repo.is_empty() || tag.as_deref() == Some("") {
            return Err(format!("invalid reference format: {s:?}"));
        }
        if repo.chars().any(|c| c.is_ascii_uppercase()) && !has_domain(repo) {
            return Err(format!(
                "invalid reference format: repository name ({repo}) must be lowercase"
            ));
        }
        Ok(Self {
            repo: normalize_repo(repo),
            tag,
            digest,
        })
    }

    /// The tag, `latest` when neither a tag nor a digest was given.
    pub fn tag_or_latest(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, None) => Some("latest".into()),
            (None, Some(_)) => None,
        }
    }

    /// `repo:tag` or `repo@digest` with the implied `latest`.
    pub fn full(&self) -> String {
        match (&self.digest, self.tag_or_latest()) {
            (Some(d), _) => format!("{}@{d}", self.repo),
            (None, Some(t)) => format!("{}:{t}", self.repo),
            (None, None) => self.repo.clone(),
        }
    }

    /// The short form docker shows: `busybox:latest` for Docker Hub's library.
    pub fn familiar(&self) -> String {
        let repo = familiar_repo(&self.repo);
        match (&self.digest, self.tag_or_latest()) {
            (Some(d), _) => format!("{repo}@{d}"),
            (None, Some(t)) => format!("{repo}:{t}"),
            (None, None) => repo,
        }
    }
}

fn has_domain(repo: &str) -> bool {
    match repo.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// `busybox` → `docker.io/library/busybox`; `me/app` → `docker.io/me/app`.
pub fn normalize_repo(repo: &str) -> String {
    if has_domain(repo) {
        return repo.to_string();
    }
    if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    }
}

/// The reverse of [`normalize_repo`].
pub fn familiar_repo(repo: &str) -> String {
    let r = repo.strip_prefix("docker.io/").unwrap_or(repo);
    r.strip_prefix("library/").unwrap_or(r).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.repo, "docker.io/library/busybox");
        assert_eq!(r.tag_or_latest().as_deref(), Some("latest"));
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("127.0.0.1:5055/busybox:v1").unwrap();
        assert_eq!(r.repo, "127.0.0.1:5055/busybox");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.full(), "127.0.0.1:5055/busybox:v1");
        let r = Reference::parse("me/app@sha256:abc").unwrap();
        assert_eq!(r.repo, "docker.io/me/app");
        assert_eq!(r.tag_or_latest(), None);
        assert_eq!(r.full(), "docker.io/me/app@sha256:abc");
        assert_eq!(Reference::parse("localhost/x").unwrap().repo, "localhost/x");
        assert!(Reference::parse("Busybox").is_err());
        assert!(Reference::parse("a:").is_err());
    }
}
