//! The soak: `soak/soak-2h.toml`, two hours of simulated time with a fault every five minutes,
//! run twice. Behind `--ignored` (minutes of wall time in a release build):
//!
//! `cargo test --release -p scenarios --test soak -- --ignored --nocapture`
//!
//! - Memory stays flat: the process's resident memory, sampled about once per simulated second,
//!   grows by less than [`FLAT_MB`] from the first quarter of the meshed pass to its end. A leak
//!   of even 100 bytes per request (~144,000 requests, each through six sidecar hops and its
//!   calls) would add more than that; the samples are printed.
//! - The books balance at every minute: requests sent so far = ended so far + in flight, and
//!   no more are in flight than were sent within the client timeout before it (every request
//!   ends by then); at the end none is in flight and the reasons sum to the failures.
//! - The same seed gives a byte-identical report.
#![allow(clippy::disallowed_methods)] // reads /proc for the process's memory; no simulation here

/// Largest growth of resident memory, MB, from the end of the first quarter to the end of the
/// meshed pass, that still counts as flat.
const FLAT_MB: f64 = 8.0;

/// Resident memory of this process, MB (Linux).
fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

#[test]
#[ignore = "soak: two hours of simulated time, twice; run with --release -- --ignored (its memory check fails today: span retention, see the end)"]
fn two_hours_with_faults_memory_flat_books_balanced_every_minute_byte_identical() {
    let path = scenarios::dir().join("soak/soak-2h.toml");
    let loaded = sim::scenario::load(&path).expect("ships valid");
    let opts = sim::RunOptions::new(loaded.scenario.seed, "scenarios/soak/soak-2h.toml");
    let mut samples: Vec<(u64, f64)> = Vec::new();
    let started = std::time::Instant::now();
    let out = sim::run(&loaded, &opts, &mut |pass, now, _end| {
        if pass == "mesh" {
            samples.push((now, rss_mb()));
        }
    });
    eprintln!("first run: {:.0} s wall", started.elapsed().as_secs_f64());
    let report = &out.report;
    let mesh = report.mesh.as_ref().expect("a meshed pass");

    // Memory.
    assert!(samples.len() > 100, "{} samples", samples.len());
    let end = samples.last().unwrap().0;
    let quarter = samples.iter().find(|(t, _)| *t >= end / 4).unwrap().1;
    let last = samples.last().unwrap().1;
    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    for (t, mb) in samples.iter().step_by(samples.len() / 12) {
        eprintln!("  t = {:>5} s  rss {mb:.1} MB", t / 1000);
    }
    eprintln!("rss at a quarter {quarter:.1} MB, at the end {last:.1} MB, peak {peak:.1} MB");

    // The books, minute by minute.
    let timeout_s = loaded.scenario.workload.timeout.as_ms().div_ceil(1000);
    let buckets = &mesh.timeline;
    assert!(buckets.len() >= 7_000, "{} buckets", buckets.len());
    let (mut sent, mut ended) = (0u64, 0u64);
    let mut minutes = 0;
    for (i, b) in buckets.iter().enumerate() {
        sent += b.sent;
        ended += b.ok + b.failed;
        if b.t_s % 60 == 59 {
            minutes += 1;
            assert!(
                ended <= sent,
                "t = {} s: {ended} ended of {sent} sent",
                b.t_s
            );
            let recent: u64 = buckets[i.saturating_sub(timeout_s as usize)..=i]
                .iter()
                .map(|b| b.sent)
                .sum();
            assert!(
                sent - ended <= recent,
                "t = {} s: {} in flight, but only {recent} were sent in the last {timeout_s} s",
                b.t_s,
                sent - ended
            );
        }
    }
    assert!(minutes >= 118, "{minutes} minutes checked");
    let books = &mesh.books;
    assert!(books.balanced, "{books:?}");
    assert_eq!(books.in_flight, 0, "{books:?}");
    assert!(books.sent > 100_000, "{books:?}");
    eprintln!(
        "books: {} sent, {} ok, {} failed {:?}",
        books.sent, books.ok, books.failed, books.failed_by_reason
    );
    assert_eq!(
        report.verdict,
        reports::Verdict::Pass,
        "{:?}",
        report.assertions
    );

    // Determinism.
    let again = sim::run(&loaded, &opts, &mut |_, _, _| {});
    assert!(
        reports::to_json(report) == reports::to_json(&again.report),
        "the same seed gave a different report"
    );

    // Last, so that the books and determinism are checked whatever memory does. Fails today:
    // every sidecar keeps every span for the report's slowest traces (about 1.2 KB per request
    // here, bounded by `mesh_core::proxy::MAX_SPANS` per proxy), so memory grows ~135 MB over
    // two hours; keeping only the slowest traces as they complete would make it flat.
    assert!(
        last - quarter < FLAT_MB,
        "memory grew {:.1} MB over the last three quarters",
        last - quarter
    );
}
