//! The incident's workload, drawn once from the scenario's seed so that every policy runs
//! exactly the same organisations, projections, latencies and injected errors.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

use super::scenario::{IncidentScenario, LatencySpec, Projections};

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// One projection job's query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Index over the whole workload (0 ..).
    pub id: usize,
    /// Index of its organisation (its tenant).
    pub org: usize,
    /// How long the store takes to serve it.
    pub latency: Duration,
    /// Whether the store fails it after serving (the scenario's error rate).
    pub fails: bool,
}

/// One organisation (a tenant) and its projections' queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Tenant name (`org-0007`).
    pub tenant: String,
    /// Its queries, one per projection.
    pub queries: Vec<Query>,
}

/// Everything one run submits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Organisations in release order.
    pub orgs: Vec<Organisation>,
}

/// A lognormal distribution with the given median and 99th percentile.
pub fn lognormal(latency: LatencySpec) -> LogNormal<f64> {
    let p50 = latency.p50.as_secs_f64();
    let sigma = (latency.p99.as_secs_f64() / p50).ln() / Z99;
    LogNormal::new(p50.ln(), sigma).expect("validated: p50 > 0 and p99 >= p50")
}

impl Workload {
    /// Draws the workload of a (validated) scenario from `seed`.
    pub fn generate(scenario: &IncidentScenario, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let latency = lognormal(scenario.downstream.latency);
        let error_rate = scenario.downstream.error_rate;
        let zipf = match scenario.workload.projections {
            Projections::Zipf { max, exponent } => {
                Some(Zipf::new(f64::from(max), exponent).expect("validated: max >= 1, exponent >= 0"))
            }
            _ => None,
        };
        let mut next_id = 0;
        let orgs = (0..scenario.workload.organisations as usize)
            .map(|org| {
                let n = match scenario.workload.projections {
                    Projections::Fixed { count } => count,
                    Projections::Uniform { min, max } => rng.random_range(min..=max),
                    Projections::Zipf { .. } => zipf.expect("zipf").sample(&mut rng) as u32,
                };
                let queries = (0..n)
                    .map(|_| {
                        let secs: f64 = latency.sample(&mut rng);
                        let q = Query {
                            id: next_id,
                            org,
                            latency: Duration::from_micros((secs * 1e6).round().max(1.0) as u64),
                            fails: error_rate > 0.0 && rng.random_bool(error_rate),
                        };
                        next_id += 1;
                        q
                    })
                    .collect();
                Organisation {
                    tenant: format!("org-{org:04}"),
                    queries,
                }
            })
            .collect();
        Workload { orgs }
    }

    /// Queries in all.
    pub fn queries(&self) -> usize {
        self.orgs.iter().map(|o| o.queries.len()).sum()
    }

    /// Every query's service time, summed.
    pub fn total_service(&self) -> Duration {
        self.orgs.iter().flat_map(|o| &o.queries).map(|q| q.latency).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_workload() {
        let s = IncidentScenario::builtin();
        assert_eq!(Workload::generate(&s, 9), Workload::generate(&s, 9));
        assert_ne!(Workload::generate(&s, 9), Workload::generate(&s, 10));
    }

    #[test]
    fn latencies_follow_the_given_median_and_p99() {
        let mut s = IncidentScenario::builtin();
        s.workload.organisations = 2000;
        let w = Workload::generate(&s, 1);
        let mut l: Vec<Duration> = w
            .orgs
            .iter()
            .flat_map(|o| &o.queries)
            .map(|q| q.latency)
            .collect();
        l.sort();
        let at = |q: f64| l[(q * l.len() as f64) as usize].as_secs_f64();
        assert!((at(0.5) - 2.0).abs() < 0.1, "p50 {}", at(0.5));
        assert!((at(0.99) - 8.0).abs() < 1.0, "p99 {}", at(0.99));
    }
}
