//! Each fault kind does what the scenario format promises, seen from the report.

mod common;

use reports::RunStats;

const BASE: &str = r#"
name = "t"
[mesh]
baseline = false
request_timeout = "2s"
[[services]]
name = "web"
replicas = 2
latency = { dist = "constant", value = "2ms" }
[workload]
target = "web"
rate_rps = 100
duration = "4s"
timeout = "5s"
"#;

fn run(extra: &str, mesh: bool) -> RunStats {
    run_src(&format!("{BASE}{extra}"), mesh)
}

fn run_src(src: &str, mesh: bool) -> RunStats {
    common::simulate(src, 1, mesh)
}

fn bucket_ok_ratio(s: &RunStats, from_s: u64, to_s: u64) -> f64 {
    let (ok, all) = s
        .timeline
        .iter()
        .filter(|b| b.t_s >= from_s && b.t_s < to_s)
        .fold((0, 0), |(o, a), b| (o + b.ok, a + b.ok + b.failed));
    ok as f64 / all.max(1) as f64
}

#[test]
fn healthy_baseline_is_fast_and_clean() {
    let s = run("", true);
    assert_eq!(s.books.failed, 0);
    assert!(s.latency.p99_us < 10_000, "{:?}", s.latency);
}

#[test]
fn latency_fault_adds_its_delay_each_way_or_one_way() {
    let both = run(
        "[[faults]]\nkind = \"latency\"\nbetween = [\"clients\", \"web\"]\ndelay = \"50ms\"\nat = \"0s\"\n",
        true,
    );
    assert!(
        both.latency.p50_us >= 100_000 && both.latency.p50_us < 110_000,
        "{:?}",
        both.latency
    );
    let one = run(
        "[[faults]]\nkind = \"latency\"\nbetween = [\"clients\", \"web\"]\ndelay = \"50ms\"\none_way = true\nat = \"0s\"\n",
        true,
    );
    assert!(
        one.latency.p50_us >= 50_000 && one.latency.p50_us < 60_000,
        "{:?}",
        one.latency
    );
}

#[test]
fn jitter_spreads_latency_and_loses_nothing() {
    // That jitter never reorders packets on a link is checked on the fabric itself
    // (`substrate::tests::jitter_never_reorders_a_link`); here: a whole run under jitter.
    let s = run(
        "[[faults]]\nkind = \"latency\"\nbetween = [\"clients\", \"web\"]\ndelay = \"20ms\"\njitter = \"15ms\"\nat = \"0s\"\n",
        true,
    );
    assert_eq!(s.books.failed, 0);
    assert!(
        s.latency.max_us - s.latency.p50_us >= 5_000,
        "jitter shows in the spread: {:?}",
        s.latency
    );
}

#[test]
fn short_partition_is_ridden_out_by_tcp_retransmission() {
    // Shorter than the proxy's 2 s timeout: segments are retransmitted after it heals.
    let s = run(
        "[[faults]]\nkind = \"partition\"\nbetween = [\"clients\", \"web\"]\nat = \"1s\"\nuntil = \"2s\"\n",
        true,
    );
    assert!(s.network.dropped_partition > 0);
    assert_eq!(s.books.failed, 0, "{:?}", s.books);
    assert!(s.latency.max_us >= 900_000, "{:?}", s.latency);
}

#[test]
fn long_partition_fails_requests_then_heals() {
    let src = format!(
        "{}[[faults]]\nkind = \"partition\"\nbetween = [\"clients\", \"web\"]\nat = \"1s\"\nuntil = \"4s\"\n",
        BASE.replace("duration = \"4s\"", "duration = \"7s\"")
    );
    let s = run_src(&src, true);
    assert!(s.books.failed > 0, "{:?}", s.books);
    assert!(
        s.books.failed_by_reason.contains_key("upstream_timeout"),
        "{:?}",
        s.books
    );
    assert!(bucket_ok_ratio(&s, 5, 7) > 0.99, "healed: {:?}", s.timeline);
}

#[test]
fn hold_delays_but_does_not_lose() {
    let s = run(
        "[[faults]]\nkind = \"hold\"\nbetween = [\"clients\", \"web\"]\nat = \"1s\"\nuntil = \"1500ms\"\n",
        true,
    );
    assert_eq!(s.books.failed, 0, "{:?}", s.books);
    assert!(s.network.held > 0);
    assert!(
        s.latency.max_us >= 450_000,
        "held requests wait for the release: {:?}",
        s.latency
    );
}

#[test]
fn crash_fails_requests_and_restart_recovers() {
    for mesh in [true, false] {
        let s = run(
            "[[faults]]\nkind = \"crash\"\npod = \"web-1\"\nat = \"1s\"\nuntil = \"2s\"\n",
            mesh,
        );
        assert!(s.books.failed > 0, "mesh={mesh}: {:?}", s.books);
        assert!(s.network.dropped_crashed > 0);
        assert!(
            bucket_ok_ratio(&s, 3, 4) > 0.99,
            "mesh={mesh}: restarted pod serves again: {:?}",
            s.timeline
        );
    }
}

#[test]
fn slow_and_errors_modes_apply_in_their_window() {
    let s = run(
        "[[faults]]\nkind = \"slow\"\nservice = \"web\"\nextra = \"100ms\"\nat = \"1s\"\nuntil = \"2s\"\n",
        true,
    );
    assert_eq!(s.books.failed, 0);
    let slow = s.timeline.iter().find(|b| b.t_s == 1).unwrap();
    let fast = s.timeline.iter().find(|b| b.t_s == 3).unwrap();
    assert!(
        slow.p99_us >= 100_000 && fast.p99_us < 20_000,
        "{slow:?} {fast:?}"
    );

    let e = run(
        "[[faults]]\nkind = \"errors\"\nservice = \"web\"\nrate = 0.5\nat = \"0s\"\n",
        true,
    );
    let ratio = e.books.failed as f64 / e.books.sent as f64;
    assert!((0.4..0.6).contains(&ratio), "{ratio}");
    assert_eq!(
        e.books.failed_by_reason.get("app_error"),
        Some(&e.books.failed)
    );
}

#[test]
fn latency_is_removed_at_until() {
    let s = run(
        "[[faults]]\nkind = \"latency\"\nbetween = [\"clients\", \"web\"]\ndelay = \"50ms\"\nat = \"0s\"\nuntil = \"2s\"\n",
        true,
    );
    let during = s.timeline.iter().find(|b| b.t_s == 1).unwrap();
    let after = s.timeline.iter().find(|b| b.t_s == 3).unwrap();
    assert!(during.p50_us >= 100_000, "{during:?}");
    assert!(
        after.p99_us < 10_000,
        "the delay is gone after `until`: {after:?}"
    );
}

#[test]
fn one_way_partition_fails_requests_it_cuts() {
    // Requests from the clients reach no web pod; the answers' direction is open, which does not
    // help: every request sent while it lasts times out.
    let src = format!(
        "{}[[faults]]\nkind = \"partition\"\nbetween = [\"clients\", \"web\"]\none_way = true\nat = \"1s\"\nuntil = \"4s\"\n",
        BASE.replace("duration = \"4s\"", "duration = \"7s\"")
    );
    let s = run_src(&src, true);
    assert!(s.network.dropped_partition > 0);
    assert!(bucket_ok_ratio(&s, 2, 3) < 0.01, "cut: {:?}", s.timeline);
    assert!(bucket_ok_ratio(&s, 5, 7) > 0.99, "healed: {:?}", s.timeline);
}

#[test]
fn crash_without_restart_stays_down() {
    // Without the mesh the clients spread over both pods, so half the requests keep failing to
    // the end of the run; with a restart (the test above) they recover.
    let s = run(
        "[[faults]]\nkind = \"crash\"\npod = \"web-1\"\nat = \"1s\"\n",
        false,
    );
    let late = bucket_ok_ratio(&s, 3, 4);
    assert!(
        (0.3..0.7).contains(&late),
        "half still fail at the end: {late}"
    );
    assert!(bucket_ok_ratio(&s, 0, 1) > 0.99);
}

#[test]
fn cross_zone_latency_applies_between_zones_only() {
    // Clients live in the first service's zones ("a"); web calls db. With db in zone "b" each
    // request crosses zones on the web -> db call, there and back: +40 ms.
    let src = |db_zone: &str| {
        BASE.replace(
            "[workload]",
            &format!(
                "calls = [{{ service = \"db\" }}]\n[[services]]\nname = \"db\"\nzones = [\"{db_zone}\"]\nlatency = {{ dist = \"constant\", value = \"1ms\" }}\n[network]\ncross_zone_latency = \"20ms\"\n[workload]"
            ),
        )
    };
    let same = run_src(&src("a"), false);
    let cross = run_src(&src("b"), false);
    assert!(same.latency.p50_us < 10_000, "{:?}", same.latency);
    let added = cross.latency.p50_us as i64 - same.latency.p50_us as i64;
    assert!(
        (39_000..42_000).contains(&added),
        "two 20 ms crossings: +{added} µs"
    );
}

/// A service slower than its callers' timeout for a while: every request that times out is
/// cancelled at the app. Once the slowdown ends the service must serve again; when cancelled
/// requests kept their admission places, the app refused everything as overloaded from the
/// moment workers + queue requests had been cancelled, for the rest of the run.
#[test]
fn a_service_behind_timeouts_recovers_when_the_fault_ends() {
    let src = r#"
name = "t"
[mesh]
baseline = false
request_timeout = "50ms"
[[services]]
name = "web"
replicas = 1
workers = 4
queue = 8
latency = { dist = "constant", value = "2ms" }
[workload]
target = "web"
rate_rps = 100
duration = "12s"
timeout = "5s"
[[faults]]
kind = "slow"
at = "2s"
until = "6s"
service = "web"
extra = "100ms"
"#;
    for mesh in [true, false] {
        let s = run_src(src, mesh);
        let during = bucket_ok_ratio(&s, 3, 6);
        let after = bucket_ok_ratio(&s, 7, 12);
        if mesh {
            // The sidecar's 50 ms timeout cancels every slowed request: far more than the
            // 12 places the app has.
            assert!(during < 0.2, "mesh: ok ratio during the slowdown {during}");
        }
        assert!(
            after >= 0.99,
            "mesh={mesh}: ok ratio after the fault {after}"
        );
    }
}

/// The mechanism behind `scenarios/metastable.toml`: with `cancellation = "continue"` svc never
/// recovers from the 2 s slowdown (its workers serve requests whose callers left); the same file
/// with `cancellation = "abort"` recovers as soon as the slowdown ends, because abandoned requests
/// leave the queue with their callers. Wasted work is what separates the two.
#[test]
fn abandoned_work_is_what_keeps_a_metastable_failure_going() {
    let path = common::library_path("metastable.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    assert!(src.contains("cancellation = \"continue\""));
    let late = |s: &reports::RunStats| {
        let (ok, all) = s
            .timeline
            .iter()
            .filter(|b| b.t_s >= 6)
            .fold((0, 0), |(o, a), b| (o + b.ok, a + b.ok + b.failed));
        ok as f64 / all as f64
    };
    let cont = common::simulate(&src, 7, true);
    let abort = common::simulate(
        &src.replace("cancellation = \"continue\"", "cancellation = \"abort\""),
        7,
        true,
    );
    assert!(late(&cont) < 0.01, "continue: {:?}", cont.timeline);
    assert!(late(&abort) > 0.99, "abort: {:?}", abort.timeline);
    let wasted = |s: &reports::RunStats| s.services["svc"].wasted_ms;
    assert!(
        wasted(&cont) > 3.0 * wasted(&abort),
        "{} vs {}",
        wasted(&cont),
        wasted(&abort)
    );
}
