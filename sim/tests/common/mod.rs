//! What the integration tests share: load a scenario written inline, and run it with its ledger
//! checked.
#![allow(dead_code)] // each test binary uses its own part of this

use reports::RunStats;
use sim::cost::Calibration;
use sim::scenario::{Loaded, parse};

/// Where the library's scenario `name` (e.g. `breaker.toml`) is.
pub fn library_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

/// The library's scenario `name`, loaded as `meshsim run` loads it.
pub fn library(name: &str) -> Loaded {
    sim::scenario::load(&library_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The scenario `src`, parsed as file `file`, with the built-in calibration.
pub fn loaded(file: &str, src: &str) -> Loaded {
    Loaded {
        scenario: parse(file, src).unwrap_or_else(|e| panic!("{e}")),
        path: file.into(),
        hash: "test".into(),
        cost: Calibration::builtin(),
    }
}

/// `stats`, after checking that its every request and every try is accounted for.
pub fn checked(stats: RunStats) -> RunStats {
    let problems = sim::check::ledger(&stats);
    assert!(problems.is_empty(), "{problems:#?}");
    stats
}

/// Simulate `loaded` with `seed`, meshed or not, its ledger checked.
pub fn run(loaded: &Loaded, seed: u64, mesh: bool) -> RunStats {
    let pass = sim::run::Pass {
        seed,
        mesh,
        access_log: false,
    };
    checked(sim::run::simulate(loaded, &pass, &mut |_, _| {}).stats)
}

/// Simulate the scenario `src` with `seed`, meshed or not, its ledger checked.
pub fn simulate(src: &str, seed: u64, mesh: bool) -> RunStats {
    run(&loaded("t.toml", src), seed, mesh)
}
