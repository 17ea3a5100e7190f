//! Measures the two candidate substrates on meshsim's topology, with the same mesh-core code on both.
//!
//! Topology: N pods (one host each: echo app + sidecar), one control-plane host, one client host
//! with a sidecar. Workload: 2,000 requests at 1,000 rps (one every simulated millisecond),
//! client → client sidecar → pod sidecar (HTTP/2, round robin) → app. Prints wall time per run.
//!
//! ```sh
//! cargo run --release -p sim --example substrate            # 20, 100, 400 pods
//! cargo run --release -p sim --example substrate -- 20 100  # chosen sizes
//! ```
#![allow(clippy::disallowed_methods)] // wall-clock timing of whole runs is the point of this tool

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mesh_core::client::HttpClients;
use mesh_core::net::Network;
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use mesh_core::server::serve_http;
use sim::substrate::Harness;

const REQUESTS: usize = 2_000;

fn pod_ip(i: usize) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0002u32 + i as u32))
}

fn registry(pods: usize) -> mesh_core::config::ConfigRx {
    let mut r = Registry::new();
    r.insert(
        "echo",
        ServiceEntry {
            protocol: Protocol::Http2,
            endpoints: (0..pods)
                .map(|i| Endpoint {
                    addr: SocketAddr::new(pod_ip(i), 15006),
                    pod: format!("pod-{i}"),
                    zone: "a".into(),
                    subset: "v1".into(),
                    identity: None,
                })
                .collect(),
        },
    );
    mesh_core::config::fixed(r, &mesh_core::policy::Policies::default())
}

fn cfg(ip: IpAddr) -> ProxyConfig {
    let mut c = ProxyConfig::conventional(ip);
    c.inbound_addr = SocketAddr::new([0, 0, 0, 0].into(), 15006);
    c
}

/// A pod: echo app on 8080 and a sidecar.
async fn pod<N: Network>(net: N, ip: IpAddr, reg: mesh_core::config::ConfigRx) {
    let l = net
        .bind(SocketAddr::new([0, 0, 0, 0].into(), 8080))
        .await
        .expect("bind app");
    net.spawn(serve_http(
        net.clone(),
        l,
        mesh_core::testkit::echo,
        Arc::new(|_| {}),
    ));
    let p = Proxy::new(net.clone(), cfg(ip), reg, None);
    let _ = p.run().await;
}

/// The client: a sidecar plus REQUESTS calls, one per millisecond; returns how many succeeded.
async fn client<N: Network>(net: N, ip: IpAddr, reg: mesh_core::config::ConfigRx) -> usize {
    let p = Proxy::new(net.clone(), cfg(ip), reg, None);
    net.spawn(async move {
        let _ = p.run().await;
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let clients = HttpClients::new(net.clone(), Duration::from_secs(1));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..REQUESTS {
        let (c, ok, done) = (clients.clone(), ok.clone(), done.clone());
        net.spawn(async move {
            let req = http::Request::builder()
                .uri("http://127.0.0.1:15001/")
                .header("host", "echo")
                .body(mesh_core::body::empty())
                .expect("valid");
            if let Ok(r) = c.get(Protocol::Http1).request(req).await {
                use http_body_util::BodyExt;
                if r.status().is_success() && r.into_body().collect().await.is_ok() {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while done.load(std::sync::atomic::Ordering::Relaxed) < REQUESTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ok.load(std::sync::atomic::Ordering::Relaxed)
}

/// turmoil 0.7's network, behind the same boundary.
#[derive(Clone, Copy, Debug)]
struct TurmoilNet;

impl Network for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;
    async fn bind(&self, addr: SocketAddr) -> std::io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }
    async fn accept(&self, l: &Self::Listener) -> std::io::Result<(Self::Stream, SocketAddr)> {
        l.accept().await
    }
    async fn connect(&self, addr: SocketAddr) -> std::io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        tokio::spawn(fut);
    }
}

fn run_turmoil(pods: usize) -> (f64, usize) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .rng_seed(1)
        .build();
    let reg = registry(pods);
    for i in 0..pods {
        let reg = reg.clone();
        sim.host(pod_ip(i), move || {
            let reg = reg.clone();
            async move {
                pod(TurmoilNet, pod_ip(i), reg).await;
                Ok(())
            }
        });
    }
    sim.host(pod_ip(pods), || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ok2 = ok.clone();
    let cip = pod_ip(pods + 1);
    sim.client(cip, async move {
        ok2.store(
            client(TurmoilNet, cip, reg).await,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    });
    let t = std::time::Instant::now(); // wall time of a bench run, never simulated; allow-nondeterminism
    sim.run().expect("turmoil run");
    (
        t.elapsed().as_secs_f64(),
        ok.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn run_turmoil_net(pods: usize) -> (f64, usize) {
    let mut h = Harness::new();
    let cip = pod_ip(pods + 1);
    h.host("client", cip);
    for i in 0..=pods {
        h.host(&format!("pod-{i}"), pod_ip(i));
    }
    let reg = registry(pods);
    let t = std::time::Instant::now(); // wall time of a bench run, never simulated; allow-nondeterminism
    let ok = h
        .run(1, Duration::from_secs(60), move |nets| async move {
            for (i, net) in nets.iter().enumerate().skip(1).take(pods) {
                net.spawn(pod(net.clone(), pod_ip(i - 1), reg.clone()));
            }
            client(nets[0].clone(), cip, reg).await
        })
        .expect("finishes");
    (t.elapsed().as_secs_f64(), ok)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![20, 100, 400]
    } else {
        sizes
    };
    println!(
        "| pods | hosts | turmoil 0.7 wall (s) | turmoil-net wall (s) | ok (turmoil / turmoil-net) |"
    );
    println!("|---:|---:|---:|---:|---|");
    for n in sizes {
        let (tn, okn) = run_turmoil_net(n);
        let (t7, ok7) = run_turmoil(n);
        println!(
            "| {n} | {} | {t7:.2} | {tn:.2} | {ok7} / {okn} of {REQUESTS} |",
            n + 2
        );
    }
}
