//! `/ready` says whether the sidecar can route: not before its first configuration arrives
//! (a control plane's first push), and from then on while it keeps one.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::net::TokioNet;
use mesh_core::policy::Policies;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Registry, ServiceEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ready(admin: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_configured() {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], 21_860 + p));
    let mut cfg = ProxyConfig::conventional(a(1).ip());
    cfg.outbound_addr = a(0);
    cfg.inbound_addr = a(1);
    cfg.admin_addr = Some(a(2));
    let (tx, rx) = mesh_core::config::channel(Registry::new(), &Policies::default());
    tokio::spawn(Proxy::new(TokioNet, cfg, rx, None).run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = ready(a(2)).await;
    assert!(before.starts_with("HTTP/1.1 503"), "{before}");
    let mut registry = Registry::new();
    registry.insert(
        "echo",
        ServiceEntry {
            protocol: mesh_core::registry::Protocol::Http1,
            endpoints: vec![Endpoint {
                addr: a(3),
                pod: "echo-0".into(),
                zone: "a".into(),
                subset: "v1".into(),
                identity: None,
            }],
        },
    );
    tx.send_replace(std::sync::Arc::new(mesh_core::config::Snapshot::new(
        2,
        registry,
        &Policies::default(),
    )));
    let after = ready(a(2)).await;
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
}
