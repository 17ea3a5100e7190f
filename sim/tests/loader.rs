//! The loader with hostile input: a scenario may come from anyone, so `proxy_cost` reads only a
//! calibration file beside the scenario, never a device or an oversized file, and an error
//! names the problem without quoting the file's content.

use std::path::PathBuf;

/// A fresh folder for this test's files.
fn folder(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshsim-loader-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn scenario_with_cost(dir: &std::path::Path, cost: &str) -> PathBuf {
    let p = dir.join("s.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"t\"\n[mesh]\nproxy_cost = {cost:?}\n[[services]]\nname = \"web\"\n[workload]\ntarget = \"web\"\nrate_rps = 10\nduration = \"2s\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn proxy_cost_reads_only_calibration_files_beside_the_scenario() {
    let dir = folder("paths");
    for bad in [
        "/etc/passwd",
        "../s.toml",
        "calibration/../../x.toml",
        "/dev/zero",
        "cal.txt",
    ] {
        let e = sim::scenario::load(&scenario_with_cost(&dir, bad)).unwrap_err();
        assert_eq!(e.field, "mesh.proxy_cost", "{bad}: {e}");
        assert!(e.message.contains("relative path"), "{bad}: {e}");
        assert_eq!(e.line, 3, "{bad}: {e}");
    }
    // A secret in a file that is not a calibration: refused, and not repeated.
    std::fs::write(dir.join("secret.toml"), "password = \"hunter2\"\n").unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "secret.toml")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    std::fs::write(dir.join("broken.toml"), "[hop.http1\ntoken = \"hunter2\"\n").unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "broken.toml")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.message.contains("line 1"), "{e}");
    // An oversized file is refused before it is read.
    std::fs::write(dir.join("big.toml"), vec![b'#'; 2 << 20]).unwrap();
    let e = sim::scenario::load(&scenario_with_cost(&dir, "big.toml")).unwrap_err();
    assert!(e.message.contains("at most"), "{e}");
    // A calibration file below the scenario's folder loads, as the shipped one does.
    std::fs::create_dir_all(dir.join("calibration")).unwrap();
    let lib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/calibration");
    std::fs::copy(
        lib.join("bench-open-loop.toml"),
        dir.join("calibration/bench-open-loop.toml"),
    )
    .unwrap();
    sim::scenario::load(&scenario_with_cost(
        &dir,
        "calibration/bench-open-loop.toml",
    ))
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

mod round_trip {
    //! Scenario text generated from values, some inside the loader's bounds and some past
    //! them: what the loader accepts holds exactly the values written (the text round-trips),
    //! what it refuses is refused by the bound that was crossed, with a line of the file, and
    //! nothing past a bound is ever accepted.

    use proptest::prelude::*;
    use sim::scenario::Protocol;
    use sim::scenario::{MAX_CALLS_PER_RUN, MAX_DURATION_MS, MAX_PODS};

    #[derive(Clone, Debug)]
    struct Svc {
        replicas: u32,
        workers: u32,
        error_rate: f64,
        http2: bool,
    }

    fn svc() -> impl Strategy<Value = Svc> {
        (
            prop_oneof![0u32..8, 1u32..12_000, Just(u32::MAX)],
            prop_oneof![Just(0u32), 1u32..64],
            prop_oneof![0.0f64..=1.0, -1.0f64..2.0],
            any::<bool>(),
        )
            .prop_map(|(replicas, workers, error_rate, http2)| Svc {
                replicas,
                workers,
                error_rate,
                http2,
            })
    }

    fn text(services: &[Svc], rate: f64, duration_ms: u64) -> String {
        let mut t = String::from("name = \"generated\"\n");
        for (i, s) in services.iter().enumerate() {
            let protocol = if s.http2 { "http2" } else { "http1" };
            t += &format!(
                "[[services]]\nname = \"s{i}\"\nreplicas = {}\nworkers = {}\nerror_rate = {:?}\nprotocol = \"{protocol}\"\n",
                s.replicas, s.workers, s.error_rate
            );
        }
        t += &format!(
            "[workload]\ntarget = \"s0\"\nrate_rps = {rate:?}\nduration = \"{duration_ms}ms\"\n"
        );
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn what_is_accepted_is_what_was_written_and_nothing_past_a_bound(
            services in proptest::collection::vec(svc(), 1..4),
            rate in prop_oneof![0.5f64..2_000.0, 1.0f64..10_000_000.0],
            duration_ms in prop_oneof![1_000u64..120_000, 1u64..200_000_000],
        ) {
            let src = text(&services, rate, duration_ms);
            let pods: u64 = services.iter().map(|s| u64::from(s.replicas)).sum();
            let calls = rate * duration_ms as f64 / 1_000.0;
            let past_a_bound = pods > MAX_PODS
                || duration_ms > MAX_DURATION_MS
                || calls > MAX_CALLS_PER_RUN;
            match sim::scenario::parse("generated.toml", &src) {
                Ok(s) => {
                    prop_assert!(!past_a_bound, "accepted past a bound: {src}");
                    prop_assert_eq!(s.services.len(), services.len());
                    for (got, want) in s.services.iter().zip(&services) {
                        prop_assert_eq!(got.replicas, want.replicas);
                        prop_assert_eq!(got.workers, want.workers);
                        prop_assert_eq!(got.error_rate, want.error_rate);
                        let p = if want.http2 { Protocol::Http2 } else { Protocol::Http1 };
                        prop_assert_eq!(got.protocol, p);
                    }
                    prop_assert_eq!(s.workload.rate_rps, Some(rate));
                    prop_assert_eq!(s.workload.duration.as_ms(), duration_ms);
                }
                Err(e) => {
                    let lines = src.lines().count();
                    prop_assert!(e.line >= 1 && e.line <= lines, "{e}");
                    let bad_service = services.iter().any(|s| {
                        s.workers == 0
                            || !(0.0..=1.0).contains(&s.error_rate)
                            || s.replicas == 0
                            || u64::from(s.replicas) > MAX_PODS
                    });
                    // Refused for a reason the input has: a bound crossed, or a value out of
                    // its range.
                    // The open model's rate: at most a million requests a second.
                    let bad_rate = rate > 1_000_000.0;
                    prop_assert!(
                        past_a_bound || bad_service || bad_rate || duration_ms < 1_000,
                        "{e}\n{src}"
                    );
                    if pods > MAX_PODS {
                        prop_assert_eq!(e.field.as_str(), "services", "{}", e);
                    }
                }
            }
        }
    }
}
