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
