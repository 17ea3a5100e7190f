//! The control plane's CA and a workload's agent on loopback: the agent renews on Istio's
//! schedule (half the lifetime) with a fresh key each time and rotates the proxy's settings;
//! the CA signs only the caller's own identity, refuses callers it does not know, and an agent
//! whose CA is gone keeps its certificate and keeps asking.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_core::control::ControlPlane;
use mesh_core::control::agent::{CertAgent, CertEvent};
use mesh_core::control::ca::CaService;
use mesh_core::control::server::Settings;
use mesh_core::identity::SpiffeId;
use mesh_core::net::{Network, TokioNet};
use mesh_core::policy::Policies;
use mesh_core::registry::Registry;
use mesh_core::tls::{CertAuthority, KeyKind, MeshTls, Renewal, TokioWallClock, Validity};

fn id(sa: &str) -> SpiffeId {
    SpiffeId::workload("cluster.local", "default", sa).unwrap()
}

#[tokio::test]
async fn the_agent_renews_at_half_life_and_the_ca_signs_only_the_callers_identity() {
    let ca = Arc::new(
        CertAuthority::with_key("cluster.local", Validity::ALWAYS, KeyKind::Ed25519).unwrap(),
    );
    let clock = Arc::new(TokioWallClock::starting_at(Duration::from_secs(
        1_767_225_600,
    )));
    let cp = ControlPlane::new(Settings::default(), Registry::new(), Policies::default(), 1);
    let service = Arc::new(CaService::new(
        ca.clone(),
        Duration::from_secs(2),
        clock.clone(),
        Arc::new(|node: &str| (node == "web-0").then(|| id("web"))),
    ));
    cp.set_ca(service.clone());
    let listener = TokioNet.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(cp.clone().serve(TokioNet, listener));

    // The workload starts with a certificate the CA did not sign for it (any will do).
    let first = ca.issue("web").unwrap();
    let tls =
        MeshTls::with_clock(ca.ca_pem(), &first.cert_pem, &first.key_pem, clock.clone()).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let agent = CertAgent {
        net: TokioNet,
        ca: addr,
        node: "web-0".into(),
        identity: id("web"),
        tls: tls.clone(),
        renewal: Renewal::ISTIO,
        kind: KeyKind::Ed25519,
        seed: 3,
        on_event: Arc::new(move |e: &CertEvent| log.lock().unwrap().push(e.clone())),
    };
    let running = tokio::spawn(agent.run(None));
    // Asks at once, then every ~1 s (half of 2 s).
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let rotated: Vec<Validity> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            CertEvent::Rotated { validity } => Some(*validity),
            CertEvent::Failed { .. } => None,
        })
        .collect();
    assert!(
        (3..=5).contains(&rotated.len()),
        "{:?}",
        events.lock().unwrap()
    );
    assert!(rotated.iter().all(|v| v.not_after - v.not_before == 2));
    assert!(
        rotated
            .windows(2)
            .all(|w| w[0].not_before <= w[1].not_before)
    );
    assert_eq!(tls.identity(), id("web"));
    assert_eq!(service.signed() as usize, rotated.len());

    // The CA: another identity's request, and an unknown caller, are refused.
    let (csr, _) = mesh_core::tls::csr(&id("db"), KeyKind::Ed25519).unwrap();
    let refused = service.handle(
        &serde_json::to_vec(&mesh_core::control::ca::SignRequest {
            node: "web-0".into(),
            csr: csr.clone(),
        })
        .unwrap(),
    );
    assert_eq!(refused.status(), 403);
    let unknown = service.handle(
        &serde_json::to_vec(&mesh_core::control::ca::SignRequest {
            node: "db-0".into(),
            csr,
        })
        .unwrap(),
    );
    assert_eq!(unknown.status(), 403);

    // The CA goes away: the agent fails, keeps the certificate it has, and keeps asking.
    serving.abort();
    let _ = serving.await;
    let before = tls.identity();
    let failures = || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, CertEvent::Failed { .. }))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(failures() >= 1, "{:?}", events.lock().unwrap());
    assert_eq!(tls.identity(), before);
    running.abort();
}
