//! Configuration profiles: `config/dev.toml`, `config/prod.toml` and `config/test.toml`,
//! embedded in the binary and layered over the default when `WEIR_PROFILE` names one.

use weir::ConfigError;

/// The environment variable that selects a profile (`WEIR_PROFILE=prod`).
pub const PROFILE_VAR: &str = "WEIR_PROFILE";

/// The profiles weir ships, by name, with their TOML text.
pub const PROFILES: [(&str, &str); 3] = [
    ("dev", include_str!("../../../config/dev.toml")),
    ("prod", include_str!("../../../config/prod.toml")),
    ("test", include_str!("../../../config/test.toml")),
];

/// The TOML text of profile `name`, or an error naming the allowed profiles.
///
/// ```
/// assert!(weir_actors::profile_toml("prod").unwrap().contains("[quotas.per_user]"));
/// let err = weir_actors::profile_toml("staging").unwrap_err();
/// assert_eq!(err.to_string(), "WEIR_PROFILE must be one of dev, prod, test, got staging");
/// ```
pub fn profile_toml(name: &str) -> Result<&'static str, ConfigError> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| ConfigError::Invalid {
            field: PROFILE_VAR.into(),
            allowed: "one of dev, prod, test".into(),
            got: name.into(),
        })
}
