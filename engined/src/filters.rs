//! The `filters` query parameter of list and prune endpoints:
//! `{"label":{"a=b":true},"dangling":{"true":true}}`, or the older list form
//! `{"label":["a=b"]}`.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Clone)]
pub struct Filters(HashMap<String, Vec<String>>);

impl Filters {
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::BadRequest(format!("invalid filters: {e}")))?;
        let Value::Object(m) = v else {
            return Err(ApiError::BadRequest(
                "invalid filters: not an object".into(),
            ));
        };
        let mut out = HashMap::new();
        for (k, v) in m {
            let vals = match v {
                Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(s, _)| s)
                    .collect(),
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            };
            out.insert(k, vals);
        }
        Ok(Self(out))
    }

    /// Refuses keys the endpoint does not know, with dockerd's message.
    pub fn only(&self, allowed: &[&str]) -> ApiResult<()> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::BadRequest(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// `dangling=true|1|false|0`: None when the filter is absent.
    pub fn boolean(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.get(key).first().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::BadRequest(format!(
                "invalid filter '{key}={other}'"
            ))),
        }
    }

    /// `label` (every one must match) and `label!` (none may).
    pub fn labels_match(&self, labels: &HashMap<String, String>) -> bool {
        let one = |spec: &String| match spec.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(spec),
        };
        self.get("label").iter().all(one) && !self.get("label!").iter().any(one)
    }

    /// `until`: a unix time (`1700000000[.nnn]`), an RFC 3339 time, or a duration
    /// before now (`10m`, `2h30m`); returns unix seconds.
    pub fn until(&self) -> ApiResult<Option<i64>> {
        let Some(v) = self.get("until").first() else {
            return Ok(None);
        };
        parse_time(v, crate::util::now_unix())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid filter 'until={v}'")))
    }
}

/// A Docker timestamp argument as unix seconds (`now` for durations).
pub fn parse_time(v: &str, now: i64) -> Option<i64> {
    if let Ok(n) = v.split('.').next().unwrap_or(v).parse::<i64>()
        && !v.ends_with(['s', 'm', 'h'])
    {
        return Some(n);
    }
    if let Some(n) = jsonlog::parse_rfc3339_nanos(v) {
        return Some((n / 1_000_000_000) as i64);
    }
    let mut total = 0i64;
    let mut num = String::new();
    for ch in v.chars() {
        match ch {
            '0'..='9' => num.push(ch),
            'h' | 'm' | 's' => {
                let n: i64 = num.parse().ok()?;
                total += n * match ch {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    (num.is_empty() && total > 0).then_some(now - total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let f = Filters::parse(Some(
            r#"{"label":{"a=b":true,"c":true},"dangling":["true"]}"#,
        ))
        .unwrap();
        assert_eq!(f.boolean("dangling").unwrap(), Some(true));
        let mut l = HashMap::from([("a".to_string(), "b".to_string())]);
        assert!(!f.labels_match(&l));
        l.insert("c".into(), String::new());
        assert!(f.labels_match(&l));
        assert!(f.only(&["label"]).is_err());
        assert!(Filters::parse(Some("[1]")).is_err());
        assert!(!Filters::parse(None).unwrap().has("label"));
    }

    #[test]
    fn times_as_docker_takes_them() {
        assert_eq!(parse_time("1700000000", 0), Some(1_700_000_000));
        assert_eq!(parse_time("1700000000.5", 0), Some(1_700_000_000));
        assert_eq!(parse_time("10m", 1000), Some(400));
        assert_eq!(parse_time("1h1s", 5000), Some(1399));
        assert_eq!(parse_time("2026-01-01T00:00:00Z", 0), Some(1_767_225_600));
        assert_eq!(parse_time("soon", 0), None);
    }
}
