//! A whole new configuration applied to the live core: checked exactly as at start, then
//! each setting carried over without losing a job, a count or a window's history.
//!
//! What changes live and what does not is decided here, once: the shell only carries the
//! fan-out schedule (it stamps release times at submission) and publishes the result.

use std::time::Duration;

use crate::adaptive::AdaptiveLimit;
use crate::config::{Change, Changes, Config, ConfigError};
use crate::guard::Guard;
use crate::job::ResourceId;

use super::Scheduler;

/// Settings the running runtime was built from and cannot change without a restart:
/// its threads, the slot backends (brokers started with it), what it exports, and the
/// `max_queued` bound its submitters check before the core hears of a job.
const FIXED: [&str; 4] = ["runtime", "backends", "metrics", "scheduler.max_queued"];

fn is_fixed(field: &str) -> bool {
    FIXED
        .iter()
        .any(|f| field == *f || field.strip_prefix(f).is_some_and(|rest| rest.starts_with('.')))
}

/// The sections kept in Redis (`quotas.NAME`, `resources.NAME.rate_limit` with
/// `backend = "redis"`) in `config`: their brokers and scripts are set up at start, so
/// they too change only with a restart.
fn shared_sections(config: &Config) -> Vec<String> {
    let quotas = config
        .quotas
        .iter()
        .filter(|(_, q)| q.backend == crate::BackendKind::Redis)
        .map(|(name, _)| format!("quotas.{name}"));
    let rates = config.resources.iter().filter_map(|(name, r)| {
        r.rate_limit
            .as_ref()
            .filter(|l| l.backend == crate::BackendKind::Redis)
            .map(|_| format!("resources.{name}.rate_limit"))
    });
    quotas.chain(rates).collect()
}

fn under(field: &str, section: &str) -> bool {
    field == section
        || field
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.'))
}

fn refuse_fixed(c: &Change) -> ConfigError {
    ConfigError::invalid(
        &c.field,
        format!(
            "unchanged while the runtime runs (it is {}; restart to change it)",
            c.from.as_deref().unwrap_or("unset")
        ),
        c.to.as_deref().unwrap_or("unset"),
    )
}

impl<T> Scheduler<T> {
    /// Applies a new configuration to the live core at `now`, or refuses it and changes
    /// nothing. It is checked by [`Config::validate`], so the errors are those of a
    /// start, naming the field; a change to a setting that only a restart can apply
    /// (`runtime.*`, `backends.*`, `metrics.*`, `scheduler.max_queued`, and any quota or
    /// rate limit kept in Redis, whose broker is set up at start) is refused naming it too. Returns the fields that changed (empty: nothing to do), each
    /// also logged as a `config changed` tracing event, and counts the reconfiguration
    /// in [`StatsSnapshot::reconfigurations`](crate::StatsSnapshot::reconfigurations).
    ///
    /// Nothing queued, running, deferred or parked is lost, reordered or preempted, and
    /// every count and latency histogram carries on. Per setting:
    ///
    /// * `max_concurrent`: a raised cap grants at the next poll; a lowered one takes no
    ///   slot back, and nothing is granted until fewer than the new cap are in flight.
    /// * `adaptive`: unchanged, it keeps its current limit under the new ceiling; a
    ///   changed (or added) `[adaptive]` section starts again from its `initial` limit.
    /// * `slot_lease_timeout`, `slot_wait_timeout`: for jobs submitted from now; jobs
    ///   already submitted keep the ones they were submitted with.
    /// * `rate_limit`: unchanged, it keeps its bucket; changed, it starts from an empty
    ///   bucket at `now` (the next call waits one interval of the new rate).
    /// * `breaker`: keeps its state (an open breaker stays open until the same instant)
    ///   and its window of outcomes, which is emptied only when `window` changed.
    /// * `retry`, `jitter`, `stagger`, `fallback`, `call_budget`: from the next decision
    ///   (a retry already scheduled keeps its time).
    /// * quotas: what every tenant used stays in its windows and counts against the new
    ///   limits (see [`Quotas::reconfigure`](crate::Quotas::reconfigure)).
    /// * tenant weights and `quantum`: from each tenant's next turn; queued jobs keep
    ///   their order and each tenant its credit.
    /// * `org_batch_size`, `batch_delay`: carried by the shell, for fan-outs submitted
    ///   from now (members already deferred keep their release times).
    pub fn reconfigure(&mut self, config: &Config, now: Duration) -> Result<Changes, ConfigError> {
        config.validate()?;
        let changes = Changes::between(&self.config, config);
        if let Some(fixed) = changes.iter().find(|c| is_fixed(&c.field)) {
            return Err(refuse_fixed(fixed));
        }
        let mut shared = shared_sections(&self.config);
        shared.extend(shared_sections(config));
        if let Some(c) = changes
            .iter()
            .find(|c| shared.iter().any(|section| under(&c.field, section)))
        {
            return Err(refuse_fixed(c));
        }
        if changes.is_empty() {
            return Ok(changes);
        }
        for c in changes.iter() {
            tracing::info!(field = %c.field, from = c.from.as_deref().unwrap_or("unset"), to = c.to.as_deref().unwrap_or("unset"), "config changed");
        }
        let old = std::mem::replace(&mut self.config, config.clone());
        let existing = self.resources.len();
        for r in 0..existing {
            self.reapply_resource(r, &old, now);
        }
        // Resources configured only now are built from the new configuration.
        for name in config.resources.keys() {
            self.resource_index(&ResourceId::new(name.as_str()));
        }
        self.resolve_fallbacks();
        if old.quotas != config.quotas {
            self.quotas.reconfigure(&config.quotas);
        }
        for r in 0..self.resources.len() {
            let res = &mut self.resources[r];
            res.queue.set_quantum(config.scheduler.quantum);
            res.queue.set_weights(|tenant| config.weight(tenant.as_str()));
            res.tenants.set_weights(|tenant| config.weight(tenant.as_str()));
            self.mark_dirty(r as u32);
        }
        self.reconfigurations += 1;
        tracing::info!(
            changed = changes.fields.len(),
            reconfigurations = self.reconfigurations,
            "reconfigured"
        );
        Ok(changes)
    }

    /// Carries resource `r` from `old` to the configuration in force.
    fn reapply_resource(&mut self, r: usize, old: &Config, now: Duration) {
        let name = self.resources[r].name.clone();
        let settings = self.config.resource(name.as_str());
        let cfg = self.config.resources.get(name.as_str());
        let new_adaptive = cfg.and_then(|c| c.adaptive.as_ref());
        let old_adaptive = old.resources.get(name.as_str()).and_then(|c| c.adaptive.as_ref());
        let res = &mut self.resources[r];
        res.settings = settings;
        if new_adaptive != old_adaptive {
            res.adaptive = new_adaptive.map(|a| Box::new(AdaptiveLimit::new(a, settings.max_concurrent)));
        } else if let Some(adaptive) = &mut res.adaptive {
            adaptive.set_ceiling(settings.max_concurrent);
        }
        let limit = res
            .adaptive
            .as_ref()
            .map_or(settings.max_concurrent, |a| a.limit());
        res.pool.set_cap(limit);
        Guard::reconfigure(&mut res.guard, &name, cfg, now);
    }

    /// Points every guard at its configured fallback's index (every resource exists).
    pub(super) fn resolve_fallbacks(&mut self) {
        for r in 0..self.resources.len() {
            let fallback = self
                .config
                .resources
                .get(self.resources[r].name.as_str())
                .and_then(|c| c.fallback.as_deref())
                .and_then(|f| self.by_name.get(&ResourceId::new(f)).copied());
            if let Some(guard) = &mut self.resources[r].guard {
                guard.fallback = fallback;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobSpec, OutcomeKind};
    use crate::scheduler::tests::{granted, ms};

    fn cfg(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    /// Issue 17: lowering a cap through a whole new configuration preempts nothing, is
    /// not exceeded once in flight drains to it, keeps the queue's order and every count.
    #[test]
    fn a_lowered_cap_preempts_nothing_keeps_order_and_counts() {
        let mut s: Scheduler<u32> = Scheduler::new(cfg(
            "[resources.r]\nmax_concurrent = 4\nslot_wait_timeout = \"1h\"\n",
        ));
        let mut ev = Vec::new();
        for i in 0..10 {
            s.submit(JobSpec::new("t", "r"), i, ms(0));
        }
        s.poll(ms(0), &mut ev);
        let mut running = granted(&mut ev);
        assert_eq!(running.len(), 4);
        let changes = s
            .reconfigure(
                &cfg("[resources.r]\nmax_concurrent = 2\nslot_wait_timeout = \"1h\"\n"),
                ms(1),
            )
            .unwrap();
        assert_eq!(changes.to_string(), "resources.r.max_concurrent: 4 -> 2");
        let r = ResourceId::new("r");
        assert_eq!(s.in_flight(&r), 4, "nothing preempted");
        let mut order = Vec::new();
        let mut now = 1;
        while !running.is_empty() {
            now += 1;
            let (key, _) = running.remove(0);
            s.complete(key, OutcomeKind::Completed, ms(now)).unwrap();
            s.poll(ms(now), &mut ev);
            let next = granted(&mut ev);
            order.extend(next.iter().map(|(_, p)| *p));
            running.extend(next);
            assert!(s.in_flight(&r) <= 4);
            if now >= 4 {
                assert!(
                    s.in_flight(&r) <= 2,
                    "in flight drained to 2 at {now} ms: never above it again"
                );
            }
        }
        assert_eq!(order, (4..10).collect::<Vec<_>>(), "queued jobs keep their order");
        let snap = s.snapshot(ms(now));
        assert_eq!(snap.resources["r"].submitted, 10);
        assert_eq!(snap.outcomes().completed, 10);
        assert_eq!(snap.resources["r"].cap, 2);
        assert_eq!(snap.reconfigurations, 1);
    }

    /// A quota kept in Redis has its broker set up at start: changing its limits, or
    /// moving a quota into Redis, is refused naming the field; in-process quotas change.
    #[test]
    fn a_quota_kept_in_redis_changes_only_with_a_restart() {
        let shared = "[quotas.per_user]\nscope = \"tenant\"\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:1/\"\nwindows = [{ limit = 10, per = \"1m\" }]\n";
        let mut s: Scheduler<u32> = Scheduler::new(cfg(shared));
        let e = s
            .reconfigure(&cfg(&shared.replace("limit = 10", "limit = 20")), ms(0))
            .unwrap_err();
        assert!(e.to_string().contains("quotas.per_user"), "{e}");
        assert!(e.to_string().contains("restart"), "{e}");
        let local = "[quotas.per_user]\nscope = \"tenant\"\nwindows = [{ limit = 10, per = \"1m\" }]\n";
        let mut s: Scheduler<u32> = Scheduler::new(cfg(local));
        let e = s.reconfigure(&cfg(shared), ms(0)).unwrap_err();
        assert!(e.to_string().contains("quotas.per_user"), "{e}");
        s.reconfigure(&cfg(&local.replace("limit = 10", "limit = 20")), ms(0))
            .expect("an in-process quota changes live");
    }

    /// Issue 17: an invalid configuration is refused with the field's name, exactly as
    /// at start, and the one in force keeps running.
    #[test]
    fn an_invalid_config_is_refused_by_name_and_the_old_one_stays() {
        let old = cfg("[resources.r]\nmax_concurrent = 3\n");
        let mut s: Scheduler<u32> = Scheduler::new(old.clone());
        let mut bad = old.clone();
        bad.resources.get_mut("r").unwrap().max_concurrent = Some(0);
        let e = s.reconfigure(&bad, ms(0)).unwrap_err();
        assert_eq!(e, bad.validate().unwrap_err(), "the same error as at start");
        assert!(
            e.to_string().starts_with("resources.r.max_concurrent must be"),
            "{e}"
        );
        let mut fixed = old.clone();
        fixed.runtime.worker_threads = Some(4);
        let e = s.reconfigure(&fixed, ms(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtime.worker_threads must be unchanged while the runtime runs (it is unset; restart to change it), got 4"
        );
        assert_eq!(s.config(), &old);
        assert_eq!(s.limit(&ResourceId::new("r")), Some(3));
        assert_eq!(s.snapshot(ms(0)).reconfigurations, 0);
        assert!(s.reconfigure(&old, ms(0)).unwrap().is_empty());
        assert_eq!(
            s.snapshot(ms(0)).reconfigurations,
            0,
            "no change, no reconfiguration"
        );
    }

    /// Issue 17: a raised weight takes effect for tenants already queued, without
    /// reordering any tenant's own jobs.
    #[test]
    fn a_raised_weight_applies_to_tenants_already_queued() {
        let mut s: Scheduler<u32> = Scheduler::new(cfg(
            "[resources.r]\nmax_concurrent = 1\nslot_wait_timeout = \"1h\"\n",
        ));
        let mut ev = Vec::new();
        for i in 0..8 {
            s.submit(JobSpec::new("a", "r"), i, ms(0));
            s.submit(JobSpec::new("b", "r"), 100 + i, ms(0));
        }
        let mut text = String::from("[resources.r]\nmax_concurrent = 1\nslot_wait_timeout = \"1h\"\n");
        text.push_str("[tenants.a]\nweight = 3\n");
        s.reconfigure(&cfg(&text), ms(0)).unwrap();
        let mut served = Vec::new();
        for t in 0..8 {
            s.poll(ms(t), &mut ev);
            let g = granted(&mut ev);
            served.extend(g.iter().map(|(_, p)| *p));
            s.complete(g[0].0, OutcomeKind::Completed, ms(t)).unwrap();
        }
        let a: Vec<u32> = served.iter().copied().filter(|p| *p < 100).collect();
        let b: Vec<u32> = served.iter().copied().filter(|p| *p >= 100).collect();
        assert_eq!((a.len(), b.len()), (6, 2), "3:1 after the change: {served:?}");
        assert_eq!(a, (0..6).collect::<Vec<_>>());
        assert_eq!(b, vec![100, 101]);
        // The fairness figures judge the service by the weights in force: 3:1 is fair now.
        let jain = s.snapshot(ms(8)).resources["r"].fairness.jain_index.unwrap();
        assert!(jain > 0.95, "Jain's index {jain}");
    }

    #[test]
    fn fixed_fields_are_matched_by_section_not_by_prefix() {
        assert!(is_fixed("runtime.worker_threads"));
        assert!(is_fixed("backends.store.url"));
        assert!(is_fixed("scheduler.max_queued"));
        assert!(!is_fixed("scheduler.max_concurrent"));
        assert!(!is_fixed("runtimes.x"));
    }
}
