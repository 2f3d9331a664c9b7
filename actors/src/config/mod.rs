//! Loading the configuration: the embedded default, then the profile `WEIR_PROFILE`
//! names (dev, prod, test) if set, then an optional file, then `WEIR__SECTION__KEY`
//! environment variables, each layer over the last.

mod errors;
mod profile;

use std::path::Path;

use weir::{Config, ConfigError, DEFAULT_TOML};

pub use profile::{profile_toml, PROFILES, PROFILE_VAR};

use errors::{field_error, Origin};

/// Loads and validates the configuration.
///
/// `WEIR_PROFILE=dev|prod|test` layers that profile (`config/<name>.toml`, embedded) over
/// the default, below the file. `file`, when given, must exist. Variables such as `WEIR__SCHEDULER__MAX_CONCURRENT=80`
/// or `WEIR__RESOURCES__STORE__MAX_CONCURRENT=10` override single keys (names are lower-cased).
///
/// ```
/// let cfg = weir_actors::load_config(None).unwrap();
/// assert!(cfg.scheduler.max_concurrent >= 1);
/// ```
pub fn load_config(file: Option<&Path>) -> Result<Config, ConfigError> {
    load_config_from(file, std::env::vars())
}

/// [`load_config`] with the environment given explicitly (for tests and embedding).
pub fn load_config_from(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut builder =
        config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
    if let Some((_, name)) = env.iter().find(|(k, _)| k == PROFILE_VAR) {
        let text = profile_toml(name)?;
        builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
    }
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::Parse(format!(
                "configuration file {} does not exist or is not a file",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Parse(format!("cannot read {}: {e}", path.display())))?;
        // Read the file alone first, so a bad key or value is reported with the file's
        // own line.
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?;
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let origin = Origin::File {
                path,
                text: &text,
                at: e.inner().span().map(|s| s.start),
            };
            if e.path().to_string() == "."
                && e.inner().span().is_some()
                && !e.inner().message().starts_with("unknown field")
            {
                // A syntax error: no field to name, the line and column say where.
                ConfigError::Parse(format!("{}: {}", path.display(), e.inner()))
            } else {
                field_error(&e.path().to_string(), e.inner().message(), &origin)
            }
        })?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let vars: config::Map<String, String> =
        env.into_iter().filter(|(k, _)| k.starts_with("WEIR__")).collect();
    let names: Vec<String> = vars.keys().cloned().collect();
    builder = builder.add_source(
        config::Environment::with_prefix("WEIR")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(vars)),
    );
    let merged = builder.build().map_err(|e| ConfigError::Parse(e.to_string()))?;
    let cfg: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
        field_error(
            &e.path().to_string(),
            &e.inner().to_string(),
            &Origin::Layers { env: &names },
        )
    })?;
    cfg.validate()?;
    Ok(cfg)
}
