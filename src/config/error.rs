//! The one error type of configuration, and its one constructor for an out-of-range value.

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of its allowed range.
    #[error("{field} must be {allowed}, got {got}")]
    Invalid {
        /// Dotted path of the field (`scheduler.max_concurrent`).
        field: String,
        /// What is allowed (`at least 1`).
        allowed: String,
        /// What was given.
        got: String,
    },
    /// The text could not be read as a configuration (syntax, unknown key, wrong type).
    #[error("invalid configuration: {0}")]
    Parse(String),
}

impl ConfigError {
    /// A value out of its allowed range: `field` must be `allowed`, got `got`.
    ///
    /// ```
    /// let e = weir::ConfigError::invalid("scheduler.max_queued", "at least 1", 0);
    /// assert_eq!(e.to_string(), "scheduler.max_queued must be at least 1, got 0");
    /// ```
    pub fn invalid(field: impl Into<String>, allowed: impl Into<String>, got: impl ToString) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            allowed: allowed.into(),
            got: got.to_string(),
        }
    }
}
