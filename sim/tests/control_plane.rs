//! The control plane in the simulator, against answers known without it: how long a change
//! takes to reach every proxy when pushes queue on the control plane's CPU (a closed form),
//! that an outage alone loses nothing while a change made during it waits for its end, that a
//! restarted pod is listed only once its sidecar has its configuration, that a bad push is
//! refused everywhere and mended by the next, and that all of it is reproducible by seed.

mod common;

use reports::ControlPlaneStats;
use sim::scenario::FaultSpec;

fn cp(stats: &reports::RunStats) -> &ControlPlaneStats {
    stats
        .control_plane
        .as_ref()
        .expect("a run with [control_plane] reports it")
}

/// One core, `c` of CPU per push, a quiet period `q`: a change made when the control plane is
/// idle is published at `q`, and the k-th of the n pushes it causes leaves at `q + k·c`. So the
/// i-th proxy to have it (sorted) has waited at least `q + i·c`; at most one push more, since one
/// of the n goes to the crashed pod's sidecar, whose stream the control plane still holds.
/// Delays are read in whole ms of simulated time and the link adds 0.1 ms, so the bound above
/// is `q + (i+1)·c` plus 1 ms.
#[test]
fn propagation_queues_on_the_control_planes_cpu_as_the_closed_form_says() {
    let src = r#"
name = "closed-form"
[mesh]
baseline = false
[control_plane]
push_cpu = "5ms"
cores = 1
debounce = "100ms"
[[services]]
name = "api"
replicas = 20
latency = { dist = "constant", value = "1ms" }
[workload]
target = "api"
rate_rps = 20
duration = "3s"
warmup = "1s"
[[faults]]
kind = "crash"
pod = "api-0"
at = "2s"
"#;
    let stats = common::simulate(src, 1, true);
    let cp = cp(&stats);
    // 20 pods' sidecars and the client's.
    assert_eq!(cp.proxies, 21);
    let change = &cp.changes[0];
    assert_eq!(
        (change.what.as_str(), change.kind.as_str()),
        ("api-0 crashed", "endpoints")
    );
    let n = change.proxies as f64;
    assert_eq!((n, change.reached), (20.0, 20));
    let (q, c) = (100.0, 5.0);
    let within = |what: &str, got: Option<f64>, rank: f64| {
        let got = got.unwrap();
        let (lo, hi) = (q + rank * c, q + (rank + 1.0) * c + 1.0);
        assert!(
            (lo..=hi).contains(&got),
            "{what}: {got} ms, closed form {lo}..={hi} ms"
        );
    };
    within("median", change.p50_ms, (0.5 * n).ceil());
    within("time to 90%", change.t90_ms, (0.9 * n).ceil());
    within("max", change.max_ms, n);
    // Every sidecar took the bootstrap subscription (two types each) and the crash (one).
    assert_eq!(cp.pushes, 21 * 2 + 21);
}

#[test]
fn an_outage_alone_loses_nothing_and_a_change_during_it_waits_for_its_end() {
    let loaded = common::library("control-plane-outage.toml");
    let faults = &loaded.scenario.faults;
    let outage = faults[0].get_ref();
    assert!(matches!(outage, FaultSpec::Crash(c) if c.pod == "control-plane"));
    let (down, up) = (outage.at().as_ms(), outage.until().unwrap().as_ms());
    let crash_at = faults[1].get_ref().at().as_ms();
    assert!(down < crash_at && crash_at < up);

    let stats = common::run(&loaded, loaded.scenario.seed, true);
    let cp = cp(&stats);
    // The crash at 8 s is learned only after the control plane is back at 20 s.
    let crash = &cp.changes[0];
    assert_eq!(crash.what, "backend-2 crashed");
    assert_eq!(crash.reached, crash.proxies);
    assert!(crash.p50_ms.unwrap() >= (up - crash_at) as f64, "{crash:?}");
    // The pod restarted at 12 s is listed only when its sidecar has its configuration, which
    // it can get only from the returned control plane.
    let ready = &cp.changes[1];
    assert_eq!(ready.what, "backend-2 ready");
    assert!(ready.at_ms >= up, "{ready:?}");
    // While it is down, the control plane sees no proxy; before and long after, all synced.
    let during = cp.states.iter().filter(|s| s.at_ms > down && s.at_ms <= up);
    assert!(during.clone().count() > 0);
    assert!(
        during.clone().all(|s| s.disconnected == cp.proxies),
        "{:?}",
        cp.states
    );
    let last = cp.states.last().unwrap();
    assert_eq!(last.synced, cp.proxies, "{last:?}");

    // Without the pod crash, the outage alone fails nothing.
    let mut quiet = loaded.clone();
    quiet.scenario.faults.truncate(1);
    let stats = common::run(&quiet, loaded.scenario.seed, true);
    assert_eq!(stats.books.failed, 0, "{:?}", stats.books.failed_by_reason);
    assert!(stats.books.ok > 3000);
    // And without the outage, the crash reaches the proxies within the debounce and a push.
    let mut no_outage = loaded.clone();
    no_outage.scenario.faults.remove(0);
    let stats = common::run(&no_outage, loaded.scenario.seed, true);
    let crash = &stats.control_plane.as_ref().unwrap().changes[0];
    assert!(crash.max_ms.unwrap() <= 120.0, "{crash:?}");
}

#[test]
fn a_bad_push_is_nacked_everywhere_and_the_next_one_mends_it() {
    let loaded = common::library("control-plane-bad-push.toml");
    let stats = common::run(&loaded, loaded.scenario.seed, true);
    assert_eq!(stats.books.failed, 0);
    let cp = cp(&stats);
    assert_eq!(cp.nacks.len(), 1, "{:?}", cp.nacks);
    let nack = &cp.nacks[0];
    assert_eq!((nack.kind.as_str(), nack.proxies), ("policies", cp.proxies));
    assert!(
        nack.error.contains("\"backend\": retry.budget"),
        "{}",
        nack.error
    );
    let (bad, fix) = (&cp.changes[0], &cp.changes[1]);
    assert_eq!(bad.refused, bad.proxies);
    // Applied only as part of the fix, pushed 5 s later.
    assert!(bad.p50_ms.unwrap() >= 5000.0);
    assert_eq!((fix.refused, fix.reached), (0, fix.proxies));
    let nacked = |from: u64, to: u64| {
        cp.states
            .iter()
            .filter(|s| s.at_ms >= from && s.at_ms <= to)
            .all(|s| s.nacked == cp.proxies)
    };
    assert!(nacked(5200, 10_000), "{:?}", cp.states);
    assert!(
        cp.states
            .iter()
            .filter(|s| s.at_ms >= 11_000)
            .all(|s| s.synced == cp.proxies)
    );
}

#[test]
fn the_same_seed_gives_the_same_control_plane_figures_and_another_seed_others() {
    let loaded = common::library("control-plane-outage.toml");
    let json = |seed| {
        let stats = common::run(&loaded, seed, true);
        serde_json::to_string(&stats).unwrap()
    };
    let a = json(5);
    assert_eq!(a, json(5));
    assert_ne!(a, json(6));
}

/// Scaling: new pods are listed once ready and take traffic; pods scaled away stop only after
/// their drain, by which time the change has reached every caller, so nothing fails even
/// without retries. With the drain cut to 1 ms, callers that have not heard yet send to the
/// stopped pods (about 100 rps x 3/4 x the ~0.1 s the push takes), and those requests fail.
#[test]
fn a_scale_down_drains_before_it_stops_pods() {
    let loaded = common::library("control-plane-scale.toml");
    // No preset: no retries to hide a failure.
    let file = std::fs::read_to_string(&loaded.path).unwrap();
    let src = file.replace("preset = \"istio-1.24\"\n", "");
    assert_ne!(src, file, "the preset line moved");
    let pass = sim::run::Pass {
        seed: loaded.scenario.seed,
        mesh: true,
        access_log: false,
    };
    let run = sim::run::simulate(&common::loaded("t.toml", &src), &pass, &mut |_, _| {});
    let drained = common::checked(run.stats);
    assert_eq!(drained.books.failed, 0, "{:?}", drained.books);
    // The new pods served: each one's sidecar counted inbound successes.
    for pod in ["backend-2", "backend-3"] {
        let text = &run.telemetry.metrics[pod];
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("meshsim_requests_total{direction=\"inbound\"") && l.contains("2xx")
            })
            .unwrap_or_else(|| panic!("{pod} served nothing:\n{text}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 100, "{pod}: {line}");
    }
    let cut = src.replace(
        "replicas = 1\nat = \"15s\"",
        "replicas = 1\nat = \"15s\"\ndrain = \"1ms\"",
    );
    assert_ne!(cut, src);
    let abrupt = common::simulate(&cut, loaded.scenario.seed, true);
    assert!(abrupt.books.failed > 0, "{:?}", abrupt.books);
    let late: u64 = abrupt
        .timeline
        .iter()
        .filter(|b| b.t_s < 15 || b.t_s > 19)
        .map(|b| b.failed)
        .sum();
    // Sent around 15 s, they fail when the caller gives up on the vanished pod (a failure is
    // counted in the second it ends).
    assert_eq!(
        late, 0,
        "failures only after the scale-down: {:?}",
        abrupt.timeline
    );
}

/// A pod a scale has stopped stays stopped when a crash of it ends, and each scale's drain is
/// its own: a scale up whose window ends during another scale's drain stops nothing.
#[test]
fn scaled_out_pods_stay_out() {
    let src = r#"
name = "t"
[mesh]
baseline = false
[control_plane]
[[services]]
name = "api"
replicas = 3
latency = { dist = "constant", value = "1ms" }
[workload]
target = "api"
rate_rps = 50
duration = "16s"
[[faults]]
kind = "crash"
pod = "api-2"
at = "2s"
until = "10s"
[[faults]]
kind = "scale"
service = "api"
replicas = 2
at = "4s"
drain = "1s"
[[faults]]
kind = "scale"
service = "api"
replicas = 4
at = "5s"
drain = "1s"
[[faults]]
kind = "scale"
service = "api"
replicas = 1
at = "7s"
drain = "5s"
"#;
    let stats = common::simulate(src, 3, true);
    let cp = stats.control_plane.as_ref().unwrap();
    let whats: Vec<(u64, &str)> = cp
        .changes
        .iter()
        .map(|c| (c.at_ms, c.what.as_str()))
        .collect();
    // api-2 crashed at 2 s and was scaled away at 4 s; at 5 s the scale to 4 starts it again
    // and api-3, both listed once ready; at 7 s the scale to 1 unlists them and api-1. The
    // crash's end at 10 s must not list api-2 again.
    assert!(
        whats
            .iter()
            .all(|(t, w)| !(*t >= 10_000 && w.contains("ready"))),
        "{whats:?}"
    );
    // Only the crash fails requests: those in flight on api-2 at 2 s hang (its packets vanish;
    // no retries here) until the scale to 4 replaces it at 5 s and the new pod resets them.
    // Nothing fails later: the scale to 4's window ends at 6 s and stops nothing, the crash's
    // end at 10 s restarts nothing, and the scale to 1's pods drain for their full 5 s (to
    // 12 s), long after callers stopped sending to them.
    let later: u64 = stats
        .timeline
        .iter()
        .filter(|b| b.t_s > 5)
        .map(|b| b.failed)
        .sum();
    assert_eq!(later, 0, "{:?} {whats:?}", stats.timeline);
    assert_eq!(
        stats.books.failed_by_reason.keys().collect::<Vec<_>>(),
        ["upstream_reset"]
    );
}
