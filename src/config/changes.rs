//! What differs between two configurations, field by field: what a live reconfiguration
//! logs, reports and refuses by.
//!
//! Both sides are serialized through the same serde representation the files are read
//! from, so a field's path here is the path a user writes (`resources.store.max_concurrent`)
//! and a value reads as it would in the file (`"30s"`, not nanoseconds).

use std::fmt;

use super::Config;

/// One setting that differs between two configurations.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Dotted path of the field (`resources.store.max_concurrent`, `tenants.acme.weight`).
    pub field: String,
    /// Its value before, as TOML (`None`: not set, the default applied).
    pub from: Option<String>,
    /// Its value after, as TOML (`None`: no longer set, the default applies).
    pub to: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unset = "(unset)";
        write!(
            f,
            "{}: {} -> {}",
            self.field,
            self.from.as_deref().unwrap_or(unset),
            self.to.as_deref().unwrap_or(unset)
        )
    }
}

/// The settings a reconfiguration changed, in field order; empty when the new
/// configuration equals the one in force.
///
/// ```
/// use weir::{Changes, Config};
/// let old = Config::from_toml_str("[resources.store]\nmax_concurrent = 50\n").unwrap();
/// let new = Config::from_toml_str("[resources.store]\nmax_concurrent = 30\n[tenants.acme]\nweight = 2\n").unwrap();
/// let changes = Changes::between(&old, &new);
/// assert_eq!(changes.to_string(), "resources.store.max_concurrent: 50 -> 30; tenants.acme.weight: (unset) -> 2");
/// assert!(Changes::between(&new, &new).is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// The changed fields.
    pub fields: Vec<Change>,
}

impl Changes {
    /// The fields that differ from `old` to `new`.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut fields = Vec::new();
        diff("", Some(&as_value(old)), Some(&as_value(new)), &mut fields);
        Changes { fields }
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The changed fields.
    pub fn iter(&self) -> impl Iterator<Item = &Change> {
        self.fields.iter()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

fn as_value(config: &Config) -> toml::Value {
    // Every field of `Config` is a plain value, table or array: it always serializes.
    toml::Value::try_from(config).unwrap_or_else(|_| toml::Value::Table(toml::Table::new()))
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Walks tables key by key; anything else (a value, an array such as a quota's
/// `windows` or the `intervals` table) is compared whole, so one change reads as one line.
fn diff(path: &str, old: Option<&toml::Value>, new: Option<&toml::Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                diff(&join(path, key), a.get(key), b.get(key), out);
            }
        }
        (Some(toml::Value::Table(a)), None) => {
            for (key, v) in a {
                diff(&join(path, key), Some(v), None, out);
            }
        }
        (None, Some(toml::Value::Table(b))) => {
            for (key, v) in b {
                diff(&join(path, key), None, Some(v), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            field: path.to_string(),
            from: a.map(ToString::to_string),
            to: b.map(ToString::to_string),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every section serializes, so equal configurations differ in nothing and one changed
    /// field is the one change (a section that failed to serialize would read as a change
    /// of every field, and a reconfiguration would be refused for a fixed one).
    #[test]
    fn every_section_serializes_and_one_change_is_one_line() {
        let mut rich = Config::embedded_default();
        for text in [
            include_str!("../../config/providers.toml"),
            include_str!("../../config/limit-shift.toml"),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let weir: Config = table["weir"].clone().try_into().unwrap();
            rich.resources.extend(weir.resources);
        }
        rich.coalesce
            .insert("counts".into(), crate::config::CoalesceConfig::default());
        rich.quotas = Config::from_toml_str(
            "[quotas.per_user]\nwindows = [{ limit = 10, per = \"1m\" }]\ncost_budget = 5\ncost_window = \"1day\"\n",
        )
        .unwrap()
        .quotas;
        rich.backends.insert(
            "a".into(),
            crate::config::BackendConfig {
                backend: crate::config::BackendKind::Redis,
                url: "redis://127.0.0.1/".into(),
                ..Default::default()
            },
        );
        rich.tenants
            .insert("acme".into(), crate::config::TenantConfig { weight: 2 });
        assert!(as_value(&rich).as_table().is_some_and(|t| t.len() >= 8));
        assert!(Changes::between(&rich, &rich).is_empty());
        let mut next = rich.clone();
        next.resources
            .get_mut("a")
            .unwrap()
            .breaker
            .as_mut()
            .unwrap()
            .cooldown = std::time::Duration::from_secs(90);
        let c = Changes::between(&rich, &next);
        assert_eq!(
            c.to_string(),
            "resources.a.breaker.cooldown: \"1m\" -> \"1m 30s\""
        );
    }

    #[test]
    fn a_new_section_lists_each_of_its_fields_and_durations_read_as_written() {
        let old = Config::default();
        let new = Config::from_toml_str(
            "[resources.api]\nslot_wait_timeout = \"5s\"\n[resources.api.rate_limit]\nrequests = 10\nper = \"1s\"\n",
        )
        .unwrap();
        let c = Changes::between(&old, &new);
        let fields: Vec<&str> = c.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"resources.api.slot_wait_timeout"), "{c}");
        assert!(fields.contains(&"resources.api.rate_limit.requests"), "{c}");
        let wait = c
            .iter()
            .find(|c| c.field == "resources.api.slot_wait_timeout")
            .unwrap();
        assert_eq!((wait.from.as_deref(), wait.to.as_deref()), (None, Some("\"5s\"")));
    }
}
