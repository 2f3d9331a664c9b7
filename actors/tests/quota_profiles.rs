//! Profiles (issue 6): `WEIR_PROFILE` selects dev, prod or test, which set the quotas.

use std::io::Write;
use std::time::Duration;

use weir::{ConfigError, QuotaScope, WindowConfig};
use weir_actors::{load_config_from, PROFILES};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_profile_loads_and_sets_tenant_and_global_quotas() {
    for (name, _) in PROFILES {
        let cfg = load_config_from(None, env(&[("WEIR_PROFILE", name)])).unwrap();
        let scopes: Vec<_> = cfg.quotas.values().map(|q| q.scope).collect();
        assert!(scopes.contains(&QuotaScope::Tenant), "{name}");
        assert!(scopes.contains(&QuotaScope::Global), "{name}");
    }
    let plain = load_config_from(None, env(&[])).unwrap();
    assert!(plain.quotas.is_empty(), "no profile, no quotas");
}

#[test]
fn the_prod_profile_carries_the_seed_numbers() {
    let cfg = load_config_from(None, env(&[("WEIR_PROFILE", "prod")])).unwrap();
    let per_user = &cfg.quotas["per_user"];
    let w = |limit, secs| WindowConfig {
        limit,
        per: Duration::from_secs(secs),
    };
    assert_eq!(per_user.windows, vec![w(10, 60), w(100, 3600), w(500, 86_400)]);
    assert_eq!(per_user.cost_budget, Some(5_000_000));
    assert_eq!(per_user.cost_window, Some(Duration::from_secs(86_400)));
    let global = &cfg.quotas["global"];
    assert_eq!(global.windows, vec![w(1000, 3600)]);
    assert_eq!(global.cost_budget, Some(100_000_000));
    assert_eq!(cfg.scheduler.max_concurrent, 100);
}

#[test]
fn a_file_and_variables_override_the_profile() {
    let mut file = tempfile();
    writeln!(
        file.1,
        "[quotas.per_user]\nwindows = [{{ limit = 3, per = \"1s\" }}]"
    )
    .unwrap();
    let cfg = load_config_from(
        Some(&file.0),
        env(&[
            ("WEIR_PROFILE", "prod"),
            ("WEIR__QUOTAS__GLOBAL__COST_BUDGET", "7"),
        ]),
    )
    .unwrap();
    assert_eq!(
        cfg.quotas["per_user"].windows,
        vec![WindowConfig {
            limit: 3,
            per: Duration::from_secs(1)
        }],
        "the file's windows replace the profile's"
    );
    assert_eq!(cfg.quotas["global"].cost_budget, Some(7));
    std::fs::remove_file(&file.0).ok();
}

#[test]
fn an_unknown_profile_is_an_error_naming_the_variable() {
    let err = load_config_from(None, env(&[("WEIR_PROFILE", "staging")])).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Invalid {
            field: "WEIR_PROFILE".into(),
            allowed: "one of dev, prod, test".into(),
            got: "staging".into(),
        }
    );
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("weir-quota-profile-{}.toml", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
