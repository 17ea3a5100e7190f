//! Mutual TLS run for real in the simulator: certificates renew on their mesh's schedule (a
//! count known in closed form), expire without a CA (while open connections live on, since TLS
//! checks a certificate only at the handshake), fail new handshakes as `expired` during a CA
//! outage and recover after it; and all of it is byte-for-byte reproducible by seed.

mod common;

fn scenario(lifetime: &str, control_plane: bool, duration: &str) -> String {
    format!(
        r#"
name = "mtls"
[mesh]
baseline = false
{cp}
[mtls]
lifetime = "{lifetime}"
[[services]]
name = "web"
replicas = 2
latency = {{ dist = "constant", value = "1ms" }}
calls = [{{ service = "db" }}]
[[services]]
name = "db"
replicas = 2
latency = {{ dist = "constant", value = "2ms" }}
[workload]
target = "web"
rate_rps = 20
duration = "{duration}"
warmup = "1s"
"#,
        cp = if control_plane { "[control_plane]" } else { "" }
    )
}

/// Istio's rule renews at 50% of the lifetime plus up to 1%: with 20 s certificates, at
/// 10-10.2 s intervals, so in a 55 s run (it ends within 2 s of that) every one of the 5
/// sidecars (4 pods and the client's) renews exactly 5 times, and nothing fails.
#[test]
fn certificates_renew_as_often_as_the_rule_says_and_nothing_fails() {
    let stats = common::simulate(&scenario("20s", true, "55s"), 2, true);
    let m = stats.mtls.as_ref().expect("an [mtls] run reports it");
    assert!(stats.sim_time_ms < 57_000, "{}", stats.sim_time_ms);
    assert_eq!((m.rotations, m.issued), (25, 25), "{m:?}");
    assert_eq!(m.renewal_failures, 0);
    assert!(m.handshake_failures.is_empty(), "{m:?}");
    assert_eq!(m.expired_at_end, 0);
    assert_eq!(stats.books.failed, 0);
}

/// With no control plane there is no CA: every certificate expires at 20 s. The connections
/// the sidecars opened before keep carrying requests (no handshake, no check), so nothing
/// fails, and the report says every sidecar is running on an expired certificate.
#[test]
fn without_a_ca_certificates_expire_and_open_connections_live_on() {
    let stats = common::simulate(&scenario("20s", false, "30s"), 2, true);
    let m = stats.mtls.as_ref().unwrap();
    assert_eq!(
        (m.rotations, m.issued, m.expired_at_end),
        (0, 0, 5),
        "{m:?}"
    );
    assert_eq!(stats.books.failed, 0);
}

#[test]
fn a_ca_outage_fails_new_handshakes_as_expired_until_the_agents_renew() {
    let loaded = common::library("mtls-ca-outage.toml");
    let stats = common::run(&loaded, loaded.scenario.seed, true);
    let m = stats.mtls.as_ref().unwrap();
    // Refused by the caller (the restarted pod's placeholder has expired) and by the callee
    // (the caller's own certificate expired at 60 s), and nothing else.
    assert!(m.handshake_failures["outbound.expired"] > 0, "{m:?}");
    assert!(
        m.handshake_failures
            .keys()
            .all(|k| k.ends_with(".expired") || k == "inbound.protocol"),
        "{m:?}"
    );
    assert!(m.renewal_failures > 0);
    assert_eq!(
        m.expired_at_end, 0,
        "everyone renewed after the CA returned"
    );
    // The restarted pod is listed only once it has a certificate, after the CA is back at
    // 110 s.
    let cp = stats.control_plane.as_ref().unwrap();
    let ready = cp
        .changes
        .iter()
        .find(|c| c.what == "backend-2 ready")
        .unwrap();
    assert!(ready.at_ms > 110_000, "{ready:?}");
    // Every agent retries at least every 30 s (its backoff's cap), so by 140 s each has asked
    // the returned CA and holds a fresh certificate: from then on nothing fails.
    let late_failures: u64 = stats
        .timeline
        .iter()
        .filter(|b| b.t_s >= 141)
        .map(|b| b.failed)
        .sum();
    assert_eq!(late_failures, 0, "{:?}", stats.timeline);
}

#[test]
fn real_handshakes_replay_byte_for_byte() {
    let src = scenario("10s", true, "25s");
    let json = |seed| serde_json::to_string(&common::simulate(&src, seed, true)).unwrap();
    let a = json(3);
    assert_eq!(a, json(3));
    assert_ne!(a, json(4));
}

/// Permissive, then strict at 10 s: before the switch nothing fails; after it, exactly the
/// plaintext client's requests fail, each refused at the handshake and counted as `plaintext`.
#[test]
fn a_migration_to_strict_refuses_exactly_the_plaintext_caller() {
    let loaded = common::library("mtls-permissive-migration.toml");
    let stats = common::run(&loaded, loaded.scenario.seed, true);
    let before: u64 = stats
        .timeline
        .iter()
        .filter(|b| b.t_s < 10)
        .map(|b| b.failed)
        .sum();
    assert_eq!(before, 0, "{:?}", stats.timeline);
    let m = stats.mtls.as_ref().unwrap();
    assert_eq!(
        m.handshake_failures.keys().collect::<Vec<_>>(),
        ["inbound.plaintext"]
    );
    // One refused connection per failed request: the plaintext client does not reuse a
    // refused connection.
    assert_eq!(
        m.handshake_failures["inbound.plaintext"],
        stats.books.failed
    );
    let after = stats.timeline.iter().filter(|b| b.t_s >= 11);
    let (ok, failed) = after.fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed));
    let share = failed as f64 / (ok + failed) as f64;
    // A quarter of the load, within four standard errors.
    let se = (0.25 * 0.75 / (ok + failed) as f64).sqrt();
    assert!((share - 0.25).abs() < 4.0 * se, "{share} (se {se})");
}

/// A root rotation in Istio's order fails nothing (the scenario asserts it); the same steps with
/// the old root dropped at 45 s, before the workloads' next renewal (about 60 s) moved them to
/// the new root, fail handshakes. Open connections outlive the drop (TLS checks certificates
/// only at the handshake), so the failures start with the first new connections, to the pod
/// restarted at 52 s, and end when the callers renew onto the new root. The two roots share the
/// trust domain's name, so a certificate from the dropped one fails its signature check.
#[test]
fn dropping_the_old_root_before_the_workloads_renew_fails_handshakes_until_they_do() {
    let loaded = common::library("mtls-root-rotation.toml");
    let good = common::run(&loaded, loaded.scenario.seed, true);
    assert_eq!(good.books.failed, 0);
    assert!(good.mtls.as_ref().unwrap().handshake_failures.is_empty());

    let src = std::fs::read_to_string(&loaded.path)
        .unwrap()
        .replace("at = \"100s\"", "at = \"45s\"");
    let early = common::simulate(&src, loaded.scenario.seed, true);
    let m = early.mtls.as_ref().unwrap();
    let refused: u64 = m.handshake_failures.values().sum();
    assert!(refused > 0, "{m:?}");
    assert_eq!(
        m.handshake_failures.keys().collect::<Vec<_>>(),
        ["inbound.bad_signature"]
    );
    let failed_in = |from: u64, to: u64| -> u64 {
        early
            .timeline
            .iter()
            .filter(|b| b.t_s >= from && b.t_s < to)
            .map(|b| b.failed)
            .sum()
    };
    assert_eq!(failed_in(0, 52), 0, "{:?}", early.timeline);
    assert_eq!(
        failed_in(52, 61),
        early.books.failed,
        "{:?}",
        early.timeline
    );
    assert_eq!(early.books.failed, refused);
}
