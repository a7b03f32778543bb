//! Fields that dockerd always puts in its answers and that clients other than the
//! docker CLI read without checking: docker-py's `containers.run` looks up
//! `HostConfig.LogConfig.Type` to decide whether it can read the logs back.

use bollard_stubs::models::{HostConfig, HostConfigLogConfig};

/// The host config as inspect shows it: the log driver filled in (json-file, the
/// only one engined has) when the create request named none.
pub fn inspect_host_config(mut h: HostConfig) -> HostConfig {
    let lc = h
        .log_config
        .get_or_insert_with(HostConfigLogConfig::default);
    if lc.typ.as_deref().is_none_or(str::is_empty) {
        lc.typ = Some("json-file".into());
    }
    lc.config.get_or_insert_with(Default::default);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_config_is_filled_in() {
        let h = inspect_host_config(HostConfig::default());
        let lc = h.log_config.unwrap();
        assert_eq!(lc.typ.as_deref(), Some("json-file"));
        assert!(lc.config.unwrap().is_empty());
    }
}
