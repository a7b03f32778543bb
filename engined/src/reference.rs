//! Docker image references: `busybox` is `docker.io/library/busybox:latest` in
//! containerd, and is shown back in its short ("familiar") form.

/// The full name containerd stores: registry, repository and tag (or digest).
pub fn normalize(name: &str) -> String {
    let (repo, tag) = split_tag(name);
    let first = repo.split('/').next().unwrap_or(repo);
    let has_domain =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_domain {
        repo.to_string()
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    match tag {
        Some(t) if t.starts_with("sha256:") => format!("{repo}@{t}"),
        Some(t) => format!("{repo}:{t}"),
        None => format!("{repo}:latest"),
    }
}

/// `repo` and the tag or digest of a reference, if it has one.
pub fn split_tag(name: &str) -> (&str, Option<&str>) {
    if let Some((r, d)) = name.split_once('@') {
        return (r, Some(d));
    }
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    }
}

/// The short form Docker prints: no `docker.io/library/` or `docker.io/`.
pub fn familiar(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("docker.io/library/") {
        rest.to_string()
    } else if let Some(rest) = name.strip_prefix("docker.io/") {
        rest.to_string()
    } else {
        name.to_string()
    }
}

/// Whether `s` is a valid reference (lowercase repository path, optional tag).
pub fn is_valid(s: &str) -> bool {
    let (repo, tag) = split_tag(s);
    let repo_ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase()
                        || ch.is_ascii_digit()
                        || matches!(ch, '.' | '_' | '-' | ':')
                })
        });
    let tag_ok = tag.is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | ':'))
    });
    repo_ok && tag_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normalize("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            normalize("127.0.0.1:5055/busybox"),
            "127.0.0.1:5055/busybox:latest"
        );
        assert_eq!(
            normalize("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("127.0.0.1:5055/b:1"), "127.0.0.1:5055/b:1");
        assert!(is_valid("busybox:latest"));
        assert!(!is_valid("BusyBox"));
        assert!(!is_valid("a b"));
    }
}
