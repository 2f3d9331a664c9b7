//! Turns what serde says about a bad setting into a [`ConfigError`] that names the field
//! (its dotted path), what is allowed there, what was given, and where it came from (the
//! file and line, or the environment variable).
//!
//! serde's own messages ("invalid type: string \"abc\", expected u32") name neither the
//! field nor, in terms a user knows, what is allowed; the path comes from
//! `serde_path_to_error`, and what is allowed from [`weir::allowed::for_path`],
//! the same ranges `Config::validate` enforces. Paths it does not know (a section as a
//! whole, a list) fall back to serde's "expected ..." text.

use weir::allowed;
use weir::ConfigError;

/// Where a bad value came from.
pub(crate) enum Origin<'a> {
    /// A file, with its text (to turn a byte offset into a line).
    File {
        path: &'a std::path::Path,
        text: &'a str,
        at: Option<usize>,
    },
    /// The merged layers; `env` lists the `WEIR__...` variables given.
    Layers { env: &'a [String] },
}

impl Origin<'_> {
    fn describe(&self, field: &str) -> Option<String> {
        match self {
            Origin::File { path, text, at } => Some(match at {
                Some(at) => {
                    let line = text[..(*at).min(text.len())].matches('\n').count() + 1;
                    format!("{}, line {line}", path.display())
                }
                None => path.display().to_string(),
            }),
            Origin::Layers { env } => {
                let wanted = field.to_ascii_lowercase();
                env.iter()
                    .find(|var| {
                        var.strip_prefix("WEIR__")
                            .is_some_and(|rest| rest.to_ascii_lowercase().replace("__", ".") == wanted)
                    })
                    .map(|var| format!("environment variable {var}"))
            }
        }
    }
}

/// The error for `message` (serde's) at `path` (serde_path_to_error's).
pub(crate) fn field_error(path: &str, message: &str, origin: &Origin<'_>) -> ConfigError {
    // The config crate appends where it found the key; the path says it better.
    let message = message.split(" for key `").next().unwrap_or(message);
    let from = |field: &str| {
        origin
            .describe(field)
            .map(|o| format!(" (in {o})"))
            .unwrap_or_default()
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, known) = rest.split_once('`').unwrap_or((rest, ""));
        // serde_path_to_error's path already ends at the unknown key.
        let field = if path.is_empty() || path == "." {
            name.to_string()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_string()
        } else {
            format!("{path}.{name}")
        };
        let known = known.trim_start_matches(", ").trim_start_matches("expected ");
        return ConfigError::Invalid {
            allowed: format!("a known key ({known})"),
            got: format!("an unknown key{}", from(&field)),
            field,
        };
    }
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(kind) {
            let (got, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, "a valid value"));
            let allowed = match allowed::for_path(path) {
                Some(allowed) => allowed,
                None if expected.starts_with("struct ") || expected.starts_with("a map") => {
                    format!("a table of settings (`[{path}]`)")
                }
                None => expected.to_string(),
            };
            return ConfigError::Invalid {
                field: path.to_string(),
                allowed,
                got: format!("{got}{}", from(path)),
            };
        }
    }
    let field = if path.is_empty() || path == "." {
        "configuration"
    } else {
        path
    };
    ConfigError::Parse(format!("{field}: {message}{}", from(field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field_what_is_allowed_and_the_variable() {
        let env = vec!["WEIR__RESOURCES__DB__MAX_CONCURRENT".to_string()];
        let e = field_error(
            "resources.db.max_concurrent",
            "invalid type: string \"x\", expected an integer for key `resources.db.max_concurrent` in the environment",
            &Origin::Layers { env: &env },
        );
        assert_eq!(
            e.to_string(),
            "resources.db.max_concurrent must be a whole number between 1 and 1000000, \
             got string \"x\" (in environment variable WEIR__RESOURCES__DB__MAX_CONCURRENT)"
        );
    }
}
