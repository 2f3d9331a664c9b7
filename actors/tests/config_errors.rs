//! Bad configuration (issue 8): every class of mistake gets an error naming the field and
//! what is allowed, through the loader services use (`weir_actors::load_config_from`),
//! and loading never panics on any text or environment.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use weir::ConfigError;
use weir_actors::load_config_from;

/// A file under the temp dir with `text`, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "weir-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("temp file");
        Self(path)
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn from_file(text: &str) -> Result<weir::Config, ConfigError> {
    let file = TempToml::new(text);
    load_config_from(Some(&file.0), std::iter::empty())
}

fn from_env(key: &str, value: &str) -> Result<weir::Config, ConfigError> {
    load_config_from(None, [(key.to_string(), value.to_string())])
}

/// Asserts an `Invalid` error on `field` whose allowed text contains `allowed` and whose
/// message mentions `got`.
#[track_caller]
fn assert_invalid(result: Result<weir::Config, ConfigError>, field: &str, allowed: &str, got: &str) {
    match result {
        Err(e @ ConfigError::Invalid { .. }) => {
            let ConfigError::Invalid {
                field: f,
                allowed: a,
                got: g,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(f, field, "{e}");
            assert!(a.contains(allowed), "allowed {a:?} lacks {allowed:?}: {e}");
            assert!(g.contains(got), "got {g:?} lacks {got:?}: {e}");
            assert!(e.to_string().starts_with(&format!("{field} must be ")), "{e}");
        }
        other => panic!("expected an Invalid error on {field}, got {other:?}"),
    }
}

#[test]
fn zero_and_negative_caps_name_the_field_and_the_range() {
    assert_invalid(
        from_file("[scheduler]\nmax_concurrent = 0\n"),
        "scheduler.max_concurrent",
        "between 1 and 1000000",
        "0",
    );
    assert_invalid(
        from_file("[scheduler]\nmax_concurrent = -3\n"),
        "scheduler.max_concurrent",
        "between 1 and 1000000",
        "-3",
    );
    assert_invalid(
        from_file("[resources.db]\nmax_concurrent = -1\n"),
        "resources.db.max_concurrent",
        "between 1 and 1000000",
        "line 2",
    );
    assert_invalid(
        from_file("[tenants.acme]\nweight = 0\n"),
        "tenants.acme.weight",
        "between 1 and 1000",
        "0",
    );
    assert_invalid(
        from_file("[scheduler]\nmax_queued = 0\n"),
        "scheduler.max_queued",
        "at least 1",
        "0",
    );
    assert_invalid(
        from_file("[runtime]\nworker_threads = 5000\n"),
        "runtime.worker_threads",
        "between 0 and 1024",
        "5000",
    );
    assert_invalid(
        from_file("[runtime]\ninline_poll_limit = \"2s\"\n"),
        "runtime.inline_poll_limit",
        "between 0s and 1s",
        "2s",
    );
    match from_file("[resources.store]\nbodies = \"elsewhere\"\n") {
        Err(ConfigError::Parse(e)) => assert!(
            e.starts_with("resources.store.bodies: unknown variant `elsewhere`")
                && e.contains("`auto`, `inline`, `threads`"),
            "{e}"
        ),
        other => panic!("expected a parse error naming resources.store.bodies, got {other:?}"),
    }
    let config = from_file("[resources.store]\nbodies = \"threads\"\n").expect("valid");
    assert_eq!(config.resources["store"].bodies, weir::Bodies::Threads);
}

#[test]
fn out_of_range_and_malformed_timeouts_name_the_field_and_the_range() {
    assert_invalid(
        from_file("[scheduler]\nslot_lease_timeout = \"0s\"\n"),
        "scheduler.slot_lease_timeout",
        "between 1ms and 7days",
        "0s",
    );
    assert_invalid(
        from_file("[scheduler]\nslot_wait_timeout = \"30days\"\n"),
        "scheduler.slot_wait_timeout",
        "between 0s and 7days",
        "30days",
    );
    assert_invalid(
        from_file("[scheduler]\nbatch_delay = \"2h\"\n"),
        "scheduler.batch_delay",
        "between 0s and 1h",
        "2h",
    );
    assert_invalid(
        from_file("[resources.db]\nslot_lease_timeout = \"forever\"\n"),
        "resources.db.slot_lease_timeout",
        "a duration",
        "forever",
    );
    assert_invalid(
        from_file("[scheduler]\nslot_lease_timeout = \"100000000000000000000000y\"\n"),
        "scheduler.slot_lease_timeout",
        "a duration",
        "100000000000000000000000y",
    );
}

#[test]
fn unknown_keys_name_the_key_and_the_known_ones() {
    assert_invalid(
        from_file("[scheduler]\nmax_concurent = 5\n"),
        "scheduler.max_concurent",
        "`max_concurrent`",
        "line 2",
    );
    assert_invalid(
        from_file("[schedular]\n"),
        "schedular",
        "`scheduler`",
        "unknown key",
    );
    assert_invalid(
        from_file("[resources.db]\nmax = 1\n"),
        "resources.db.max",
        "`max_concurrent`",
        "unknown key",
    );
    assert_invalid(
        from_env("WEIR__SCHEDULER__MAX_CONCURANT", "5"),
        "scheduler.max_concurant",
        "`max_concurrent`",
        "WEIR__SCHEDULER__MAX_CONCURANT",
    );
}

#[test]
fn wrong_types_name_the_field_what_is_allowed_and_what_was_given() {
    assert_invalid(
        from_file("[scheduler]\nmax_concurrent = \"many\"\n"),
        "scheduler.max_concurrent",
        "a whole number",
        "\"many\"",
    );
    assert_invalid(
        from_file("[scheduler]\nmax_concurrent = 2.5\n"),
        "scheduler.max_concurrent",
        "a whole number",
        "2.5",
    );
    assert_invalid(
        from_file("[scheduler]\nslot_lease_timeout = 300\n"),
        "scheduler.slot_lease_timeout",
        "like \"300s\"",
        "300",
    );
    assert_invalid(
        from_file("[runtime]\nown_thread = \"yes\"\n"),
        "runtime.own_thread",
        "true or false",
        "\"yes\"",
    );
    assert_invalid(from_file("scheduler = 5\n"), "scheduler", "[scheduler]", "5");
}

#[test]
fn bad_environment_values_name_the_field_and_the_variable() {
    assert_invalid(
        from_env("WEIR__SCHEDULER__MAX_CONCURRENT", "abc"),
        "scheduler.max_concurrent",
        "a whole number between 1 and 1000000",
        "WEIR__SCHEDULER__MAX_CONCURRENT",
    );
    assert_invalid(
        from_env("WEIR__SCHEDULER__MAX_CONCURRENT", "-1"),
        "scheduler.max_concurrent",
        "between 1 and 1000000",
        "-1",
    );
    assert_invalid(
        from_env("WEIR__SCHEDULER__MAX_CONCURRENT", "0"),
        "scheduler.max_concurrent",
        "between 1 and 1000000",
        "0",
    );
    assert_invalid(
        from_env("WEIR__SCHEDULER__SLOT_LEASE_TIMEOUT", "soon"),
        "scheduler.slot_lease_timeout",
        "a duration",
        "WEIR__SCHEDULER__SLOT_LEASE_TIMEOUT",
    );
    assert_invalid(
        from_env("WEIR__RESOURCES__DB__MAX_CONCURRENT", "x"),
        "resources.db.max_concurrent",
        "a whole number",
        "WEIR__RESOURCES__DB__MAX_CONCURRENT",
    );
    assert_invalid(
        from_env("WEIR__RUNTIME__OWN_THREAD", "maybe"),
        "runtime.own_thread",
        "true or false",
        "maybe",
    );
    // A good variable still overrides the file and the default.
    let cfg = from_env("WEIR__SCHEDULER__MAX_CONCURRENT", "7").unwrap();
    assert_eq!(cfg.scheduler.max_concurrent, 7);
}

#[test]
fn missing_files_and_syntax_errors_say_which_file_and_where() {
    let missing = std::env::temp_dir().join("weir-no-such-config.toml");
    let e = load_config_from(Some(&missing), std::iter::empty()).unwrap_err();
    assert!(
        e.to_string().contains("weir-no-such-config.toml") && e.to_string().contains("does not exist"),
        "{e}"
    );
    let e = from_file("[scheduler\nmax_concurrent = 5\n").unwrap_err();
    assert!(matches!(e, ConfigError::Parse(_)), "{e:?}");
    assert!(e.to_string().contains("line 1"), "{e}");
}

/// Keys the generator draws from: real ones (so values reach deserialization and
/// validation) and near misses.
const KEYS: &[&str] = &[
    "SCHEDULER__MAX_CONCURRENT",
    "SCHEDULER__SLOT_LEASE_TIMEOUT",
    "SCHEDULER__SLOT_WAIT_TIMEOUT",
    "SCHEDULER__ORG_BATCH_SIZE",
    "SCHEDULER__BATCH_DELAY",
    "SCHEDULER__MAX_QUEUED",
    "SCHEDULER__QUANTUM",
    "RUNTIME__WORKER_THREADS",
    "RUNTIME__OWN_THREAD",
    "RESOURCES__DB__MAX_CONCURRENT",
    "RESOURCES__DB__SLOT_LEASE_TIMEOUT",
    "TENANTS__ACME__WEIGHT",
    "SCHEDULER",
    "",
    "__",
    "SCHEDULER__",
    "RESOURCES____MAX_CONCURRENT",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        (
            any::<u64>(),
            prop::sample::select(vec!["ns", "ms", "s", "m", "h", "days", "y", "x"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        Just("true".to_string()),
        Just("[1, 2]".to_string()),
        Just("{a = 1}".to_string()),
    ]
}

fn toml_text() -> impl Strategy<Value = String> {
    let line = (
        prop::sample::select(vec![
            "[scheduler]",
            "[runtime]",
            "[resources.db]",
            "[tenants.acme]",
            "[quotas.q]",
            "[coalesce.k]",
            "[[intervals]]",
            "",
        ]),
        prop::sample::select(vec![
            "max_concurrent",
            "slot_lease_timeout",
            "slot_wait_timeout",
            "org_batch_size",
            "batch_delay",
            "max_queued",
            "quantum",
            "worker_threads",
            "own_thread",
            "weight",
            "zzz",
        ]),
        value(),
        any::<bool>(),
    )
        .prop_map(|(section, key, value, quote)| {
            let value = if quote { format!("{value:?}") } else { value };
            format!("{section}\n{key} = {value}\n")
        });
    prop_oneof![
        any::<String>(),
        prop::collection::vec(line, 0..6).prop_map(|lines| lines.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any file text and any `WEIR__` variables: loading returns Ok with a valid config
    /// or a typed error with a message; it never panics.
    #[test]
    fn loading_never_panics_on_any_text_or_environment(
        text in toml_text(),
        env in prop::collection::vec((prop::sample::select(KEYS.to_vec()), value()), 0..4),
    ) {
        let file = TempToml::new(&text);
        let env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (format!("WEIR__{k}"), v)).collect();
        match load_config_from(Some(&file.0), env) {
            Ok(cfg) => prop_assert!(cfg.validate().is_ok()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
