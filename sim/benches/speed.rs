//! Simulator speed: simulated seconds per wall-clock second for the meshed run of the scale
//! scenarios (`scenarios/scale/`), one core. Goals (issue #2): a 200-pod mesh under 1,000 rps at
//! least 10× faster than real time; a 1,000-pod mesh at least as fast as real time.
//!
//! ```sh
//! cargo bench -p sim --bench speed                 # all scale scenarios
//! cargo bench -p sim --bench speed -- mesh-200     # those whose name contains the argument
//! ```
#![allow(clippy::disallowed_methods)] // wall-clock timing of whole runs is the point of a bench

use std::path::Path;

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scale");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/scale exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort_by_key(|p| {
        let l = sim::scenario::load(p).expect("valid");
        l.scenario.services.iter().map(|s| s.replicas).sum::<u32>()
    });
    println!("| scenario | pods | requests | simulated (s) | wall (s) | speed (× real time) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for path in files {
        let loaded = sim::scenario::load(&path).expect("valid");
        let pods: u32 = loaded.scenario.services.iter().map(|s| s.replicas).sum();
        let t = std::time::Instant::now(); // wall time of a bench run, never simulated; allow-nondeterminism
        let pass = sim::run::Pass {
            seed: loaded.scenario.seed,
            mesh: true,
            access_log: false,
        };
        let run = sim::run::simulate(&loaded, &pass, &mut |_, _| {}).stats;
        let wall = t.elapsed().as_secs_f64();
        let simulated = run.sim_time_ms as f64 / 1000.0;
        println!(
            "| {} | {pods} | {} | {simulated:.1} | {wall:.2} | {:.1} |",
            loaded.scenario.name,
            run.books.sent,
            simulated / wall
        );
    }
}
