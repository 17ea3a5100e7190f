//! The control plane and its proxies on loopback: subscriptions converge to SYNCED, a push with
//! an invalid policy is NACKed while its valid parts apply, and proxies keep their last good
//! configuration through a control-plane outage and resync when it returns.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_core::config::{self, ConfigRx};
use mesh_core::control::server::Settings;
use mesh_core::control::{ControlPlane, Debounce, Event, ResourceType, Subscriber, SyncState};
use mesh_core::net::{Network, TokioNet};
use mesh_core::policy::{Policies, ServicePolicy};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};

fn registry(pods: &[&str]) -> Registry {
    let mut r = Registry::new();
    let endpoints = pods
        .iter()
        .enumerate()
        .map(|(i, p)| Endpoint {
            addr: SocketAddr::from(([10, 0, 0, 2 + i as u8], 15006)),
            pod: p.to_string(),
            zone: "a".into(),
            subset: String::new(),
            identity: None,
        })
        .collect();
    r.insert(
        "db",
        ServiceEntry {
            protocol: Protocol::Http2,
            endpoints,
        },
    );
    r
}

fn fast() -> Settings {
    Settings {
        debounce: Debounce {
            quiet: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        push_cpu: Duration::ZERO,
        ..Settings::default()
    }
}

fn client_settings() -> mesh_core::control::client::Settings {
    mesh_core::control::client::Settings {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        keepalive: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
    }
}

/// Start `cp` on `addr` (any port when 0) and hand back the address.
async fn start(cp: Arc<ControlPlane>, addr: SocketAddr) -> SocketAddr {
    let listener = TokioNet.bind(addr).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(cp.clone().debounce());
    tokio::spawn(cp.serve(TokioNet, listener));
    addr
}

type Events = Arc<Mutex<Vec<Event>>>;

fn subscribe(cp: SocketAddr, node: &str) -> (ConfigRx, Events) {
    let (tx, rx) = config::channel(Registry::new(), &Policies::default());
    let events: Events = Arc::default();
    let log = events.clone();
    let sub = Subscriber::new(
        TokioNet,
        cp,
        node,
        client_settings(),
        7,
        tx,
        BTreeMap::new(),
        Arc::new(move |e: &Event| log.lock().unwrap().push(e.clone())),
    );
    tokio::spawn(sub.run());
    (rx, events)
}

/// Wait (up to 10 s) until `ok` holds.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn all_in(cp: &ControlPlane, kind: ResourceType, state: SyncState, n: usize) -> bool {
    let s = cp.status();
    s.proxies.len() == n
        && s.proxies
            .values()
            .all(|p| p.connected && p.state(kind) == state)
}

#[tokio::test]
async fn proxies_converge_and_a_bad_policy_is_nacked_while_valid_ones_apply() {
    let cp = ControlPlane::new(fast(), registry(&["db-0"]), Policies::default(), 1);
    let addr = start(cp.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let proxies: Vec<_> = ["web-0", "web-1"]
        .iter()
        .map(|n| subscribe(addr, n))
        .collect();
    until("SYNCED", || {
        ResourceType::ALL
            .iter()
            .all(|k| all_in(&cp, *k, SyncState::Synced, 2))
    })
    .await;
    for (rx, _) in &proxies {
        assert_eq!(rx.borrow().registry, registry(&["db-0"]));
    }

    // A push with one good and one bad policy.
    cp.update(2, |_, p| {
        p.services.insert(
            "db".into(),
            ServicePolicy {
                timeout: Some(Duration::from_millis(50)),
                ..ServicePolicy::default()
            },
        );
        p.services.insert(
            "api".into(),
            ServicePolicy {
                split: vec![("v1".into(), 0)],
                ..ServicePolicy::default()
            },
        );
    });
    until("NACKED", || {
        all_in(&cp, ResourceType::Policies, SyncState::Nacked, 2)
    })
    .await;
    let status = cp.status();
    for (node, p) in &status.proxies {
        let sync = &p.types[&ResourceType::Policies];
        assert_eq!(sync.running, Some(1), "{node} stays on its version");
        assert!(
            sync.error().unwrap().contains("\"api\": split"),
            "{node}: {:?}",
            sync.error()
        );
        assert_eq!(p.state(ResourceType::Endpoints), SyncState::Synced);
    }
    for (rx, events) in &proxies {
        let now = rx.borrow().clone();
        assert_eq!(
            now.policies().get("db").and_then(|p| p.timeout),
            Some(Duration::from_millis(50)),
            "the valid policy applies"
        );
        assert!(
            now.policies().get("api").is_none(),
            "the invalid one does not"
        );
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Refused {
                kind: ResourceType::Policies,
                version: 2,
                revision: 2,
                ..
            }
        )));
    }

    // Fixed: the next version is ACKed everywhere.
    cp.update(3, |_, p| {
        p.services.get_mut("api").unwrap().split = vec![("v1".into(), 1)];
    });
    until("SYNCED again", || {
        all_in(&cp, ResourceType::Policies, SyncState::Synced, 2)
    })
    .await;
    let status = cp.status();
    assert_eq!(status.versions[&ResourceType::Policies], 3);
    assert!(
        status
            .proxies
            .values()
            .all(|p| p.types[&ResourceType::Policies].running == Some(3))
    );
}

#[test]
fn proxies_keep_their_configuration_through_an_outage_and_resync() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The control plane runs on a runtime of its own, so that shutting it down kills it whole:
    // listener, streams and all.
    let cp_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cp = ControlPlane::new(fast(), registry(&["db-0", "db-1"]), Policies::default(), 1);
    let addr = cp_rt.block_on(start(cp.clone(), SocketAddr::from(([127, 0, 0, 1], 0))));
    rt.block_on(async {
        let (rx, events) = subscribe(addr, "web-0");
        until("SYNCED", || {
            all_in(&cp, ResourceType::Endpoints, SyncState::Synced, 1)
        })
        .await;
        cp_rt.shutdown_background();
        until("the outage noticed", || {
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::Disconnected { .. }))
        })
        .await;
        // Last known good, through reconnect attempts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rx.borrow().registry, registry(&["db-0", "db-1"]));

        // The control plane returns, knowing that db-1 went away meanwhile.
        let settings = Settings {
            instance: 2,
            first_version: 2,
            ..fast()
        };
        let cp = ControlPlane::new(settings, registry(&["db-0"]), Policies::default(), 2);
        start(cp.clone(), addr).await;
        until("resynced", || {
            all_in(&cp, ResourceType::Endpoints, SyncState::Synced, 1)
        })
        .await;
        assert_eq!(rx.borrow().registry, registry(&["db-0"]));
        let connects = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| **e == Event::Connected)
            .count();
        assert_eq!(connects, 2, "one stream before the outage, one after");
    });
}
