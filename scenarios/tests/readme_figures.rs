//! The README's "What it shows" table is recomputed here from the scenarios themselves, at the
//! seed in each file, so the README cannot drift from the code: a change that moves one of these
//! figures fails until the README says what the simulator now measures.
//!
//! Every row is covered: steady-overhead, retry-storm, retry-budget, gray-failure vs
//! gray-failure-ewma, preset-crash under each preset (at the file's seed), breaker.

use reports::Report;
use sim::scenario::Preset;

fn run(file: &str) -> Report {
    run_with(file, None)
}

/// Run `file` at its own seed, with its `[mesh] preset` replaced when one is given.
fn run_with(file: &str, preset: Option<Preset>) -> Report {
    let path = scenarios::dir().join(file);
    let mut loaded = sim::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    if preset.is_some() {
        loaded.scenario.mesh.preset = preset;
    }
    let opts = sim::RunOptions::new(loaded.scenario.seed, format!("scenarios/{file}"));
    sim::run(&loaded, &opts, &mut |_, _, _| {}).report
}

fn ms(us: u64) -> String {
    format!("{:.0}", us as f64 / 1000.0)
}

#[test]
fn the_readme_table_is_what_the_scenarios_measure() {
    let readme = std::fs::read_to_string(scenarios::dir().join("../README.md")).unwrap();
    let mut rows = Vec::new();

    let steady = run("steady-overhead.toml");
    let o = steady
        .overhead
        .as_ref()
        .expect("steady-overhead has a baseline");
    rows.push(format!(
        "| `steady-overhead.toml` | mesh overhead {:+.2} ms at P50, {:+.2} ms at P99 (two edges, four sidecar hops, calibrated cost) |",
        o.p50_us as f64 / 1000.0,
        o.p99_us as f64 / 1000.0
    ));

    let storm = run("retry-storm.toml");
    let m = storm.mesh.as_ref().unwrap();
    rows.push(format!(
        "| `retry-storm.toml` | db sees exactly {:.1} attempts per request (4 × 4 × 4) |",
        m.load_factor["db"]
    ));

    let budget = run("retry-budget.toml");
    let m = budget.mesh.as_ref().unwrap();
    let hops: Vec<f64> = m.edges.values().map(|e| e.retry_amplification).collect();
    let (lo, hi) = hops
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    let per_hop = if format!("{lo:.2}") == format!("{hi:.2}") {
        format!("{lo:.2}×")
    } else {
        format!("{lo:.2}–{hi:.2}×")
    };
    rows.push(format!(
        "| `retry-budget.toml` | {per_hop} per hop, {:.2}× at db, {} storm windows |",
        m.load_factor["db"],
        if m.storms.is_empty() {
            "no".to_string()
        } else {
            m.storms.len().to_string()
        }
    ));

    let rr = run("gray-failure.toml");
    let ewma = run("gray-failure-ewma.toml");
    let p99 = |r: &Report| r.mesh.as_ref().unwrap().latency.p99_us;
    rows.push(format!(
        "| `gray-failure.toml` vs `gray-failure-ewma.toml` | P99 {} ms with round robin, {} ms with peak-EWMA |",
        ms(p99(&rr)),
        ms(p99(&ewma))
    ));

    let success = |p: Preset| {
        let r = run_with("preset-crash.toml", Some(p));
        let b = &r.mesh.as_ref().unwrap().books;
        format!("{:.3}", b.ok as f64 / (b.ok + b.failed) as f64)
    };
    rows.push(format!(
        "| `preset-crash.toml` | success under each mesh's defaults: Envoy {}, Consul {}, Linkerd {}, Istio 1.24 {}, Cilium {} |",
        success(Preset::Envoy),
        success(Preset::Consul),
        success(Preset::Linkerd216),
        success(Preset::Istio124),
        success(Preset::Cilium),
    ));

    let breaker = run("breaker.toml");
    let m = breaker.mesh.as_ref().unwrap();
    let refused: u64 = m.edges.values().map(|e| e.circuit_open).sum();
    assert_eq!(
        refused,
        m.breaker_events.len() as u64,
        "each refusal is listed with its time"
    );
    rows.push(format!(
        "| `breaker.toml` | while db hangs, {refused} attempts refused by the breaker (each listed with its time), max latency {} ms |",
        ms(m.latency.max_us)
    ));

    let late = |r: &Report| {
        let m = r.mesh.as_ref().unwrap();
        let (ok, all) = m
            .timeline
            .iter()
            .filter(|b| b.t_s >= 8)
            .fold((0, 0), |(o, a), b| (o + b.ok, a + b.ok + b.failed));
        (ok as f64 / all as f64, m.services["svc"].wasted_ms / 1000.0)
    };
    let (stuck, wasted) = late(&run("metastable.toml"));
    let (recovered, wasted_budget) = late(&run("metastable-budget.toml"));
    rows.push(format!(
        "| `metastable.toml` vs `metastable-budget.toml` | success 3 s after a 2 s slowdown ended: {stuck:.3} without a retry budget ({wasted:.0} s of worker time spent on abandoned requests), {recovered:.3} with one ({wasted_budget:.0} s) |"
    ));

    let authz = run("authz.toml");
    let m = authz.mesh.as_ref().expect("a meshed run");
    let denied = |policy: &str| {
        m.authz_denied
            .iter()
            .filter(|d| d.service == "orders" && d.policy == policy)
            .map(|d| d.denied)
            .sum::<u64>()
    };
    let on_edge = |e: &str| {
        m.edges[e]
            .attempt_outcomes
            .get("authz_denied")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(on_edge("reports->orders"), denied("no-export"));
    assert_eq!(on_edge("audit->orders"), denied("no_allow_match"));
    rows.push(format!(
        "| `authz.toml` | orders refuses {} calls from reports (DENY `no-export`, evaluated before ALLOW) and {} from audit (no ALLOW matched), {} from web; success {:.3} (closed form 0.8 × 0.9 = 0.720) |",
        denied("no-export"),
        denied("no_allow_match"),
        on_edge("web->orders"),
        m.books.ok as f64 / (m.books.ok + m.books.failed) as f64,
    ));

    let np = run("network-policy.toml");
    let m = np.mesh.as_ref().expect("a meshed run");
    let refused: u64 = m.connections_denied.iter().map(|d| d.denied).sum();
    let attempts = |e: &str| m.edges[e].attempts;
    // One refused connection per attempt from reports, none from web.
    assert_eq!(refused, attempts("reports->orders"));
    assert_eq!(m.edges["web->orders"].failures, 0);
    rows.push(format!(
        "| `network-policy.toml` | orders' L4 policy refuses all {} connections from reports before reading a request (each a failed attempt, `upstream_reset`), none of web's {} calls; success {:.3} (closed form 0.8) |",
        refused,
        m.edges["web->orders"].requests,
        m.books.ok as f64 / (m.books.ok + m.books.failed) as f64,
    ));

    let cp_of = |r: &reports::Report| {
        let m = r.mesh.clone().expect("a meshed run");
        (
            m.books.clone(),
            m.control_plane.clone().expect("a control plane"),
        )
    };
    let (books, cp) = cp_of(&run("control-plane-outage.toml"));
    let crash = &cp.changes[0];
    rows.push(format!(
        "| `control-plane-outage.toml` | control plane down 4-20 s: a pod crash at 8 s reaches the proxies {:.1} s later (P50; last {:.1} s), once they ping the returned control plane; {} of {} requests failed, all on the crashed pod's connections (none without the crash) |",
        crash.p50_ms.unwrap_or(f64::NAN) / 1000.0,
        crash.max_ms.unwrap_or(f64::NAN) / 1000.0,
        books.failed,
        books.sent,
    ));
    let (books, cp) = cp_of(&run("control-plane-bad-push.toml"));
    rows.push(format!(
        "| `control-plane-bad-push.toml` | a policy with an impossible retry budget is NACKed by {} of {} proxies, which keep their previous policy; {} requests failed; the fix 5 s later is ACKed everywhere within {:.0} ms |",
        cp.nacks.iter().map(|n| n.proxies).sum::<u64>(),
        cp.proxies,
        books.failed,
        cp.changes[1].max_ms.unwrap_or(f64::NAN),
    ));
    let (_, cp) = cp_of(&run("control-plane-storm.toml"));
    let crash = &cp.changes[0];
    rows.push(format!(
        "| `control-plane-storm.toml` | {} proxies reconnect together after a 6 s outage: {} pushes of 1 ms queue on one core; a crash made during the outage reaches 90% of proxies after {:.1} s, the last after {:.1} s |",
        cp.proxies,
        cp.pushes,
        crash.t90_ms.unwrap_or(f64::NAN) / 1000.0,
        crash.max_ms.unwrap_or(f64::NAN) / 1000.0,
    ));

    let mtls_of = |r: &reports::Report| {
        let m = r.mesh.clone().expect("a meshed run");
        (m.books.clone(), m.mtls.clone().expect("an [mtls] run"))
    };
    let (books, t) = mtls_of(&run("mtls-rotation.toml"));
    rows.push(format!(
        "| `mtls-rotation.toml` | real mTLS with 60 s certificates: {} rotations from the control plane's CA under load (closed form 25), {} failed handshakes, {} failed requests |",
        t.rotations,
        t.handshake_failures.values().sum::<u64>(),
        books.failed,
    ));
    let (books, t) = mtls_of(&run("mtls-ca-outage.toml"));
    rows.push(format!(
        "| `mtls-ca-outage.toml` | CA down 20-110 s, certificates expire at 60 s: {} handshakes refused as expired, {} signing requests failed, {} of {} requests failed, none after 140 s |",
        t.handshake_failures
            .iter()
            .filter(|(k, _)| k.ends_with(".expired"))
            .map(|(_, n)| n)
            .sum::<u64>(),
        t.renewal_failures,
        books.failed,
        books.sent,
    ));

    let (_, t) = mtls_of(&run("mtls-permissive-migration.toml"));
    let m = run("mtls-permissive-migration.toml")
        .mesh
        .expect("a meshed run");
    let before: u64 = m
        .timeline
        .iter()
        .filter(|b| b.t_s < 10)
        .map(|b| b.failed)
        .sum();
    let (ok, failed) = m
        .timeline
        .iter()
        .filter(|b| b.t_s >= 11)
        .fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed));
    rows.push(format!(
        "| `mtls-permissive-migration.toml` | PERMISSIVE then STRICT at 10 s with 1 of 4 clients in plaintext: {before} failures before, {} plaintext connections refused after; success from 11 s {:.3} (closed form 0.75) |",
        t.handshake_failures.get("inbound.plaintext").copied().unwrap_or(0),
        ok as f64 / (ok + failed) as f64,
    ));

    let (books, cp) = cp_of(&run("control-plane-scale.toml"));
    let delay = |what: &str| {
        cp.changes
            .iter()
            .find(|c| c.what == what)
            .and_then(|c| c.max_ms)
            .unwrap_or(f64::INFINITY)
    };
    rows.push(format!(
        "| `control-plane-scale.toml` | backend scaled 2 → 4 at 5 s (new pods listed on every proxy within {:.0} and {:.0} ms of becoming ready) and 4 → 1 at 15 s (off every list within {:.0} ms, stopped after a 5 s drain): {} of {} requests failed |",
        delay("backend-2 ready"),
        delay("backend-3 ready"),
        delay("backend scaled to 1"),
        books.failed,
        books.sent,
    ));

    let (books, t) = mtls_of(&run("mtls-root-rotation.toml"));
    rows.push(format!(
        "| `mtls-root-rotation.toml` | root rotation under load (trust both at 20 s, sign with the new at 40 s, drop the old at 100 s): {} rotations (closed form 24), {} failed handshakes, {} of {} requests failed |",
        t.rotations,
        t.handshake_failures.values().sum::<u64>(),
        books.failed,
        books.sent,
    ));

    let missing: Vec<&String> = rows
        .iter()
        .filter(|r| !readme.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's \"What it shows\" table is out of date; these rows are what the scenarios measure now:\n{}",
        missing
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
