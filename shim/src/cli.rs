//! containerd invokes shims with Go `flag`-style arguments
//! (`-namespace ns -id x -address a -publish-binary p [-debug] start`), so this
//! parses that syntax by hand rather than with clap's GNU conventions.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Launch the long-lived shim and print its address.
    Start,
    /// Clean up after a shim that is gone; print a DeleteResponse.
    Delete,
    /// Internal: the daemonized shim itself (started by `start`).
    Serve,
    Version,
}

#[derive(Debug, Clone)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("flag provided but not defined: {0}")]
    Unknown(String),
    #[error("flag needs an argument: -{0}")]
    Missing(String),
    #[error("argument is not valid UTF-8")]
    NotUtf8,
    #[error("no action given (start, delete)")]
    NoAction,
    #[error("unknown action {0:?}")]
    BadAction(String),
    #[error("-id is required")]
    NoId,
}

impl Flags {
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Flags, CliError> {
        let mut args = args
            .into_iter()
            .map(|a| a.into_string().map_err(|_| CliError::NotUtf8))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut f = Flags {
            namespace: String::new(),
            id: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            bundle: None,
            socket: None,
            debug: false,
            action: Action::Version,
        };
        let mut action = None;
        let mut version = false;
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                action.get_or_insert(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            match name.as_str() {
                "debug" => f.debug = inline.as_deref().is_none_or(|v| v == "true" || v == "1"),
                "v" | "version" => version = true,
                "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket" => {
                    let value = match inline {
                        Some(v) => v,
                        None => args.next().ok_or_else(|| CliError::Missing(name.clone()))?,
                    };
                    match name.as_str() {
                        "namespace" => f.namespace = value,
                        "id" => f.id = value,
                        "address" => f.address = value,
                        "publish-binary" => f.publish_binary = value,
                        "bundle" => f.bundle = Some(PathBuf::from(value)),
                        _ => f.socket = Some(PathBuf::from(value)),
                    }
                }
                _ => return Err(CliError::Unknown(name)),
            }
        }
        if version {
            return Ok(f);
        }
        f.action = match action.as_deref() {
            Some("start") => Action::Start,
            Some("delete") => Action::Delete,
            Some("serve") => Action::Serve,
            Some(other) => return Err(CliError::BadAction(other.to_string())),
            None => return Err(CliError::NoAction),
        };
        if f.id.is_empty() {
            return Err(CliError::NoId);
        }
        Ok(f)
    }

    /// The argument list that reproduces these flags, for re-executing the shim.
    pub fn to_args(&self, action: &str) -> Vec<String> {
        let mut v = vec![
            "-namespace".to_string(),
            self.namespace.clone(),
            "-id".to_string(),
            self.id.clone(),
            "-address".to_string(),
            self.address.clone(),
            "-publish-binary".to_string(),
            self.publish_binary.clone(),
        ];
        if let Some(s) = &self.socket {
            v.push("-socket".to_string());
            v.push(s.display().to_string());
        }
        if self.debug {
            v.push("-debug".to_string());
        }
        v.push(action.to_string());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Flags, CliError> {
        Flags::parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn containerd_start_line() {
        let f = parse("-namespace default -address /run/c.sock -publish-binary /usr/bin/containerd -id t1 -debug start").unwrap();
        assert_eq!(f.action, Action::Start);
        assert_eq!(f.namespace, "default");
        assert_eq!(f.id, "t1");
        assert_eq!(f.address, "/run/c.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert!(f.debug);
    }

    #[test]
    fn delete_with_bundle_and_equals() {
        let f = parse("--namespace=n -id=x -bundle /b delete").unwrap();
        assert_eq!(f.action, Action::Delete);
        assert_eq!(f.bundle.as_deref(), Some(std::path::Path::new("/b")));
        assert!(!f.debug);
    }

    #[test]
    fn rejects_unknown_and_missing() {
        assert!(matches!(parse("-bogus 1 start"), Err(CliError::Unknown(_))));
        assert!(matches!(parse("-id"), Err(CliError::Missing(_))));
        assert!(matches!(parse("-id x"), Err(CliError::NoAction)));
        assert!(matches!(parse("start"), Err(CliError::NoId)));
    }
}
