//! What can go wrong in a command, and the exit status each case gives (docker's:
//! 125 for a bad command line, 1 for other failures, the container's own status
//! where the command reports one).

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag, argument or format (docker exits 125 for these).
    #[error("{0}")]
    Usage(String),
    /// The daemon refused the request.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    /// Nothing answers at the daemon's address.
    #[error("Cannot connect to engined at {host}. Is engined running?")]
    Connect { host: String },
    /// An error inside a 200 JSON-lines stream (pull, push, load, build).
    #[error("{0}")]
    Stream(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    /// Already reported (or nothing to say): exit with this status.
    #[error("exit status {0}")]
    Status(i32),
    /// An error that exits with a status of its own (`run`'s 125, 126, 127).
    #[error("{source}")]
    Coded {
        code: i32,
        #[source]
        source: Box<CliError>,
    },
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 125,
            CliError::Status(c) | CliError::Coded { code: c, .. } => *c,
            _ => 1,
        }
    }

    /// The HTTP status of a daemon error (404 for a missing container or image).
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Daemon { status, .. } => Some(*status),
            CliError::Coded { source, .. } => source.status(),
            _ => None,
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Io { context, source }
    }
}

/// The io error our transport reports when the daemon's socket does not answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {host}: {source}")]
pub struct ConnectError {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

impl From<bollard::errors::Error> for CliError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => CliError::Daemon {
                status: status_code,
                message,
            },
            B::DockerContainerWaitError { error, code } if error.is_empty() => {
                CliError::Status(code as i32)
            }
            B::DockerContainerWaitError { error, .. } => CliError::Other(error),
            B::DockerStreamError { error } => CliError::Stream(error),
            B::IOError { err } => io_to_cli(err),
            B::RequestTimeoutError => CliError::Other("timed out waiting for the daemon".into()),
            other => CliError::Other(other.to_string()),
        }
    }
}

fn io_to_cli(err: std::io::Error) -> CliError {
    let connect = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectError>())
        .map(|c| c.host.clone());
    match connect {
        Some(host) => CliError::Connect { host },
        None => CliError::Io {
            context: "talking to the daemon".into(),
            source: err,
        },
    }
}

impl From<hyper::Error> for CliError {
    fn from(e: hyper::Error) -> Self {
        CliError::Other(format!("talking to the daemon: {e}"))
    }
}
