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

fn run_file_with_preset(file: &str, preset: &str) -> RunStats {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let src = src.replace("preset = \"istio-1.24\"", &format!("preset = \"{preset}\""));
    let loaded = Loaded {
        scenario: parse(file, &src).unwrap_or_else(|e| panic!("{e}")),
        path,
        hash: "test".into(),
        cost: Calibration::builtin(),
    };
    sim::run::simulate(&loaded, 19, true, &mut |_, _| {})
}

#[test]
fn what_each_mesh_default_does_with_a_crashed_pod() {
    let ratio = |s: &RunStats| s.books.ok as f64 / (s.books.ok + s.books.failed) as f64;
    let istio = run_file_with_preset("preset-crash.toml", "istio-1.24");
    let envoy = run_file_with_preset("preset-crash.toml", "envoy");
    let consul = run_file_with_preset("preset-crash.toml", "consul");
    let linkerd = run_file_with_preset("preset-crash.toml", "linkerd-2.16");
    // Istio retries connect failures and resets on other pods.
    assert!(ratio(&istio) > 0.995, "{:?}", istio.books);
    assert!(istio.edges["web->backend"].retries > 0);
    // Plain Envoy neither retries nor ejects: round robin keeps feeding the dead pod.
    assert!(ratio(&envoy) < 0.95, "{:?}", envoy.books);
    assert_eq!(envoy.edges["web->backend"].retries, 0);
    // Consul's default outlier detection ejects it after 5 failures, so fewer fail than with Envoy.
    assert!(
        ratio(&consul) > ratio(&envoy),
        "{:?} vs {:?}",
        consul.books,
        envoy.books
    );
    assert!(consul.health.iter().any(|h| h.event == "ejected"));
    // Linkerd does not retry, but peak-EWMA steers around the endpoint that stopped answering.
    assert_eq!(linkerd.edges["web->backend"].retries, 0);
    assert!(ratio(&linkerd) > ratio(&consul), "{:?}", linkerd.books);
}

#[test]
fn presets_carry_the_documented_defaults() {
    use sim::scenario::{Preset, RetryOnSpec};
    let i124 = Preset::Istio124.policy();
    let r = i124.retry.as_ref().unwrap();
    assert_eq!(r.max_retries, 2);
    assert!(r.retry_on.contains(&RetryOnSpec::ConnectFailure) && r.retry_statuses.is_empty());
    assert!(r.budget.is_none());
    assert_eq!(
        i124.timeout.unwrap().as_ms(),
        0,
        "Istio sets no route timeout"
    );
    assert_eq!(
        Preset::Istio123.policy().retry.unwrap().retry_statuses,
        vec![503]
    );
    let l = Preset::Linkerd216.policy();
    assert!(l.retry.is_none() && l.outlier.is_none());
    assert_eq!(
        Preset::Envoy.policy().circuit_breaker.unwrap().max_retries,
        3
    );
    assert_eq!(
        Preset::Consul
            .policy()
            .outlier
            .unwrap()
            .consecutive_failures,
        5
    );
}

#[test]
fn breaker_trips_while_db_hangs_and_closes_after() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/breaker.toml");
    let loaded = sim::scenario::load(&path).unwrap();
    let s = sim::run::simulate(&loaded, 29, true, &mut |_, _| {});
    let window = |from: u64, to: u64| {
        s.timeline
            .iter()
            .filter(|b| b.t_s >= from && b.t_s < to)
            .fold((0, 0), |(ok, failed), b| (ok + b.ok, failed + b.failed))
    };
    let (_, failed_during) = window(3, 6);
    let (ok_after, failed_after) = window(7, 9);
    assert!(
        failed_during > 100,
        "fails while db hangs: {:?}",
        s.timeline
    );
    assert_eq!(
        failed_after, 0,
        "breaker closed after recovery: {:?}",
        s.timeline
    );
    assert!(ok_after > 400);
    assert!(s.books.failed_by_reason.contains_key("dependency_failed"));
}

#[test]
fn header_and_path_routes_override_split_and_timeout() {
    let src = r#"
name = "routes"
[mesh]
baseline = false
[[services]]
name = "reviews"
replicas = 2
latency = { dist = "constant", value = "2ms" }
subsets = [{ name = "v2", replicas = 1, error_rate = 1.0 }]
[services.policy]
split = [{ subset = "v1", weight = 1 }]
[[services.policy.routes]]
name = "canary"
headers = { "x-canary" = "1" }
split = [{ subset = "v2", weight = 1 }]
[[services.policy.routes]]
name = "reports"
path_prefix = "/slow"
timeout = "1ms"
[workload]
target = "reviews"
rate_rps = 100
duration = "3s"
routes = [
  { path = "/a", weight = 8 },
  { path = "/b", weight = 1, headers = { "x-canary" = "1" } },
  { path = "/slow/x", weight = 1 },
]
"#;
    let loaded = Loaded {
        scenario: parse("routes.toml", src).unwrap_or_else(|e| panic!("{e}")),
        path: "routes.toml".into(),
        hash: "test".into(),
        cost: Calibration::builtin(),
    };
    let s = sim::run::simulate(&loaded, 5, true, &mut |_, _| {});
    let r = |name: &str| &s.routes[name].books;
    assert_eq!(r("GET /a").failed, 0, "default route goes to v1 only");
    assert_eq!(r("GET /b").ok, 0, "header route goes to the failing v2");
    assert!(r("GET /b").failed > 0);
    let slow = r("GET /slow/x");
    assert_eq!(
        slow.failed_by_reason.get("upstream_timeout"),
        Some(&slow.sent),
        "{slow:?}"
    );
    assert_eq!(s.subsets["reviews/v2"].attempts, r("GET /b").sent);
}
