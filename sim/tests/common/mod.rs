//! What the integration tests share: run a scenario written inline, with its ledger checked.

use reports::RunStats;
use sim::cost::Calibration;
use sim::scenario::{Loaded, parse};

/// Simulate the scenario `src` with `seed`, meshed or not, after checking that every request
/// and every try in it is accounted for.
pub fn simulate(src: &str, seed: u64, mesh: bool) -> RunStats {
    let scenario = parse("t.toml", src).unwrap_or_else(|e| panic!("{e}"));
    let loaded = Loaded {
        scenario,
        path: "t.toml".into(),
        hash: "test".into(),
        cost: Calibration::builtin(),
    };
    let stats = sim::run::simulate(&loaded, seed, mesh, &mut |_, _| {});
    let problems = sim::check::ledger(&stats);
    assert!(problems.is_empty(), "{problems:#?}");
    stats
}
