//! The workload and the service model against answers known in advance: Poisson arrivals at the
//! stated rate, the interactive response-time law for closed loops, a saturated service's
//! throughput, sequential fan-out and call probability. Tolerances are four standard errors of
//! the quantity measured, derived in each test.

mod common;

fn service(extra: &str) -> String {
    format!(
        r#"
name = "t"
[mesh]
baseline = false
[[services]]
name = "web"
latency = {{ dist = "constant", value = "10ms" }}
{extra}
"#
    )
}

#[test]
fn open_loop_sends_poisson_arrivals_at_the_rate() {
    // 200 rps for 20 s: N ~ Poisson(4000), σ = √4000 ≈ 63. Per-second counts of a Poisson stream
    // have variance equal to their mean: the index of dispersion Σ(x - x̄)²/x̄ over 20 seconds is
    // χ² with 19 degrees of freedom, inside [5.4, 43.8] with probability 0.999. Evenly spaced
    // sends (no randomness) would give about 0; bursts far more.
    let src = format!(
        "{}[workload]\ntarget = \"web\"\nrate_rps = 200\nduration = \"20s\"\nclients = 2\n",
        service("")
    );
    let s = common::simulate(&src, 5, false);
    let sent = s.books.sent as f64;
    assert!((sent - 4000.0).abs() < 4.0 * 4000f64.sqrt(), "sent {sent}");
    let counts: Vec<f64> = s
        .timeline
        .iter()
        .filter(|b| b.t_s < 20)
        .map(|b| b.sent as f64)
        .collect();
    assert_eq!(counts.len(), 20);
    let mean = counts.iter().sum::<f64>() / 20.0;
    let dispersion = counts.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / mean;
    assert!(
        (5.4..43.8).contains(&dispersion),
        "index of dispersion {dispersion}"
    );
    // Another seed draws other arrivals.
    let other = common::simulate(&src, 6, false);
    assert_ne!(other.books.sent, s.books.sent);
}

#[test]
fn closed_loop_obeys_the_response_time_law() {
    // N users, think time Z, response time R: throughput X = N / (R + Z) (interactive response
    // time law). Each user has one request outstanding, so 10 users on a service with 10
    // workers never queue: R is the service's 10 ms plus the network, whatever the load.
    // Edge effect: at most N cycles are cut by the end of the run, out of X·T ≈ 1,800.
    let src = format!(
        "{}[workload]\ntarget = \"web\"\nmodel = \"closed\"\nusers = 10\nthink = \"100ms\"\nduration = \"20s\"\n",
        service("workers = 10\nqueue = 0")
    );
    let s = common::simulate(&src, 5, false);
    assert_eq!(s.books.failed, 0, "{:?}", s.books);
    let r_s = s.latency.mean_us as f64 / 1e6;
    let x = s.books.ok as f64 / 20.0;
    let law = 10.0 / (r_s + 0.100);
    assert!(
        (x - law).abs() / law < 10.0 / (law * 20.0) + 0.01,
        "throughput {x}/s, law {law}/s (R = {r_s} s)"
    );
    // No queueing: every response within the service time plus a few ticks of network.
    assert!(s.latency.max_us < 10_000 + 6_000, "{:?}", s.latency);
    assert!(s.latency.p50_us >= 10_000, "{:?}", s.latency);
}

#[test]
fn closed_loop_think_time_sets_the_pace() {
    // The same users with ten times the think time send about ten times fewer requests.
    let run = |think: &str| {
        let src = format!(
            "{}[workload]\ntarget = \"web\"\nmodel = \"closed\"\nusers = 5\nthink = \"{think}\"\nduration = \"20s\"\n",
            service("")
        );
        common::simulate(&src, 2, false)
    };
    let fast = run("10ms");
    let slow = run("1000ms");
    let per_user = |s: &reports::RunStats| s.books.sent as f64 / 5.0;
    // R ≈ 12 ms: 20 s / (12 ms + 10 ms) ≈ 900 per user; 20 s / 1,012 ms ≈ 20 per user.
    assert!(
        (800.0..1000.0).contains(&per_user(&fast)),
        "{}",
        per_user(&fast)
    );
    assert!(
        (19.0..=21.0).contains(&per_user(&slow)),
        "{}",
        per_user(&slow)
    );
}

#[test]
fn saturated_service_serves_at_its_capacity_and_sheds_the_rest() {
    // One worker, 100 ms per request: capacity 10/s. At 50 rps the queue of 5 fills and the rest
    // is refused with 503 app_overloaded. Served = T / S up to the request in service when the
    // run stops (the clients wait for every answer: nothing is cut).
    let src = format!(
        "{}[workload]\ntarget = \"web\"\nrate_rps = 50\nduration = \"10s\"\n",
        service("workers = 1\nqueue = 5").replace("value = \"10ms\"", "value = \"100ms\"")
    );
    let s = common::simulate(&src, 3, false);
    let served = s.books.ok;
    assert!(
        (100..=107).contains(&served),
        "about 10/s for 10 s plus the queue drained: {served}"
    );
    assert_eq!(
        s.books.failed_by_reason.get("app_overloaded").copied(),
        Some(s.books.failed),
        "{:?}",
        s.books
    );
    assert_eq!(s.books.ok + s.books.failed, s.books.sent);
    // Queued requests wait up to five service times before theirs.
    assert!(s.latency_ok.max_us >= 500_000, "{:?}", s.latency_ok);
    assert!(s.latency_ok.max_us < 620_000, "{:?}", s.latency_ok);
}

fn fan_out(call: &str) -> reports::RunStats {
    let src = format!(
        "{}calls = [{call}]\n[[services]]\nname = \"db\"\nlatency = {{ dist = \"constant\", value = \"10ms\" }}\n[workload]\ntarget = \"web\"\nrate_rps = 50\nduration = \"10s\"\n",
        service("").replace("value = \"10ms\"", "value = \"1ms\"")
    );
    common::simulate(&src, 4, true)
}

#[test]
fn sequential_fan_out_adds_latencies_parallel_does_not() {
    let par = fan_out(r#"{ service = "db", fanout = 3 }"#);
    let seq = fan_out(r#"{ service = "db", fanout = 3, parallel = false }"#);
    for s in [&par, &seq] {
        let edge = &s.edges["web->db"];
        assert_eq!(edge.requests, 3 * s.books.sent, "three calls per request");
    }
    // Each db call costs 10 ms plus the same network and sidecar hops, so the sequential
    // version is two more calls' worth slower: 2 × (10 ms + a round trip).
    let added = seq.latency.p50_us as i64 - par.latency.p50_us as i64;
    assert!(
        (20_000..32_000).contains(&added),
        "sequential adds two calls: +{added} µs ({:?} vs {:?})",
        seq.latency,
        par.latency
    );
}

#[test]
fn call_probability_is_the_share_of_requests_that_call() {
    // Binomial: n requests each calling with p = 0.3; σ = √(n p (1 - p)).
    let s = fan_out(r#"{ service = "db", probability = 0.3 }"#);
    let n = s.books.sent as f64;
    let calls = s.edges["web->db"].requests as f64;
    let sigma = (n * 0.3 * 0.7).sqrt();
    assert!(
        (calls - 0.3 * n).abs() < 4.0 * sigma,
        "{calls} calls for {n} requests"
    );
}
