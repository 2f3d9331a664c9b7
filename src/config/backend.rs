//! Where a resource's slots live: in this process (the default) or in a pool shared by
//! many processes through Redis.
//!
//! This module holds only the configuration and its validation; the Redis pool and the
//! actor that talks to it live in the runtime crate (`weir-actors`).
//!
//! ```toml
//! [backends.store]
//! backend = "redis"
//! url = "redis://127.0.0.1:6379"
//! key_prefix = "weir"
//! lease_ttl = "30s"
//! renewal_interval = "10s"
//! on_failure = "fail_open_local"
//! local_cap = 5
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{KEY_PREFIX, LEASE_TTL, LOCAL_CAP, REDIS_URL, RENEWAL_INTERVAL};
use super::range::show;
use super::ConfigError;

/// Which pool grants a resource's slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Slots are granted by this process's supervisor alone (the default).
    #[default]
    InProcess,
    /// Every grant also takes a lease from a pool shared through Redis, so the cap holds
    /// across every process configured with the same URL, prefix and resource.
    Redis,
}

/// What a Redis-backed resource does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// No new grants while Redis is unreachable; waiting jobs wait, or skip by their wait
    /// timeout (the default: the global cap is never exceeded).
    #[default]
    FailClosed,
    /// Admit up to `local_cap` jobs at once in this process without a lease, each
    /// admission counted in stats and traced. The global cap may then be exceeded by up
    /// to `local_cap` per process.
    FailOpenLocal,
}

/// The slot backend of one resource (`[backends.<resource>]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `in_process` (default) or `redis`.
    pub backend: BackendKind,
    /// The Redis server (`redis://host:port/db`); required with `backend = "redis"`.
    pub url: String,
    /// Prefix of every key weir writes (default `weir`); processes that share a cap use
    /// the same prefix and resource name.
    pub key_prefix: String,
    /// How long a lease lives without renewal, on the Redis server's clock (100 ms ..= 1 h;
    /// default 30 s). A process that dies loses its slots to others after at most this.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often held leases are renewed (10 ms ..= 1 h, and at most half of
    /// `lease_ttl`; default 10 s).
    #[serde(with = "humantime_serde")]
    pub renewal_interval: Duration,
    /// `fail_closed` (default) or `fail_open_local`.
    pub on_failure: FailurePolicy,
    /// Jobs this process admits at once without a lease under `fail_open_local`
    /// (1 ..= 1,000,000; default 1).
    pub local_cap: u32,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::InProcess,
            url: String::new(),
            key_prefix: "weir".into(),
            lease_ttl: Duration::from_secs(30),
            renewal_interval: Duration::from_secs(10),
            on_failure: FailurePolicy::FailClosed,
            local_cap: 1,
        }
    }
}

impl BackendConfig {
    /// Checks the fields of the backend of `resource`; the error names the field.
    ///
    /// ```
    /// use weir::{BackendConfig, BackendKind};
    /// let mut b = BackendConfig { backend: BackendKind::Redis, ..Default::default() };
    /// let e = b.validate("store").unwrap_err();
    /// assert_eq!(e.to_string(), "backends.store.url must be a redis:// or rediss:// URL, got \"\"");
    /// b.url = "redis://127.0.0.1:6379".into();
    /// assert!(b.validate("store").is_ok());
    /// ```
    pub fn validate(&self, resource: &str) -> Result<(), ConfigError> {
        if self.backend == BackendKind::InProcess {
            return Ok(());
        }
        let field = |name: &str| format!("backends.{resource}.{name}");
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(ConfigError::invalid(
                field("url"),
                REDIS_URL,
                format!("{:?}", self.url),
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                field("key_prefix"),
                KEY_PREFIX,
                format!("{:?}", self.key_prefix),
            ));
        }
        LEASE_TTL.check(&field("lease_ttl"), self.lease_ttl)?;
        // The upper bound is another field's value; the message names that field.
        let half = self.lease_ttl / 2;
        if !(RENEWAL_INTERVAL.contains(self.renewal_interval) && self.renewal_interval <= half) {
            return Err(ConfigError::invalid(
                field("renewal_interval"),
                format!(
                    "between {} and half of lease_ttl ({})",
                    show(RENEWAL_INTERVAL.min),
                    show(half)
                ),
                show(self.renewal_interval),
            ));
        }
        LOCAL_CAP.check(&field("local_cap"), self.local_cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn redis_backend_parses_from_toml() {
        let cfg = Config::from_toml_str(
            "[backends.store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:1\"\nlease_ttl = \"2s\"\n\
             renewal_interval = \"500ms\"\non_failure = \"fail_open_local\"\nlocal_cap = 3\n",
        )
        .unwrap();
        let b = &cfg.backends["store"];
        assert_eq!(b.backend, BackendKind::Redis);
        assert_eq!(b.lease_ttl, Duration::from_secs(2));
        assert_eq!(b.on_failure, FailurePolicy::FailOpenLocal);
        assert_eq!(b.local_cap, 3);
        assert_eq!(b.key_prefix, "weir");
    }

    #[test]
    fn errors_name_the_backend_field() {
        let base = "[backends.store]\nbackend = \"redis\"\nurl = \"redis://h\"\n";
        let cases = [
            (
                "lease_ttl = \"10ms\"\n",
                "backends.store.lease_ttl must be between 100ms and 1h",
            ),
            (
                "renewal_interval = \"20s\"\n",
                "backends.store.renewal_interval must be between 10ms and half of lease_ttl (15s)",
            ),
            (
                "local_cap = 0\n",
                "backends.store.local_cap must be between 1 and 1000000",
            ),
            (
                "key_prefix = \"\"\n",
                "backends.store.key_prefix must be non-empty",
            ),
        ];
        for (extra, want) in cases {
            let e = Config::from_toml_str(&format!("{base}{extra}")).unwrap_err();
            assert!(e.to_string().starts_with(want), "{e}");
        }
        let e = Config::from_toml_str("[backends.store]\nbackend = \"memcached\"\n").unwrap_err();
        assert!(e.to_string().contains("backend"), "{e}");
        let e =
            Config::from_toml_str("[backends.store]\nbackend = \"redis\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(e.to_string().starts_with("backends.store.url"), "{e}");
    }

    #[test]
    fn in_process_is_the_default_and_needs_nothing() {
        let cfg = Config::from_toml_str("[backends.store]\n").unwrap();
        assert_eq!(cfg.backends["store"].backend, BackendKind::InProcess);
        assert_eq!(Config::default().backend("store").backend, BackendKind::InProcess);
    }
}
