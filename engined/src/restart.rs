//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`) with
//! dockerd's rules: whether an exit restarts the container, whether a daemon start
//! does, and the back-off between restarts.

use std::time::Duration;

use bollard_stubs::models::{HostConfig, RestartPolicyNameEnum};

use crate::error::{ApiError, ApiResult};

/// The first delay before a restart; it doubles on each quick exit.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// A container's restart policy, read from its HostConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    UnlessStopped,
    OnFailure { max_retries: i64 },
}

impl Policy {
    pub fn of(host: &HostConfig) -> Self {
        let Some(p) = &host.restart_policy else {
            return Policy::No;
        };
        match p.name {
            Some(RestartPolicyNameEnum::ALWAYS) => Policy::Always,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => Policy::UnlessStopped,
            Some(RestartPolicyNameEnum::ON_FAILURE) => Policy::OnFailure {
                max_retries: p.maximum_retry_count.unwrap_or(0),
            },
            _ => Policy::No,
        }
    }

    /// What dockerd refuses at create time.
    pub fn validate(host: &HostConfig) -> ApiResult<()> {
        let policy = Self::of(host);
        if let Some(p) = &host.restart_policy
            && p.maximum_retry_count.unwrap_or(0) != 0
            && !matches!(policy, Policy::OnFailure { .. })
        {
            return Err(ApiError::BadRequest(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                    .into(),
            ));
        }
        if let Policy::OnFailure { max_retries } = policy
            && max_retries < 0
        {
            return Err(ApiError::BadRequest(
                "invalid restart policy: maximum retry count cannot be negative".into(),
            ));
        }
        if policy != Policy::No && host.auto_remove.unwrap_or(false) {
            return Err(ApiError::BadRequest(
                "can't create 'AutoRemove' container with restart policy".into(),
            ));
        }
        Ok(())
    }

    /// Whether a container that exited with `exit_code` is started again, given
    /// whether the user stopped it and how many restarts it has had. A stop or kill
    /// of the current run cancels its restart before this is asked.
    pub fn should_restart(self, exit_code: i64, manually_stopped: bool, restarts: i64) -> bool {
        match self {
            Policy::No => false,
            Policy::Always => true,
            Policy::UnlessStopped => !manually_stopped,
            Policy::OnFailure { max_retries } => {
                exit_code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

/// The back-off of one container: 100 ms, doubling while runs stay short, up to
/// a minute; a run of 10 s or more starts over.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        let d = match self.delay {
            Some(d) if ran_for < RESET_AFTER => (d * 2).min(MAX_DELAY),
            _ => FIRST_DELAY,
        };
        self.delay = Some(d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::RestartPolicy;

    fn host(name: RestartPolicyNameEnum, max: i64, rm: bool) -> HostConfig {
        HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(name),
                maximum_retry_count: Some(max),
            }),
            auto_remove: Some(rm),
            ..Default::default()
        }
    }

    #[test]
    fn policies_follow_dockerd() {
        let always = Policy::of(&host(RestartPolicyNameEnum::ALWAYS, 0, false));
        assert!(always.should_restart(0, true, 100));
        let unless = Policy::of(&host(RestartPolicyNameEnum::UNLESS_STOPPED, 0, false));
        assert!(unless.should_restart(0, false, 0));
        assert!(!unless.should_restart(0, true, 0));
        let on_failure = Policy::of(&host(RestartPolicyNameEnum::ON_FAILURE, 2, false));
        assert!(!on_failure.should_restart(0, false, 0));
        assert!(on_failure.should_restart(1, false, 1));
        assert!(!on_failure.should_restart(1, false, 2));
        let forever = Policy::of(&host(RestartPolicyNameEnum::ON_FAILURE, 0, false));
        assert!(forever.should_restart(3, false, 1000));
        assert_eq!(Policy::of(&HostConfig::default()), Policy::No);
    }

    #[test]
    fn create_time_checks() {
        assert!(Policy::validate(&host(RestartPolicyNameEnum::ALWAYS, 0, true)).is_err());
        assert!(Policy::validate(&host(RestartPolicyNameEnum::ALWAYS, 3, false)).is_err());
        assert!(Policy::validate(&host(RestartPolicyNameEnum::ON_FAILURE, -1, false)).is_err());
        assert!(Policy::validate(&host(RestartPolicyNameEnum::ON_FAILURE, 3, false)).is_ok());
        assert!(Policy::validate(&host(RestartPolicyNameEnum::NO, 0, true)).is_ok());
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        assert_eq!(b.next(quick), Duration::from_millis(100));
        assert_eq!(b.next(quick), Duration::from_millis(200));
        assert_eq!(b.next(quick), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(11)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(quick);
        }
        assert_eq!(b.next(quick), MAX_DELAY);
    }
}
