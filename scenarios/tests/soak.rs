//! The soak: `soak/soak-2h.toml`, two hours of simulated time with a fault every five minutes,
//! run twice. Behind `--ignored` (minutes of wall time in a release build):
//!
//! `cargo test --release -p scenarios --test soak -- --ignored --nocapture`
//!
//! - Memory stays flat: the live heap (counted by a global allocator), sampled about once per
//!   simulated second, grows by less than [`MAX_BYTES_PER_REQUEST`] per request from the second
//!   quarter of the meshed pass to the last; the samples and resident memory are printed.
//! - The books balance at every minute: requests sent so far = ended so far + in flight, and
//!   no more are in flight than were sent within the client timeout before it (every request
//!   ends by then); at the end none is in flight and the reasons sum to the failures.
//! - The same seed gives a byte-identical report.
#![allow(clippy::disallowed_methods)] // reads /proc for the process's memory; no simulation here

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The system allocator, counting: the heap the run holds live, which resident memory only
/// bounds from above (the allocator keeps pages it was given back). stats_alloc because the
/// workspace forbids writing `unsafe` (a global allocator needs it).
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn live_mb() -> f64 {
    let s = GLOBAL.stats();
    // A reallocation is already counted in `bytes_allocated` or `bytes_deallocated`.
    (s.bytes_allocated as f64 - s.bytes_deallocated as f64) / 1e6
}

/// Most the live heap may grow per request served, between the second quarter and the last,
/// and still count as flat: an order of magnitude under the span leak this test found.
const MAX_BYTES_PER_REQUEST: f64 = 120.0;

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
#[ignore = "soak: two hours of simulated time, twice; run with --release -- --ignored"]
fn two_hours_with_faults_memory_flat_books_balanced_every_minute_byte_identical() {
    let path = scenarios::dir().join("soak/soak-2h.toml");
    let loaded = sim::scenario::load(&path).expect("ships valid");
    let opts = sim::RunOptions::new(loaded.scenario.seed, "scenarios/soak/soak-2h.toml");
    let mut samples: Vec<(u64, f64, f64)> = Vec::new();
    let started = std::time::Instant::now();
    let out = sim::run(&loaded, &opts, &mut |pass, now, _end| {
        if pass == "mesh" {
            samples.push((now, rss_mb(), live_mb()));
        }
    });
    eprintln!("first run: {:.0} s wall", started.elapsed().as_secs_f64());
    let report = &out.report;
    let mesh = report.mesh.as_ref().expect("a meshed pass");

    // Memory: the live heap, a median over the second quarter against one over the last, so a
    // fault's peak (a control plane's return pushes to every proxy at once) is not read as
    // growth; resident memory is printed, not judged (the allocator keeps its high-water mark).
    assert!(samples.len() > 100, "{} samples", samples.len());
    let end = samples.last().unwrap().0;
    let median = |from: u64, to: u64| {
        let mut w: Vec<f64> = samples
            .iter()
            .filter(|(t, _, _)| (from..to).contains(t))
            .map(|s| s.2)
            .collect();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    let second = median(end / 4, end / 2);
    let last = median(3 * end / 4, end + 1);
    for (t, rss, live) in samples.iter().step_by(samples.len() / 24) {
        eprintln!(
            "  t = {:>5} s  rss {rss:.1} MB  live heap {live:.1} MB",
            t / 1000
        );
    }
    // Requests between the two windows' middles.
    let rate = loaded.scenario.workload.rate_rps.unwrap_or(0.0);
    let requests = rate * (end as f64 / 2.0) / 1000.0;
    let per_request = (last - second) * 1e6 / requests;
    eprintln!(
        "live heap: median {second:.1} MB in the second quarter, {last:.1} MB in the last; {per_request:.0} bytes per request"
    );

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

    // Last, so that the books and determinism are checked whatever memory does. Measured on
    // 2026-12-04: 65 bytes per request. Part is by design, the id of each trace the span store
    // ranked out (16 bytes in a B-tree, so that a late span of it is dropped too); the rest is
    // not yet attributed. The leaks this test found were far past the bound: 190 KB per
    // simulated second of latency histograms, 1.2 KB per request of spans.
    assert!(
        per_request < MAX_BYTES_PER_REQUEST,
        "the live heap grew {per_request:.0} bytes per request between the second and the last quarter"
    );
}
