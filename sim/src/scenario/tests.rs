//! Scenario parsing: good files load; bad ones fail with file, line, field and what was expected.

use super::*;

const MINIMAL: &str = r#"
name = "t"
[[services]]
name = "web"
[workload]
target = "web"
rate_rps = 10
duration = "2s"
"#;

fn err(src: &str) -> ScenarioError {
    parse("t.toml", src).expect_err("should be rejected")
}

#[test]
fn minimal_scenario_loads_with_documented_defaults() {
    let s = parse("t.toml", MINIMAL).unwrap();
    assert_eq!(s.seed, 1);
    assert!(s.mesh.enabled && s.mesh.baseline);
    assert_eq!(s.mesh.protocol, Protocol::Http2);
    assert_eq!(s.services[0].replicas, 1);
    assert_eq!(s.workload.model, LoadModel::Open);
    assert_eq!(s.workload.routes[0].label(), "GET /");
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let src = MINIMAL.replace("rate_rps = 10", "rate_rps = 10\nrate = 5");
    let e = err(&src);
    assert_eq!(e.file, "t.toml");
    assert_eq!(e.line, 8, "{e}");
    assert_eq!(e.field, "workload.rate", "{e}");
    assert!(e.message.contains("unknown field `rate`"), "{e}");
    assert!(
        e.message.contains("rate_rps"),
        "lists what is expected: {e}"
    );
}

#[test]
fn bad_duration_says_what_a_duration_looks_like() {
    let e = err(&MINIMAL.replace(r#"duration = "2s""#, "duration = 2"));
    assert_eq!(e.line, 8, "{e}");
    assert!(e.field.contains("workload.duration"), "{e}");
    assert!(e.message.contains("\"250ms\""), "{e}");
    let e = err(&MINIMAL.replace(r#"duration = "2s""#, r#"duration = "2 parsecs""#));
    assert!(e.message.contains("units"), "{e}");
}

#[test]
fn reference_to_missing_service_points_at_it() {
    let src = MINIMAL.replace(
        "[workload]",
        "[[services.calls]]\nservice = \"dbb\"\n[workload]",
    );
    let e = err(&src);
    assert_eq!(e.line, 6, "{e}");
    assert_eq!(e.field, "services[0].calls[0].service");
    assert!(e.message.contains("\"dbb\""), "{e}");
}

#[test]
fn bad_assertion_is_reported_at_its_line() {
    let src = format!("assertions = [\"p99_ms <= 5\", \"p98_ms <= 5\"]\n{MINIMAL}");
    let e = err(&src);
    assert_eq!(e.line, 1, "{e}");
    assert!(e.field.starts_with("assertions"), "{e}");
    assert!(e.message.contains("unknown metric `p98_ms`"), "{e}");
}

#[test]
fn fault_targets_are_checked() {
    let src = format!("{MINIMAL}\n[[faults]]\nkind = \"crash\"\npod = \"web-7\"\nat = \"1s\"\n");
    let e = err(&src);
    assert_eq!(e.line, 10, "{e}");
    assert!(e.message.contains("no pod named \"web-7\""), "{e}");
    let src = format!("{MINIMAL}\n[[faults]]\nkind = \"explode\"\nat = \"1s\"\n");
    let e = err(&src);
    assert!(e.message.contains("explode"), "{e}");
}

#[test]
fn call_cycles_are_rejected() {
    let src = r#"
name = "t"
[[services]]
name = "a"
calls = [{ service = "b" }]
[[services]]
name = "b"
calls = [{ service = "a" }]
[workload]
target = "a"
rate_rps = 1
duration = "1s"
"#;
    let e = err(src);
    assert!(e.message.contains("cycle"), "{e}");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("name = \"t\"\n[[services]\n");
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn what_a_run_would_cost_is_bounded_before_it_starts() {
    // A day of simulated time is the most; a longer one is refused by name.
    let e = err(&MINIMAL.replace("duration = \"2s\"", "duration = \"100000s\""));
    assert_eq!(e.field, "workload.duration", "{e}");
    assert!(e.message.contains("at most 24 hours"), "{e}");
    // Fan-out multiplies along a chain: 1 + 100 × (1 + 100 × 1) = 10,101 calls per request.
    let chain = r#"
name = "t"
[[services]]
name = "a"
calls = [{ service = "b", fanout = 100 }]
[[services]]
name = "b"
calls = [{ service = "c", fanout = 100 }]
[[services]]
name = "c"
[workload]
target = "a"
rate_rps = 1
duration = "2s"
"#;
    let e = err(chain);
    assert_eq!(e.field, "services.calls", "{e}");
    assert!(e.message.contains("10101 calls"), "{e}");
    // One hop less is allowed (101 per request)...
    let short = chain.replace("calls = [{ service = \"c\", fanout = 100 }]", "");
    parse("t.toml", &short).unwrap();
    // ...until the whole run would be too many calls: 1,000 rps for 24 h is 86.4 million.
    let long = MINIMAL
        .replace("rate_rps = 10", "rate_rps = 1000")
        .replace("duration = \"2s\"", "duration = \"1440m\"");
    let e = err(&long);
    assert_eq!(e.field, "workload", "{e}");
    assert!(e.message.contains("86400000 calls"), "{e}");
}

#[test]
fn open_model_needs_a_rate() {
    let e = err(&MINIMAL.replace("rate_rps = 10\n", ""));
    assert_eq!(e.field, "workload.rate_rps");
}

/// A scenario that passes validation and uses every section a rule guards, so that each case
/// below breaks exactly one rule by replacing one piece of it.
const RICH: &str = r#"
name = "t"
[[services]]
name = "web"
replicas = 2
zones = ["a", "b"]
workers = 8
error_rate = 0.1
latency = { dist = "lognormal", p50 = "2ms", p99 = "8ms" }
version = "v1"
subsets = [{ name = "v2", replicas = 1 }]
calls = [{ service = "db", probability = 0.5, fanout = 2 }]
[services.policy]
lb = "round-robin"
split = [{ subset = "v1", weight = 9 }, { subset = "v2", weight = 1 }]
retry = { max_retries = 3, backoff_base = "5ms", backoff_max = "20ms", budget = { ratio = 0.2, min_per_sec = 10, window = "10s" } }
rate_limit = { rps = 100 }
circuit_breaker = { max_requests = 10, max_connections = 10, retry_budget = { percent = 20.0, min_concurrency = 3 } }
routes = [{ name = "r", method = "GET", split = [{ subset = "v2", weight = 1 }], rate_limit = { rps = 5 } }]
[[services]]
name = "db"
latency = { dist = "uniform", min = "1ms", max = "2ms" }
[workload]
target = "web"
rate_rps = 10
duration = "2s"
warmup = "1s"
clients = 2
routes = [{ method = "GET", path = "/a", weight = 1 }]
[[faults]]
kind = "latency"
between = ["clients", "web"]
delay = "5ms"
at = "1s"
until = "2s"
[[faults]]
kind = "crash"
pod = "db-0"
at = "1s"
[[faults]]
kind = "errors"
service = "web"
pod = "web-1"
rate = 0.5
at = "1s"
"#;

/// Every validation rule, each broken on its own: the field it names and what it says.
#[test]
fn every_validation_rule_rejects_what_it_guards() {
    parse("t.toml", RICH).unwrap_or_else(|e| panic!("the rich base must load: {e}"));
    // (what is replaced, by what, field the error must name, text it must contain)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "name = \"web\"\nreplicas",
            "name = \"Web\"\nreplicas",
            "services[0].name",
            "DNS-style",
        ),
        (
            "name = \"web\"\nreplicas",
            "name = \"clients\"\nreplicas",
            "services[0].name",
            "not `clients`",
        ),
        (
            "name = \"db\"\nlatency",
            "name = \"web\"\nlatency",
            "services[1].name",
            "defined twice",
        ),
        (
            "replicas = 2",
            "replicas = 0",
            "services[0].replicas",
            "1 to 5000",
        ),
        (
            "replicas = 2",
            "replicas = 0",
            "services[0].replicas",
            "1 to 5000",
        ),
        (
            // One service past the bound is caught by the count over all services, checked
            // before any pod list is built.
            "replicas = 2",
            "replicas = 5001",
            "services",
            "at most 5000 pods in all",
        ),
        (
            "{ name = \"v2\", replicas = 1 }",
            "{ name = \"v2\", replicas = 4294967295 }",
            "services",
            "at most 5000 pods in all",
        ),
        (
            "zones = [\"a\", \"b\"]",
            "zones = []",
            "services[0].zones",
            "at least one zone",
        ),
        (
            "workers = 8",
            "workers = 0",
            "services[0].workers",
            "at least 1 worker",
        ),
        (
            "error_rate = 0.1",
            "error_rate = 1.5",
            "services[0].error_rate",
            "probability",
        ),
        (
            "p50 = \"2ms\", p99 = \"8ms\"",
            "p50 = \"8ms\", p99 = \"2ms\"",
            "services[0].latency",
            "0 < p50 < p99",
        ),
        (
            "p50 = \"2ms\"",
            "p50 = \"0ms\"",
            "services[0].latency",
            "0 < p50 < p99",
        ),
        (
            "min = \"1ms\", max = \"2ms\"",
            "min = \"3ms\", max = \"2ms\"",
            "services[1].latency",
            "min <= max",
        ),
        (
            "{ name = \"v2\", replicas = 1 }",
            "{ name = \"v1\", replicas = 1 }",
            "services[0].subsets[0].name",
            "defined twice",
        ),
        (
            "{ name = \"v2\", replicas = 1 }",
            "{ name = \"\", replicas = 1 }",
            "services[0].subsets[0].name",
            "empty",
        ),
        (
            "method = \"GET\", split",
            "method = \"G T\", split",
            "services[0].policy.routes[0].method",
            "HTTP method",
        ),
        (
            "split = [{ subset = \"v2\", weight = 1 }], rate",
            "split = [{ subset = \"v3\", weight = 1 }], rate",
            "services[0].policy.routes[0].split",
            "no subset \"v3\"",
        ),
        (
            "rate_limit = { rps = 5 }",
            "rate_limit = { rps = 0 }",
            "services[0].policy.routes[0].rate_limit.rps",
            "above 0",
        ),
        (
            "{ subset = \"v1\", weight = 9 }",
            "{ subset = \"v9\", weight = 9 }",
            "services[0].policy.split",
            "no subset \"v9\"",
        ),
        (
            "lb = \"round-robin\"",
            "lb = \"ring-hash\"",
            "services[0].policy.hash_header",
            "needs `hash_header`",
        ),
        (
            "lb = \"round-robin\"",
            "lb = \"random\"\nhash_header = \"x-user\"",
            "services[0].policy.hash_header",
            "only it takes one",
        ),
        (
            "max_retries = 3,",
            "max_retries = 3, same_endpoint = true, avoid_previous_hosts = true,",
            "services[0].policy.retry.same_endpoint",
            "not both",
        ),
        (
            "replicas = 2",
            "replicas = 2\nnetwork_policy = [{ name = \"x\", action = \"CUSTOM\" }]",
            "services[0].network_policy",
            "ALLOW or DENY",
        ),
        (
            "replicas = 2",
            "replicas = 2\nnetwork_policy = [{ name = \"x\", action = \"ALLOW\", rules = [{ ports = [0] }] }]",
            "services[0].network_policy",
            "port 0",
        ),
        (
            "min_per_sec = 10",
            "min_per_sec = 2147483647",
            "services[0].policy.retry.budget",
            "min_per_sec at most",
        ),
        (
            "max_retries = 3",
            "max_retries = 101",
            "services[0].policy.retry.max_retries",
            "at most 100",
        ),
        (
            "backoff_max = \"20ms\"",
            "backoff_max = \"1ms\"",
            "services[0].policy.retry.backoff_max",
            ">= backoff_base",
        ),
        (
            "ratio = 0.2",
            "ratio = 11.0",
            "services[0].policy.retry.budget",
            "0 <= ratio <= 10",
        ),
        (
            "window = \"10s\"",
            "window = \"500ms\"",
            "services[0].policy.retry.budget",
            "between 1s and 60s",
        ),
        (
            "window = \"10s\"",
            "window = \"61s\"",
            "services[0].policy.retry.budget",
            "between 1s and 60s",
        ),
        (
            "rate_limit = { rps = 100 }",
            "rate_limit = { rps = -1 }",
            "services[0].policy.rate_limit.rps",
            "above 0",
        ),
        (
            "max_requests = 10",
            "max_requests = 0",
            "services[0].policy.circuit_breaker.max_requests",
            "at least 1",
        ),
        (
            "max_connections = 10",
            "max_connections = 0",
            "services[0].policy.circuit_breaker.max_connections",
            "at least 1",
        ),
        (
            "percent = 20.0",
            "percent = 101.0",
            "services[0].policy.circuit_breaker.retry_budget.percent",
            "between 0 and 100",
        ),
        (
            "replicas = 2",
            "replicas = 5000",
            "services",
            "at most 5000 pods",
        ),
        (
            "probability = 0.5",
            "probability = 1.5",
            "services[0].calls[0]",
            "0 <= probability <= 1",
        ),
        (
            "fanout = 2",
            "fanout = 0",
            "services[0].calls[0]",
            "1 <= fanout <= 100",
        ),
        (
            "fanout = 2",
            "fanout = 101",
            "services[0].calls[0]",
            "1 <= fanout <= 100",
        ),
        (
            "target = \"web\"",
            "target = \"mobile\"",
            "workload.target",
            "no service named \"mobile\"",
        ),
        (
            "rate_rps = 10",
            "rate_rps = 0",
            "workload.rate_rps",
            "between 0 and 1000000",
        ),
        (
            "rate_rps = 10",
            "model = \"closed\"",
            "workload.users",
            "between 1 and 100000",
        ),
        (
            "rate_rps = 10",
            "model = \"closed\"\nusers = 100001",
            "workload.users",
            "between 1 and 100000",
        ),
        (
            "warmup = \"1s\"",
            "warmup = \"2s\"",
            "workload.duration",
            "longer than the warm-up",
        ),
        (
            "clients = 2",
            "clients = 0",
            "workload.clients",
            "1 to 1000",
        ),
        (
            "clients = 2",
            "clients = 1001",
            "workload.clients",
            "1 to 1000",
        ),
        (
            "weight = 1 }]\n[[faults]]",
            "weight = 0 }]\n[[faults]]",
            "workload.routes",
            "weight above 0",
        ),
        (
            "path = \"/a\"",
            "path = \"a\"",
            "workload.routes[0]",
            "starting with '/'",
        ),
        (
            "at = \"1s\"\nuntil = \"2s\"",
            "at = \"2s\"\nuntil = \"1s\"",
            "faults[0]",
            "must come after `at`",
        ),
        (
            "between = [\"clients\", \"web\"]",
            "between = [\"clients\", \"nowhere\"]",
            "faults[0]",
            "`between` names \"nowhere\"",
        ),
        (
            "pod = \"db-0\"",
            "pod = \"db-1\"",
            "faults[1]",
            "no pod named \"db-1\"",
        ),
        (
            "service = \"web\"\npod",
            "service = \"wbe\"\npod",
            "faults[2]",
            "no service named \"wbe\"",
        ),
        (
            "pod = \"web-1\"",
            "pod = \"db-0\"",
            "faults[2]",
            "no pod \"db-0\" in service \"web\"",
        ),
        (
            "rate = 0.5\nat",
            "rate = 2.0\nat",
            "faults[2]",
            "probability between 0 and 1",
        ),
    ];
    for (from, to, field, text) in cases {
        assert_eq!(
            RICH.matches(from).count(),
            1,
            "{from:?} must occur once in RICH"
        );
        let src = RICH.replacen(from, to, 1);
        let e = parse("t.toml", &src)
            .err()
            .unwrap_or_else(|| panic!("{from:?} -> {to:?} should be rejected"));
        assert_eq!(e.file, "t.toml");
        assert!(e.line >= 1, "{e}");
        assert_eq!(e.field, *field, "{from:?} -> {to:?}: {e}");
        assert!(e.message.contains(text), "{from:?} -> {to:?}: {e}");
    }
    // No services at all (an absent key is serde's "missing field"; an empty list is ours).
    let e = err(
        "name = \"t\"\nservices = []\n[workload]\ntarget = \"web\"\nrate_rps = 1\nduration = \"1s\"\n",
    );
    assert_eq!(e.field, "services", "{e}");
    assert!(e.message.contains("at least one [[services]]"), "{e}");
}

#[test]
fn control_plane_faults_need_a_control_plane_and_a_bad_push_must_be_bad() {
    let crash = "\n[[faults]]\nkind = \"crash\"\npod = \"control-plane\"\nat = \"1s\"\n";
    let e = err(&format!("{MINIMAL}{crash}"));
    assert_eq!((e.field.as_str(), e.line), ("faults[0]", 10), "{e}");
    assert!(
        e.message.contains("only when a [control_plane] runs"),
        "{e}"
    );
    let with_cp = MINIMAL.replace("[workload]", "[control_plane]\n[workload]");
    parse("t.toml", &format!("{with_cp}{crash}")).unwrap();

    let config = |policy: &str, expect: &str| {
        format!(
            "\n[[faults]]\nkind = \"config\"\nservice = \"web\"\nat = \"1s\"\npolicy = {policy}\n{expect}"
        )
    };
    let good = config("{ timeout = \"50ms\" }", "");
    let e = err(&format!("{MINIMAL}{good}"));
    assert!(e.message.contains("needs a [control_plane]"), "{e}");
    parse("t.toml", &format!("{with_cp}{good}")).unwrap();
    let bad = "{ split = [{ subset = \"v1\", weight = 0 }] }";
    let e = err(&format!("{with_cp}{}", config(bad, "")));
    assert!(
        e.message.contains("would refuse") && e.message.contains("split"),
        "{e}"
    );
    parse(
        "t.toml",
        &format!("{with_cp}{}", config(bad, "expect = \"nack\"")),
    )
    .unwrap();
    let e = err(&format!(
        "{with_cp}{}",
        config("{ timeout = \"50ms\" }", "expect = \"nack\"")
    ));
    assert!(e.message.contains("would accept"), "{e}");
    let e = err(&format!(
        "{with_cp}{}",
        config("{ timeout = \"50ms\" }", "expect = \"maybe\"")
    ));
    assert!(
        e.message.contains("ack") && e.message.contains("nack"),
        "{e}"
    );
}

#[test]
fn mtls_changes_need_mtls_and_plaintext_clients_fit_the_clients() {
    let change =
        "\n[[faults]]\nkind = \"mtls\"\nservice = \"web\"\nmode = \"strict\"\nat = \"1s\"\n";
    let e = err(&format!("{MINIMAL}{change}"));
    assert!(e.message.contains("needs [mtls]"), "{e}");
    let with_mtls = MINIMAL.replace("[workload]", "[mtls]\nmode = \"permissive\"\n[workload]");
    parse("t.toml", &format!("{with_mtls}{change}")).unwrap();
    let e = err(&format!(
        "{with_mtls}{}",
        change.replace("\"strict\"", "\"lenient\"")
    ));
    assert!(e.message.contains("permissive"), "{e}");
    let e = err(&MINIMAL.replace("rate_rps = 10", "rate_rps = 10\nplaintext_clients = 2"));
    assert_eq!(e.field, "workload.plaintext_clients", "{e}");
}

#[test]
fn root_steps_need_mtls_and_signing_needs_a_control_plane() {
    let step = |s: &str| format!("\n[[faults]]\nkind = \"root\"\nstep = \"{s}\"\nat = \"1s\"\n");
    let e = err(&format!("{MINIMAL}{}", step("trust-new")));
    assert!(e.message.contains("needs [mtls]"), "{e}");
    let with_mtls = MINIMAL.replace("[workload]", "[mtls]\n[workload]");
    parse("t.toml", &format!("{with_mtls}{}", step("trust-new"))).unwrap();
    parse("t.toml", &format!("{with_mtls}{}", step("drop-old"))).unwrap();
    let e = err(&format!("{with_mtls}{}", step("sign-new")));
    assert!(e.message.contains("[control_plane]"), "{e}");
    let with_cp = with_mtls.replace("[mtls]", "[control_plane]\n[mtls]");
    parse("t.toml", &format!("{with_cp}{}", step("sign-new"))).unwrap();
    let e = err(&format!("{with_cp}{}", step("rotate")));
    assert!(e.message.contains("trust-new"), "{e}");
}

#[test]
fn a_scale_needs_a_control_plane_and_a_bounded_count() {
    let scale = |n: u32| {
        format!("\n[[faults]]\nkind = \"scale\"\nservice = \"web\"\nreplicas = {n}\nat = \"1s\"\n")
    };
    let e = err(&format!("{MINIMAL}{}", scale(3)));
    assert!(e.message.contains("[control_plane]"), "{e}");
    let with_cp = MINIMAL.replace("[workload]", "[control_plane]\n[workload]");
    parse("t.toml", &format!("{with_cp}{}", scale(3))).unwrap();
    let e = err(&format!("{with_cp}{}", scale(5001)));
    assert!(e.message.contains("at most 5000"), "{e}");
    let e = err(&format!(
        "{with_cp}{}",
        scale(3).replace("\"web\"", "\"nope\"")
    ));
    assert!(e.message.contains("nope"), "{e}");
}
