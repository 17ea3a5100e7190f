//! The simulator against queueing theory and closed forms: every row of `sim/VALIDATION.md`.
//!
//! Each row runs R independent replications (seeds 1..=R), each past a warm-up long against the
//! system's relaxation time, and compares the mean of the R estimates with the theoretical value.
//! A row holds when the theory lies inside the 99% Student-t interval of the replications
//! (mean ± t(0.995, R−1) · s / √R): the tolerance is the run's own sampling error, never chosen.
//! Latency quantiles come from HdrHistogram at three significant figures, so their interval also
//! carries the histogram's 0.1% resolution.
//!
//! The fast rows run in `cargo test`; the long ones (ρ = 0.95, S = 20 ms at high load, P99.9)
//! are `#[ignore]`d: `cargo test --release -p sim --test validation -- --ignored`. The table in
//! `sim/VALIDATION.md` is written by `MESHSIM_BLESS=1 cargo test --release -p sim --test
//! validation -- --ignored --nocapture validation_table`.

mod common;

use reports::RunStats;

/// One row: a theoretical value and the replications' estimate of it.
#[derive(Clone, Debug)]
struct Row {
    case: String,
    metric: &'static str,
    theory: f64,
    mean: f64,
    half: f64,
    reps: usize,
}

impl Row {
    fn holds(&self) -> bool {
        (self.mean - self.theory).abs() <= self.half
    }
    fn markdown(&self) -> String {
        let err = if self.theory == 0.0 {
            0.0
        } else {
            (self.mean - self.theory) / self.theory * 100.0
        };
        format!(
            "| {} | {} | {:.4} | {:.4} | {:+.2}% | ± {:.4} ({} runs) | {} |",
            self.case,
            self.metric,
            self.theory,
            self.mean,
            err,
            self.half,
            self.reps,
            if self.holds() { "yes" } else { "**no**" }
        )
    }
}

/// t(0.995, df): the two-sided 99% Student-t quantile.
fn t99(df: usize) -> f64 {
    const T: [f64; 15] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
        2.977, 2.947,
    ];
    T.get(df.saturating_sub(1)).copied().unwrap_or(2.576)
}

/// The row for `samples` (one estimate per replication), plus `resolution` (absolute) for
/// quantities read off a histogram.
fn row(case: &str, metric: &'static str, theory: f64, samples: &[f64], resolution: f64) -> Row {
    let r = samples.len();
    let mean = samples.iter().sum::<f64>() / r as f64;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r as f64 - 1.0);
    Row {
        case: case.into(),
        metric,
        theory,
        mean,
        half: t99(r - 1) * (var / r as f64).sqrt() + resolution,
        reps: r,
    }
}

/// A one-service system fed Poisson arrivals straight from the clients (no mesh, a free
/// network), so a request's latency is its sojourn in the service's queue.
fn queue_src(
    workers: u32,
    queue: u32,
    latency: &str,
    rate: f64,
    warmup_s: u64,
    measure_s: u64,
) -> String {
    format!(
        r#"name = "validation"
[mesh]
enabled = false
[network]
latency = "0s"
[[services]]
name = "q"
workers = {workers}
queue = {queue}
latency = {latency}
[workload]
target = "q"
rate_rps = {rate}
duration = "{}s"
warmup = "{warmup_s}s"
timeout = "600s"
"#,
        warmup_s + measure_s
    )
}

/// A service time exponential with mean `s_ms`, as the scenario format writes it.
fn exponential(s_ms: f64) -> String {
    format!(
        "{{ dist = \"exponential\", mean = \"{}us\" }}",
        (s_ms * 1000.0) as u64
    )
}

/// Run `src` `reps` times with seeds of its own (FNV-1a of the source, plus 1..=reps), so no two
/// rows share random draws: a case that is another one rescaled in time would otherwise repeat
/// its estimates exactly and count twice as evidence.
fn replicate(src: &str, reps: u64) -> Vec<RunStats> {
    let base = src.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (1..=reps)
        .map(|k| common::simulate(src, base.wrapping_add(k), false))
        .collect()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// M/M/1 with mean service `s_ms` at load `rho`: sojourn is exponential with mean S/(1−ρ), so
/// its p-quantile is −ln(1−p)·S/(1−ρ). Rows: mean, P50, P99 (and P99.9 when `p999`), plus
/// Little's law.
fn mm1(s_ms: f64, rho: f64, warmup_s: u64, measure_s: u64, reps: u64, p999: bool) -> Vec<Row> {
    let rate = rho / (s_ms / 1000.0);
    let src = queue_src(1, 1_000_000, &exponential(s_ms), rate, warmup_s, measure_s);
    let runs = replicate(&src, reps);
    let w = s_ms / (1.0 - rho);
    let case = format!("M/M/1, S = {s_ms} ms, ρ = {rho}");
    let q = |p: f64| -(1.0f64 - p).ln() * w;
    let col = |f: &dyn Fn(&RunStats) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let mut rows = vec![
        row(
            &case,
            "mean sojourn (ms)",
            w,
            &col(&|r| ms(r.latency.mean_us)),
            0.001,
        ),
        row(
            &case,
            "P50 sojourn (ms)",
            q(0.5),
            &col(&|r| ms(r.latency.p50_us)),
            q(0.5) * 1e-3,
        ),
        row(
            &case,
            "P99 sojourn (ms)",
            q(0.99),
            &col(&|r| ms(r.latency.p99_us)),
            q(0.99) * 1e-3,
        ),
    ];
    if p999 {
        rows.push(row(
            &case,
            "P99.9 sojourn (ms)",
            q(0.999),
            &col(&|r| ms(r.latency.p999_us)),
            q(0.999) * 1e-3,
        ));
    }
    rows.push(little(&case, &runs, w, measure_s));
    rows
}

/// Little's law, L = λW, on the service's own tally: the time-averaged number in the app
/// against throughput × mean time in the app, as a ratio (theory 1). Over a window of T seconds
/// they differ by the visits straddling its two ends, whose share is at most about 2W/T: that
/// edge allowance is added to the replications' interval.
fn little(case: &str, runs: &[RunStats], w_ms: f64, measure_s: u64) -> Row {
    let ratios: Vec<f64> = runs
        .iter()
        .map(|r| {
            let q = &r.services["q"];
            let lambda_w = q.throughput_rps * (q.mean_wait_us + q.mean_service_us) / 1e6;
            q.mean_in_system / lambda_w
        })
        .collect();
    let edges = 2.0 * w_ms / 1000.0 / measure_s as f64;
    row(case, "Little's law L / λW", 1.0, &ratios, edges)
}

/// M/D/1 (constant service S) at load ρ: Pollaczek–Khinchine mean wait ρS / (2(1−ρ)).
fn md1(s_ms: f64, rho: f64, warmup_s: u64, measure_s: u64, reps: u64) -> Vec<Row> {
    let rate = rho / (s_ms / 1000.0);
    let src = queue_src(
        1,
        1_000_000,
        &format!(
            "{{ dist = \"constant\", value = \"{}us\" }}",
            (s_ms * 1000.0) as u64
        ),
        rate,
        warmup_s,
        measure_s,
    );
    let runs = replicate(&src, reps);
    let case = format!("M/D/1, S = {s_ms} ms, ρ = {rho}");
    let wq = rho * s_ms / (2.0 * (1.0 - rho));
    let waits: Vec<f64> = runs
        .iter()
        .map(|r| r.services["q"].mean_wait_us / 1000.0)
        .collect();
    vec![
        row(&case, "mean wait in queue (ms)", wq, &waits, 0.0),
        little(&case, &runs, wq + s_ms, measure_s),
    ]
}

/// Erlang's C formula: the probability that an arrival to M/M/c with offered load a waits.
fn erlang_c(c: u32, a: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..c {
        if k > 0 {
            term *= a / f64::from(k);
        }
        sum += term;
    }
    let top = term * a / f64::from(c) * f64::from(c) / (f64::from(c) - a);
    top / (sum + top)
}

/// Erlang's B formula: blocking of M/M/c/c with offered load a (the stable recursion).
fn erlang_b(c: u32, a: f64) -> f64 {
    (1..=c).fold(1.0, |b, k| a * b / (f64::from(k) + a * b))
}

/// M/M/c: Erlang C probability of waiting and mean wait C / (cμ − λ).
fn mmc(c: u32, s_ms: f64, rho: f64, warmup_s: u64, measure_s: u64, reps: u64) -> Vec<Row> {
    let mu = 1000.0 / s_ms;
    let rate = rho * f64::from(c) * mu;
    let src = queue_src(c, 1_000_000, &exponential(s_ms), rate, warmup_s, measure_s);
    let runs = replicate(&src, reps);
    let case = format!("M/M/{c}, S = {s_ms} ms, ρ = {rho}");
    let pw = erlang_c(c, rate / mu);
    let wq = pw / (f64::from(c) * mu - rate) * 1000.0;
    let col = |f: &dyn Fn(&reports::ServiceQueue) -> f64| {
        runs.iter().map(|r| f(&r.services["q"])).collect::<Vec<_>>()
    };
    vec![
        row(&case, "P(wait), Erlang C", pw, &col(&|q| q.p_wait), 0.0),
        row(
            &case,
            "mean wait in queue (ms)",
            wq,
            &col(&|q| q.mean_wait_us / 1000.0),
            0.0,
        ),
        little(&case, &runs, wq + s_ms, measure_s),
    ]
}

/// M/M/c/c (no queue): the share of arrivals refused is Erlang B.
fn mmcc(c: u32, s_ms: f64, a: f64, warmup_s: u64, measure_s: u64, reps: u64) -> Vec<Row> {
    let rate = a / (s_ms / 1000.0);
    let src = queue_src(c, 0, &exponential(s_ms), rate, warmup_s, measure_s);
    let runs = replicate(&src, reps);
    let case = format!("M/M/{c}/{c}, S = {s_ms} ms, a = {a} Erl");
    let blocked: Vec<f64> = runs
        .iter()
        .map(|r| {
            let q = &r.services["q"];
            q.refused as f64 / q.arrived as f64
        })
        .collect();
    vec![row(
        &case,
        "blocking, Erlang B",
        erlang_b(c, a),
        &blocked,
        0.0,
    )]
}

/// An idle chain: one closed-loop user, think time far above the jitter, a constant 1 ms
/// service, one-way latency d with uniform jitter ±j on both directions. Every request costs
/// 1 ms + 2d on average, never outside 1 ms + 2(d ± j). (The first request also opens the
/// connection; the warm-up leaves it out.)
fn idle_chain(d_us: u64, j_us: u64, reps: u64) -> Vec<Row> {
    let src = format!(
        r#"name = "chain"
[mesh]
enabled = false
[network]
latency = "0s"
[[services]]
name = "q"
latency = {{ dist = "constant", value = "1ms" }}
[workload]
target = "q"
model = "closed"
users = 1
think = "20ms"
duration = "31s"
warmup = "1s"
[[faults]]
kind = "latency"
between = ["clients", "q"]
delay = "{d_us}us"
jitter = "{j_us}us"
at = "0s"
"#
    );
    let runs = replicate(&src, reps);
    let case = format!("idle chain, one way {d_us} ± {j_us} µs, service 1 ms");
    let expect = 1.0 + 2.0 * d_us as f64 / 1000.0;
    let bound = 2.0 * j_us as f64 / 1000.0;
    let means: Vec<f64> = runs.iter().map(|r| ms(r.latency.mean_us)).collect();
    for r in &runs {
        let (lo, hi) = (expect - bound, expect + bound);
        // HdrHistogram's 3 significant figures: 0.1%.
        let (min, max) = (
            ms(r.spectrum.first().map_or(0, |p| p.latency_us)),
            ms(r.latency.max_us),
        );
        assert!(
            min >= lo * 0.999 - 0.001 && max <= hi * 1.001 + 0.001,
            "{case}: latencies {min}..{max} ms outside {lo}..{hi}"
        );
    }
    vec![row(&case, "mean latency (ms)", expect, &means, 0.001)]
}

/// A client timeout of 30 ms in front of a 100 ms service: every request fails at its timeout.
/// tokio timers fire on the millisecond after their deadline, and requests are sent at
/// uniformly spread microseconds, so the latency is 30 ms plus a uniform [0, 1) ms: mean 30.5 ms.
fn timeouts(reps: u64) -> Vec<Row> {
    let src = r#"name = "timeouts"
[mesh]
enabled = false
[network]
latency = "0s"
[[services]]
name = "q"
workers = 1000
latency = { dist = "constant", value = "100ms" }
[workload]
target = "q"
rate_rps = 100
duration = "11s"
warmup = "1s"
timeout = "30ms"
"#;
    let runs = replicate(src, reps);
    for r in &runs {
        assert_eq!(r.books.failed, r.books.failed_by_reason["client_timeout"]);
        assert!(ms(r.latency.max_us) < 31.0 * 1.001, "{:?}", r.latency);
        assert!(
            ms(r.spectrum.first().map_or(0, |p| p.latency_us)) >= 30.0 * 0.999,
            "{:?}",
            r.spectrum.first()
        );
    }
    let means: Vec<f64> = runs.iter().map(|r| ms(r.latency.mean_us)).collect();
    vec![row(
        "client timeout 30 ms before a 100 ms service",
        "mean latency (ms)",
        30.5,
        &means,
        0.001,
    )]
}

/// One worker offered twice what it can do: it completes exactly 1/S requests per second (the
/// rest are refused at its full queue).
fn saturated(s_ms: f64, warmup_s: u64, measure_s: u64, reps: u64) -> Vec<Row> {
    let src = queue_src(
        1,
        10,
        &exponential(s_ms),
        2.0 * 1000.0 / s_ms,
        warmup_s,
        measure_s,
    );
    let runs = replicate(&src, reps);
    let x: Vec<f64> = runs
        .iter()
        .map(|r| r.services["q"].throughput_rps)
        .collect();
    vec![row(
        &format!("M/M/1/11 at twice its capacity, S = {s_ms} ms"),
        "throughput (/s)",
        1000.0 / s_ms,
        &x,
        0.0,
    )]
}

/// Retries without a budget, every attempt failing with probability p and up to r retries:
/// attempts per request are a geometric series cut at r + 1, mean (1 − p^(r+1)) / (1 − p).
fn retries(p: f64, r: u32, reps: u64) -> Vec<Row> {
    let src = format!(
        r#"name = "retries"
[mesh]
baseline = false
[[services]]
name = "q"
error_rate = {p}
[services.policy]
retry = {{ max_retries = {r}, retry_on = ["5xx"], backoff_base = "1ms", backoff_max = "1ms" }}
[workload]
target = "q"
rate_rps = 200
duration = "10s"
warmup = "0s"
"#
    );
    let runs: Vec<RunStats> = (1..=reps)
        .map(|s| common::simulate(&src, s, true))
        .collect();
    let amp: Vec<f64> = runs
        .iter()
        .map(|s| s.edges["clients->q"].retry_amplification)
        .collect();
    let theory = (1.0 - p.powi(r as i32 + 1)) / (1.0 - p);
    vec![row(
        &format!("retries, p = {p}, max {r}, no budget"),
        "attempts per request",
        theory,
        &amp,
        1e-4,
    )]
}

fn assert_rows(rows: &[Row]) {
    for r in rows {
        println!("{}", r.markdown());
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.holds())
        .map(Row::markdown)
        .collect();
    assert!(
        bad.is_empty(),
        "outside their interval:\n{}",
        bad.join("\n")
    );
}

#[test]
fn mm1_fast_service() {
    for rho in [0.5, 0.7, 0.9] {
        assert_rows(&mm1(2.0, rho, 5, 20, 8, false));
    }
}

#[test]
fn mm1_slow_service_at_half_load() {
    assert_rows(&mm1(20.0, 0.5, 5, 60, 8, false));
}

#[test]
fn md1_pollaczek_khinchine() {
    assert_rows(&md1(2.0, 0.7, 2, 20, 8));
}

#[test]
fn mm4_erlang_c() {
    assert_rows(&mmc(4, 2.0, 0.9, 3, 12, 8));
}

#[test]
fn mm4_4_erlang_b() {
    assert_rows(&mmcc(4, 2.0, 3.0, 1, 10, 8));
}

#[test]
fn idle_chain_latency_and_jitter_are_exact() {
    assert_rows(&idle_chain(250, 0, 4));
    assert_rows(&idle_chain(400, 150, 8));
}

#[test]
fn timeouts_fire_at_their_time() {
    assert_rows(&timeouts(8));
}

#[test]
fn saturated_throughput_is_one_over_s() {
    assert_rows(&saturated(20.0, 2, 30, 8));
}

#[test]
fn retry_amplification_closed_form() {
    assert_rows(&retries(0.5, 3, 8));
}

/// The long rows: heavy load on slow services and far tails.
fn long_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    // Warm-ups of at least 25 relaxation times 1/(μ(1−√ρ)²); runs of hundreds to thousands.
    rows.extend(mm1(2.0, 0.95, 20, 1200, 16, true));
    rows.extend(mm1(20.0, 0.7, 20, 600, 8, true));
    rows.extend(mm1(20.0, 0.9, 60, 1200, 8, true));
    rows.extend(mm1(20.0, 0.95, 800, 4800, 8, true));
    rows
}

#[test]
#[ignore = "long: heavy load on slow services (minutes); cargo test --release -- --ignored"]
fn mm1_heavy_load() {
    assert_rows(&long_rows());
}

/// Every row, printed as VALIDATION.md's table (and written into it with MESHSIM_BLESS=1).
#[test]
#[ignore = "long: regenerates sim/VALIDATION.md's table"]
fn validation_table() {
    let mut rows = Vec::new();
    for rho in [0.5, 0.7, 0.9] {
        rows.extend(mm1(2.0, rho, 5, 20, 8, false));
    }
    rows.extend(mm1(20.0, 0.5, 5, 60, 8, false));
    rows.extend(md1(2.0, 0.7, 2, 20, 8));
    rows.extend(mmc(4, 2.0, 0.9, 3, 12, 8));
    rows.extend(mmcc(4, 2.0, 3.0, 1, 10, 8));
    rows.extend(idle_chain(250, 0, 4));
    rows.extend(idle_chain(400, 150, 8));
    rows.extend(timeouts(8));
    rows.extend(saturated(20.0, 2, 30, 8));
    rows.extend(retries(0.5, 3, 8));
    rows.extend(long_rows());
    let table = std::iter::once(
        "| case | metric | theory | simulated | error | 99% interval | holds |\n|---|---|---:|---:|---:|---:|---|"
            .to_string(),
    )
    .chain(rows.iter().map(Row::markdown))
    .collect::<Vec<_>>()
    .join("\n");
    println!("{table}");
    if std::env::var_os("MESHSIM_BLESS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("VALIDATION.md");
        let doc = std::fs::read_to_string(&path).expect("VALIDATION.md exists");
        let (head, rest) = doc
            .split_once("<!-- table -->")
            .expect("table start marker");
        let (_, tail) = rest
            .split_once("<!-- /table -->")
            .expect("table end marker");
        std::fs::write(
            &path,
            format!("{head}<!-- table -->\n{table}\n<!-- /table -->{tail}"),
        )
        .expect("write VALIDATION.md");
    }
    assert_rows(&rows);
}

#[test]
fn erlang_formulas_match_known_values() {
    // By hand: B(4, 3) = (81/24) / (1 + 3 + 4.5 + 4.5 + 3.375) = 0.20611;
    // C(4, 3.6) = 69.984 / (18.856 + 69.984) = 0.78776 (ρ = 0.9).
    assert!((erlang_b(4, 3.0) - 0.206_107).abs() < 1e-5);
    assert!(
        (erlang_c(4, 3.6) - 0.787_75).abs() < 1e-4,
        "{}",
        erlang_c(4, 3.6)
    );
    assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12, "M/M/1: P(wait) = ρ");
}
