//! Resilience policies seen end to end: which requests are retried, per-try timeouts, breakers.

use reports::RunStats;
use sim::cost::Calibration;
use sim::scenario::{Loaded, parse};

fn run(service_extra: &str, workload_extra: &str) -> RunStats {
    let latency = if service_extra.contains("latency =") {
        ""
    } else {
        r#"latency = { dist = "constant", value = "2ms" }"#
    };
    let src = format!(
        r#"
name = "t"
[mesh]
baseline = false
[[services]]
name = "web"
replicas = 2
{latency}
{service_extra}
[workload]
target = "web"
rate_rps = 50
duration = "3s"
{workload_extra}
"#
    );
    let scenario = parse("t.toml", &src).unwrap_or_else(|e| panic!("{e}"));
    let loaded = Loaded {
        scenario,
        path: "t.toml".into(),
        hash: "test".into(),
        cost: Calibration::builtin(),
    };
    let s = sim::run::simulate(&loaded, 3, true, &mut |_, _| {});
    assert!(s.books.balanced);
    s
}

#[test]
fn non_idempotent_requests_are_never_retried_unless_allowed() {
    let post = r#"routes = [{ method = "POST", path = "/pay" }]"#;
    let s = run(
        "error_rate = 1.0\n[services.policy]\nretry = { max_retries = 3, retry_on = [\"5xx\"] }",
        post,
    );
    let e = &s.edges["clients->web"];
    assert_eq!((e.retries, e.attempts), (0, e.requests), "{e:?}");

    let s = run(
        "error_rate = 1.0\n[services.policy]\nretry = { max_retries = 3, retry_on = [\"5xx\"], retry_non_idempotent = true }",
        post,
    );
    assert_eq!(s.edges["clients->web"].retry_amplification, 4.0);
}

#[test]
fn gateway_error_does_not_retry_a_plain_500() {
    let s = run(
        "error_rate = 1.0\n[services.policy]\nretry = { max_retries = 3, retry_on = [\"gateway-error\"] }",
        "",
    );
    assert_eq!(s.edges["clients->web"].retries, 0);
}

#[test]
fn per_try_timeout_bounds_each_attempt_and_is_retried() {
    let s = run(
        "latency = { dist = \"constant\", value = \"80ms\" }\n[services.policy]\nretry = { max_retries = 2, per_try_timeout = \"30ms\", retry_on = [\"gateway-error\"] }",
        "",
    );
    let e = &s.edges["clients->web"];
    assert_eq!(e.per_try_timeouts, e.attempts, "{e:?}");
    assert_eq!(e.retry_amplification, 3.0);
    assert_eq!(
        s.books.failed_by_reason.get("upstream_timeout"),
        Some(&s.books.failed)
    );
    // Three 30 ms tries plus backoff: every request ends well before the app would have answered twice.
    assert!(s.latency.max_us < 400_000, "{:?}", s.latency);
}

#[test]
fn overall_timeout_cuts_retries_short() {
    let s = run(
        "latency = { dist = \"constant\", value = \"80ms\" }\n[services.policy]\ntimeout = \"100ms\"\nretry = { max_retries = 5, per_try_timeout = \"30ms\", retry_on = [\"gateway-error\"] }",
        "",
    );
    let e = &s.edges["clients->web"];
    assert!(e.timeouts > 0 && e.retry_amplification < 6.0, "{e:?}");
    assert!(s.latency.max_us < 110_000, "{:?}", s.latency);
}

#[test]
fn breaker_fast_fails_overflow_with_503() {
    let s = run(
        "latency = { dist = \"constant\", value = \"100ms\" }\n[services.policy]\ncircuit_breaker = { max_requests = 2 }",
        "",
    );
    let e = &s.edges["clients->web"];
    assert!(e.circuit_open > 0, "{e:?}");
    assert_eq!(
        s.books.failed_by_reason.get("circuit_open"),
        Some(&e.circuit_open)
    );
    assert!(s.books.ok > 0);
}
